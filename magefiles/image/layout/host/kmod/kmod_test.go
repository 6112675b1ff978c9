package kmod_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/unikernel-blog/blog/magefiles/image/layout/host/kmod"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// wanted is what the host layout loads: NIC drivers and the tender's needs.
var wanted = []string{"virtio_pci", "virtio_net", "ena", "xen-netfront", "tun", "nf_tables", "nft_chain_nat", "nft_nat"}

func openReal(t *testing.T) *kmod.Tree {
	t.Helper()
	tr, err := kmod.Open(hostkernel.Modules(t, hostkernel.Root(t)))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestResolveOrdersDebianCloudModules resolves the host's modules in the real
// Debian cloud kernel and checks every module comes after everything its
// depends= names — as read by kmod's own modinfo, independently of this code.
func TestResolveOrdersDebianCloudModules(t *testing.T) {
	tr := openReal(t)
	modinfo := testtool.Need(t, "modinfo", "kmod")
	load, builtin, err := tr.Resolve(append(slices.Clone(wanted), "nvme"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(builtin, []string{"nvme"}) {
		t.Errorf("builtin %v; want [nvme] (the cloud kernel has NVMe built in)", builtin)
	}
	pos := map[string]int{}
	for i, m := range load {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	for _, w := range wanted {
		if _, ok := pos[kmod.Normalize(w)]; !ok {
			t.Errorf("%s missing from the load list", w)
		}
	}
	for _, m := range load {
		out, err := exec.Command(modinfo, "-F", "depends", filepath.Join(tr.Dir, m.Path)).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", m.Path, err)
		}
		var deps []string
		for d := range strings.SplitSeq(strings.TrimSpace(string(out)), ",") {
			if d != "" {
				deps = append(deps, kmod.Normalize(d))
			}
		}
		if !slices.Equal(deps, m.Depends) {
			t.Errorf("%s: depends %v; modinfo says %v", m.Name, m.Depends, deps)
		}
		for _, d := range deps {
			if p, ok := pos[d]; !ok || p > pos[m.Name] {
				t.Errorf("%s (at %d) needs %s, which is at %d (or absent)", m.Name, pos[m.Name], d, p)
			}
		}
	}
	// What the cloud kernel's modules are known to need.
	for m, needs := range map[string][]string{
		"virtio_net":    {"virtio", "virtio_ring", "net_failover", "failover"},
		"virtio_pci":    {"virtio", "virtio_pci_modern_dev"},
		"nft_nat":       {"nf_tables", "nf_nat", "nf_conntrack", "nfnetlink"},
		"nft_chain_nat": {"nf_tables", "nf_nat"},
	} {
		for _, n := range needs {
			if pos[n] >= pos[m] {
				t.Errorf("%s must load after %s", m, n)
			}
		}
	}
	// Deterministic: the same request gives the same order.
	again, _, _ := tr.Resolve(append(slices.Clone(wanted), "nvme"))
	if !slices.EqualFunc(load, again, func(a, b kmod.Module) bool { return a.Path == b.Path }) {
		t.Error("two resolutions differ")
	}
	names := make([]string, len(load))
	for i, m := range load {
		names[i] = m.Name
	}
	t.Logf("load order: %s", strings.Join(names, " "))
}

// TestAliasesAgreeWithDepmod: the device patterns read from each module
// are the lines kmod's own depmod writes to modules.alias for it (depmod -n
// prints them without writing), for every module the host layout carries.
func TestAliasesAgreeWithDepmod(t *testing.T) {
	tr := openReal(t)
	depmod := testtool.Need(t, "depmod", "kmod")
	root := filepath.Dir(filepath.Dir(filepath.Dir(tr.Dir))) // the package root above lib/modules/<release>
	out, err := exec.Command(depmod, "-n", "-b", root, tr.Version).Output()
	if err != nil {
		t.Fatalf("depmod -n: %v", err)
	}
	byModule := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" && !strings.HasPrefix(f[1], "symbol:") {
			byModule[f[2]] = append(byModule[f[2]], f[1])
		}
	}
	load, _, err := tr.Resolve(append(slices.Clone(wanted), "virtio_rng"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range load {
		got, want := slices.Sorted(slices.Values(m.Aliases)), slices.Sorted(slices.Values(byModule[m.Name]))
		if !slices.Equal(got, want) {
			t.Errorf("%s: aliases %q; depmod says %q", m.Name, got, want)
		}
	}
	for name, pattern := range map[string]string{"virtio_net": "virtio:d00000001v*", "virtio_rng": "virtio:d00000004v*", "virtio_pci": "pci:v00001AF4d*sv*sd*bc*sc*i*", "xen_netfront": "xen:vif"} {
		m, err := tr.Module(name)
		if err != nil || !slices.Contains(m.Aliases, pattern) {
			t.Errorf("%s: aliases %q (%v); want %s among them", name, m.Aliases, err, pattern)
		}
	}
}

func TestMissingModulesNameTheProblem(t *testing.T) {
	tr := openReal(t)
	if _, _, err := tr.Resolve([]string{"no_such_driver"}); err == nil || !strings.Contains(err.Error(), "neither in") {
		t.Errorf("unknown module: %v", err)
	}
	// A tree missing a dependency: copy virtio_net alone.
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	copyModule(t, tr, "virtio_net", dir, "")
	small, err := kmod.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := small.Resolve([]string{"virtio_net"}); err == nil || !strings.Contains(err.Error(), "virtio_net needs") {
		t.Errorf("missing dependency: %v", err)
	}
	if _, err := kmod.Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no kernel modules") {
		t.Errorf("empty tree: %v", err)
	}
}

// TestCompressedModules reads modules compressed as distributions may ship
// them (Debian's later kernels use .ko.xz): xz, zstd and gzip.
func TestCompressedModules(t *testing.T) {
	tr := openReal(t)
	want, err := tr.Module("virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	copyModule(t, tr, "virtio_net", dir, ".xz")
	copyModule(t, tr, "virtio", dir, ".zst")
	copyModule(t, tr, "virtio_ring", dir, "")
	copyModule(t, tr, "net_failover", dir, ".zst")
	copyModule(t, tr, "failover", dir, ".xz")
	ct, err := kmod.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ct.Module("virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Depends, want.Depends) || !strings.HasSuffix(got.Path, ".ko.xz") {
		t.Errorf("compressed: %+v; want depends %v from a .ko.xz", got, want.Depends)
	}
	load, _, err := ct.Resolve([]string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	if len(load) != 5 || load[len(load)-1].Name != "virtio_net" {
		t.Errorf("load %+v", load)
	}
	orig, _ := tr.Read("virtio")
	dec, err := ct.Read("virtio")
	if err != nil || string(dec) != string(orig) {
		t.Errorf("zstd module does not decompress to the original (%v)", err)
	}
}

func copyModule(t *testing.T, tr *kmod.Tree, name, dir, ext string) {
	t.Helper()
	b, err := tr.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.FromSlash(tr.Path(name))+ext)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch ext {
	case ".xz":
		w, err := xz.NewWriter(f)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case ".zst":
		w, err := zstd.NewWriter(f)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		f.Write(b)
	}
}

func TestInfoRejectsNonModules(t *testing.T) {
	if _, err := kmod.Info([]byte("not an elf")); err == nil {
		t.Error("want an error for a non-ELF file")
	}
	if got := kmod.Depends(map[string][]string{"depends": {""}}); len(got) != 0 {
		t.Errorf("empty depends= gave %v", got)
	}
	if got := kmod.Depends(map[string][]string{"depends": {"a-b,c"}}); !slices.Equal(got, []string{"a_b", "c"}) {
		t.Errorf("got %v", got)
	}
}
