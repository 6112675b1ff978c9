package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unikernel-blog/blog/hostinit/spec"
)

// cloudModules is what the host layout puts in a static image from Debian's
// cloud kernel 6.1 (names, depends= and the aliases depmod lists; ena's
// shortened to two of its five).
var cloudModules = []spec.Module{
	{Name: "virtio_ring", Path: "/m/virtio_ring.ko"},
	{Name: "virtio", Path: "/m/virtio.ko", Depends: []string{"virtio_ring"}},
	{Name: "virtio_pci_modern_dev", Path: "/m/virtio_pci_modern_dev.ko"},
	{Name: "virtio_pci_legacy_dev", Path: "/m/virtio_pci_legacy_dev.ko"},
	{Name: "virtio_pci", Path: "/m/virtio_pci.ko", Depends: []string{"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio"}, Aliases: []string{"pci:v00001AF4d*sv*sd*bc*sc*i*"}},
	{Name: "failover", Path: "/m/failover.ko"},
	{Name: "net_failover", Path: "/m/net_failover.ko", Depends: []string{"failover"}},
	{Name: "virtio_net", Path: "/m/virtio_net.ko", Depends: []string{"net_failover", "virtio", "virtio_ring"}, Aliases: []string{"virtio:d00000001v*"}},
	{Name: "ena", Path: "/m/ena.ko", Aliases: []string{"pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*", "pci:v00001D0Fd0000EC21sv*sd*bc*sc*i*"}},
	{Name: "xen_netfront", Path: "/m/xen-netfront.ko", Aliases: []string{"xennet", "xen:vif"}},
	{Name: "virtio_rng", Path: "/m/virtio-rng.ko", Depends: []string{"virtio"}, Aliases: []string{"virtio:d00000004v*"}},
	{Name: "tun", Path: "/m/tun.ko", Always: true},
}

// Modaliases of devices as the kernel shows them.
const (
	qemuHostBridge = "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00"
	qemuVirtioNet  = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
	qemuVirtioRNG  = "pci:v00001AF4d00001005sv00001AF4sd00000004bc00scFFi00"
	virtioNetDev   = "virtio:d00000001v00001AF4"
	virtioRNGDev   = "virtio:d00000004v00001AF4"
	nitroENA       = "pci:v00001D0Fd0000EC20sv00001D0Fsd0000EC20bc02sc00i00"
	nitroNVMe      = "pci:v00001D0Fd00008061sv00001D0Fsd00008061bc01sc08i02"
	xenVIF         = "xen:vif"
)

func names(picks []Pick) []string {
	var out []string
	for _, p := range picks {
		out = append(out, p.Name)
	}
	return out
}

// TestPlanLoadsOnlyWhatDevicesNeed: under QEMU the virtio PCI bus driver
// first, then the NIC and entropy drivers for the virtio devices it adds; on
// Nitro ena alone; on Xen xen-netfront alone; the tender's modules always.
func TestPlanLoadsOnlyWhatDevicesNeed(t *testing.T) {
	for _, c := range []struct {
		name    string
		devices []string
		loaded  []string
		want    []string
	}{
		{"QEMU, first round", []string{qemuHostBridge, qemuVirtioNet, qemuVirtioRNG},
			nil, []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "tun"}},
		{"QEMU, after virtio_pci", []string{qemuHostBridge, qemuVirtioNet, qemuVirtioRNG, virtioNetDev, virtioRNGDev},
			[]string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "tun"},
			[]string{"failover", "net_failover", "virtio_net", "virtio_rng"}},
		{"Nitro", []string{nitroENA, nitroNVMe}, nil, []string{"ena", "tun"}},
		{"Xen", []string{xenVIF}, nil, []string{"xen_netfront", "tun"}},
		{"nothing known", []string{qemuHostBridge}, nil, []string{"tun"}},
	} {
		loaded := map[string]bool{}
		for _, l := range c.loaded {
			loaded[l] = true
		}
		got := Plan(cloudModules, c.devices, loaded)
		if !slices.Equal(names(got), c.want) {
			t.Errorf("%s: plan %v; want %v", c.name, names(got), c.want)
		}
		for _, p := range got {
			if p.Why == "" {
				t.Errorf("%s: %s picked for no stated reason", c.name, p.Name)
			}
		}
	}
	got := Plan(cloudModules, []string{nitroENA}, map[string]bool{})
	if got[0].Why != "device "+nitroENA || got[1].Why != "always" {
		t.Errorf("reasons %+v", got)
	}
	got = Plan(cloudModules, []string{virtioNetDev}, map[string]bool{})
	if got[0].Name != "virtio_ring" || got[0].Why != "for virtio" {
		t.Errorf("a dependency's reason: %+v", got[0])
	}
}

func TestDevicesReadsSysfs(t *testing.T) {
	sys := t.TempDir()
	for dev, alias := range map[string]string{
		"bus/pci/devices/0000:00:00.0":    qemuHostBridge,
		"bus/pci/devices/0000:00:03.0":    qemuVirtioNet,
		"bus/virtio/devices/virtio0":      virtioNetDev,
		"bus/cpu/devices/cpu0":            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000\n",
		"bus/platform/devices/serial8250": "",
	} {
		os.MkdirAll(filepath.Join(sys, dev), 0o755)
		os.WriteFile(filepath.Join(sys, dev, "modalias"), []byte(alias+"\n"), 0o444)
	}
	os.MkdirAll(filepath.Join(sys, "bus/pci/devices/0000:00:04.0"), 0o755) // no modalias file
	got := Devices(sys, nil)
	want := []string{"cpu:type:x86,ven0000fam0006mod003F:feature:,0000", qemuHostBridge, qemuVirtioNet, virtioNetDev}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("devices %q; want %q", got, want)
	}
	// Only the buses the image's modules can match.
	buses := Buses(cloudModules, sys)
	if !slices.Equal(buses, []string{"pci", "virtio"}) {
		t.Fatalf("buses %q; want pci and virtio (this sysfs has no xen bus)", buses)
	}
	os.MkdirAll(filepath.Join(sys, "bus/xen/devices"), 0o755)
	if buses = Buses(cloudModules, sys); !slices.Equal(buses, []string{"pci", "virtio", "xen"}) {
		t.Fatalf("buses %q; want pci, virtio and xen", buses)
	}
	got = Devices(sys, buses)
	want = []string{qemuHostBridge, qemuVirtioNet, virtioNetDev}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("devices on %v: %q; want %q", buses, got, want)
	}
}

// fakeKernel stands in for finit_module: it records the loads, and loading
// virtio_pci makes the virtio devices appear in its sysfs, as the real
// driver's probe does.
type fakeKernel struct {
	t      *testing.T
	sys    string
	mu     sync.Mutex
	order  []string
	fail   map[string]error
	active int
	peak   int
	hold   time.Duration
}

func (k *fakeKernel) load(path string) error {
	name := strings.TrimSuffix(filepath.Base(path), ".ko")
	k.mu.Lock()
	k.order = append(k.order, name)
	k.active++
	k.peak = max(k.peak, k.active)
	k.mu.Unlock()
	time.Sleep(k.hold)
	k.mu.Lock()
	k.active--
	k.mu.Unlock()
	if err := k.fail[name]; err != nil {
		return err
	}
	if name == "virtio_pci" {
		for dev, alias := range map[string]string{"virtio0": virtioNetDev, "virtio1": virtioRNGDev} {
			dir := filepath.Join(k.sys, "bus/virtio/devices", dev)
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "modalias"), []byte(alias+"\n"), 0o444)
		}
	}
	return nil
}

func qemuSysfs(t *testing.T) string {
	sys := t.TempDir()
	for i, alias := range []string{qemuHostBridge, qemuVirtioNet, qemuVirtioRNG} {
		dir := filepath.Join(sys, "bus/pci/devices", "0000:00:0"+string(rune('0'+i))+".0")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "modalias"), []byte(alias+"\n"), 0o444)
	}
	return sys
}

// TestLoadForDevicesUnderQEMU: two rounds, the second finding the devices
// the first's bus driver added; each module after its dependencies; nothing
// for EC2's NICs; independent modules loading at the same time.
func TestLoadForDevicesUnderQEMU(t *testing.T) {
	k := &fakeKernel{t: t, sys: qemuSysfs(t), hold: 20 * time.Millisecond}
	var rounds []string
	res := LoadForDevices(cloudModules, k.sys, k.load, func(format string, args ...any) { rounds = append(rounds, fmt.Sprintf(format, args...)) })
	var got []string
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Name, r.Err)
		}
		got = append(got, r.Name)
	}
	want := []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "tun", "failover", "net_failover", "virtio_net", "virtio_rng"}
	if !slices.Equal(got, want) {
		t.Fatalf("loaded %v; want %v", got, want)
	}
	pos := map[string]int{}
	for i, n := range k.order {
		pos[n] = i
	}
	for _, m := range cloudModules {
		for _, d := range m.Depends {
			if p, ok := pos[m.Name]; ok && pos[d] > p {
				t.Errorf("%s loaded before its dependency %s: %v", m.Name, d, k.order)
			}
		}
	}
	if k.peak < 2 {
		t.Errorf("at most %d module loads at once; independent modules should load together", k.peak)
	}
	if len(rounds) != 2 || !strings.Contains(rounds[0], "3 devices on pci read") || !strings.Contains(rounds[1], "5 devices on pci, virtio read") {
		t.Errorf("rounds logged: %q; want two, reading pci, then pci and virtio", rounds)
	}
}

// TestLoadSkipsWhatDependsOnAFailure: a failed module's dependents are not
// tried, in its round or a later one, and say why; the others load.
func TestLoadSkipsWhatDependsOnAFailure(t *testing.T) {
	k := &fakeKernel{t: t, sys: qemuSysfs(t), fail: map[string]error{"failover": unix.ENOEXEC, "virtio_pci_legacy_dev": unix.ENODEV}}
	res := LoadForDevices(cloudModules, k.sys, k.load, nil)
	byName := map[string]LoadResult{}
	for _, r := range res {
		byName[r.Name] = r
	}
	if r := byName["virtio_pci"]; r.Err == nil || !strings.Contains(r.Err.Error(), "virtio_pci_legacy_dev") {
		t.Errorf("virtio_pci: %v; want it skipped for its failed dependency", r.Err)
	}
	if !byName["virtio_pci_legacy_dev"].NoDevice {
		t.Error("ENODEV is not reported as a missing device")
	}
	if slices.Contains(k.order, "virtio_pci") || slices.Contains(k.order, "virtio_net") {
		t.Errorf("modules whose dependency failed were tried: %v", k.order)
	}
	if r := byName["tun"]; r.Err != nil {
		t.Errorf("tun: %v", r.Err)
	}

	// A dependency that failed in an earlier round.
	loaded := map[string]bool{"virtio_ring": true, "virtio": true}
	res2 := Load([]Pick{{Module: cloudModules[7], Why: "device " + virtioNetDev}}, loaded, func(string) error { return errors.New("must not be called") })
	if res2[0].Err == nil || !strings.Contains(res2[0].Err.Error(), "net_failover") || loaded["virtio_net"] {
		t.Errorf("virtio_net without net_failover: %+v", res2[0])
	}
}

// TestLoadModulesWithoutPrivileges runs the real loader unprivileged or on
// junk: every load fails, each is reported, and none stops the others.
func TestLoadModulesWithoutPrivileges(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.ko")
	os.WriteFile(junk, []byte("not a module"), 0o644)
	res := Load([]Pick{{Module: spec.Module{Name: "missing", Path: filepath.Join(dir, "missing.ko")}}, {Module: spec.Module{Name: "junk", Path: junk}}}, map[string]bool{}, FinitModule)
	if len(res) != 2 {
		t.Fatalf("%d results for 2 modules", len(res))
	}
	for _, r := range res {
		if r.Err == nil {
			t.Errorf("%s loaded?", r.Path)
		}
	}
}
