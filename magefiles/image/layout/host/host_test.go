package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/unikernel-blog/blog/hostinit/spec"
	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// fixtureSite is a small built site.
func fixtureSite(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "_site")
	for name, body := range map[string]string{
		"index.html":                  "<html><head><meta name=\"build-id\" content=\"feedc0de12345678\"></head><body>home</body></html>\n",
		"404.html":                    "<p>not here</p>\n",
		"2024/01/02/first/index.html": "<p>first</p>\n",
		"build-id.txt":                "feedc0de12345678\n",
		"assets/site.css":             "body{}\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// siteReceipt records a site build as the Site step does, for the steps after it.
func siteReceipt(t *testing.T, buildDir, buildID string) {
	t.Helper()
	if err := receipt.Write(buildDir, site.ReceiptName, site.Receipt{BuildID: buildID, Commit: "c0ffee"}); err != nil {
		t.Fatal(err)
	}
	// The Cert step with https off passes the build on.
	if err := receipt.Write(buildDir, cert.ReceiptName, cert.Receipt{BuildID: buildID, Commit: "c0ffee"}); err != nil {
		t.Fatal(err)
	}
}

var (
	initOnce  sync.Once
	initBytes []byte
	initErr   error
)

// theInit builds the init once for all tests.
func theInit(t *testing.T) []byte {
	t.Helper()
	initOnce.Do(func() { initBytes, initErr = host.BuildInit(context.Background()) })
	if initErr != nil {
		t.Fatal(initErr)
	}
	return initBytes
}

func kernel(t *testing.T) *host.Kernel {
	t.Helper()
	k, err := host.FindKernel(hostkernel.Root(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cpioList lists a gzip'd initramfs with GNU cpio (via gzip -dc).
func cpioList(t *testing.T, gz []byte, verbose bool) []string {
	t.Helper()
	cpioTool := testtool.Need(t, "cpio", "cpio")
	args := []string{"--quiet", "-i", "-t", "-H", "newc"}
	if verbose {
		args = append(args, "-v", "-n")
	}
	cmd := exec.Command("sh", "-c", "gzip -dc | "+cpioTool+" "+strings.Join(args, " "))
	cmd.Stdin = bytes.NewReader(gz)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// cpioExtract returns one file of a gzip'd initramfs, extracted by GNU cpio.
func cpioExtract(t *testing.T, gz []byte, name string) []byte {
	t.Helper()
	cpioTool := testtool.Need(t, "cpio", "cpio")
	cmd := exec.Command("sh", "-c", "gzip -dc | "+cpioTool+" --quiet -i --to-stdout -H newc "+name)
	cmd.Stdin = bytes.NewReader(gz)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -i %s: %v", name, err)
	}
	return out
}

func TestStaticInitramfs(t *testing.T) {
	k := kernel(t)
	site := fixtureSite(t)
	gz, cfg, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), SiteDir: site})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("static initramfs: %d bytes gzip'd, %d modules", len(gz), len(cfg.Modules))
	names := cpioList(t, gz, false)
	if !slices.IsSorted(names) {
		t.Errorf("entries not in sorted order:\n%s", strings.Join(names, "\n"))
	}
	modDir := "lib/modules/" + k.Release + "/kernel/"
	for _, want := range []string{
		"init", "dev/console", "proc", "sys", "tmp", "run", "etc/hostinit.json",
		"srv/site/index.html", "srv/site/404.html", "srv/site/2024/01/02/first/index.html", "srv/site/build-id.txt",
		modDir + "drivers/net/virtio_net.ko", modDir + "drivers/virtio/virtio_pci.ko",
		modDir + "drivers/net/ethernet/amazon/ena/ena.ko", modDir + "drivers/net/xen-netfront.ko", modDir + "drivers/char/hw_random/virtio-rng.ko",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("the initramfs lacks %s", want)
		}
	}
	for _, n := range names {
		if strings.Contains(n, "tun.ko") || strings.Contains(n, "nf_tables") {
			t.Errorf("the static payload carries the tender's module %s", n)
		}
	}
	// Metadata as cpio -tv shows it: root-owned, one fixed date.
	for _, line := range cpioList(t, gz, true) {
		f := strings.Fields(line)
		if len(f) < 8 || f[2] != "0" || f[3] != "0" || !strings.Contains(line, "Jan  1  2000") {
			t.Errorf("cpio -tv line %q: want owner 0 0 and date Jan 1 2000", line)
		}
		if strings.HasSuffix(line, " init") && !strings.HasPrefix(line, "-rwxr-xr-x") {
			t.Errorf("init is not executable: %s", line)
		}
		if strings.HasSuffix(line, " dev/console") && !strings.HasPrefix(line, "crw-------") {
			t.Errorf("dev/console is not the console device: %s", line)
		}
	}
	// The configuration in the archive is the one returned, and names
	// files that are there, dependencies first.
	var inArchive spec.Config
	if err := json.Unmarshal(cpioExtract(t, gz, "etc/hostinit.json"), &inArchive); err != nil {
		t.Fatal(err)
	}
	if inArchive.Payload != spec.PayloadStatic || inArchive.Static.Root != "/srv/site" || inArchive.Static.Port != 80 || inArchive.BuildID != "feedc0de12345678" {
		t.Errorf("configuration %+v %+v", inArchive, inArchive.Static)
	}
	if !reflect.DeepEqual(inArchive.Modules, cfg.Modules) {
		t.Errorf("archived modules %v differ from %v", inArchive.Modules, cfg.Modules)
	}
	pos := map[string]int{}
	byName := map[string]spec.Module{}
	for i, m := range inArchive.Modules {
		if !slices.Contains(names, strings.TrimPrefix(m.Path, "/")) {
			t.Errorf("module %s is not in the archive", m.Path)
		}
		pos[m.Name] = i
		byName[m.Name] = m
	}
	if !(pos["virtio_ring"] < pos["virtio"] && pos["virtio"] < pos["virtio_net"] && pos["failover"] < pos["net_failover"] && pos["net_failover"] < pos["virtio_net"]) {
		t.Errorf("modules out of dependency order: %v", inArchive.Modules)
	}
	if err := inArchive.Check(); err != nil {
		t.Errorf("the init would refuse its configuration: %v", err)
	}
	// What lets the init load only what the devices need: each driver's
	// device patterns (QEMU's virtio NIC and entropy source, EC2's ENA and
	// Xen NIC), and nothing loaded whatever the devices in a static image.
	for name, alias := range map[string]string{
		"virtio_pci": "pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_net": "virtio:d00000001v*", "virtio_rng": "virtio:d00000004v*",
		"ena": "pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*", "xen_netfront": "xen:vif",
	} {
		if !slices.Contains(byName[name].Aliases, alias) {
			t.Errorf("module %s: aliases %q lack %s", name, byName[name].Aliases, alias)
		}
	}
	for _, m := range inArchive.Modules {
		if m.Always {
			t.Errorf("the static payload loads %s whatever the devices", m.Name)
		}
	}
	if got := cpioExtract(t, gz, "init"); !bytes.Equal(got, theInit(t)) {
		t.Error("the archived init differs from the built one")
	}

	// Deterministic: the same inputs, the same bytes.
	again, _, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), SiteDir: site})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gz, again) {
		t.Error("two initramfs builds of the same inputs differ")
	}
}

func TestSPTInitramfs(t *testing.T) {
	k := kernel(t)
	dir := t.TempDir()
	// Stand-ins: a static program for the tender (tender_test.go has the
	// dynamically linked one), any ELF file for the unikernel.
	tender := staticTender(t, dir)
	self, err := os.ReadFile(tender)
	if err != nil {
		t.Fatal(err)
	}
	uk := filepath.Join(dir, "blog.spt")
	os.WriteFile(uk, self, 0o644)
	gz, cfg, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), Unikernel: uk, Tender: tender})
	if err != nil {
		t.Fatal(err)
	}
	names := cpioList(t, gz, false)
	for _, want := range []string{"bin/solo5-spt", "srv/unikernel.spt", "init"} {
		if !slices.Contains(names, want) {
			t.Errorf("the spt initramfs lacks %s", want)
		}
	}
	var mods, always []string
	for _, m := range cfg.Modules {
		mods = append(mods, m.Name)
		if m.Always {
			always = append(always, m.Name)
		}
	}
	for _, want := range []string{"tun", "nf_tables", "nft_chain_nat", "nft_nat", "nf_nat", "nf_conntrack", "virtio_net", "ena", "virtio_rng"} {
		if !slices.Contains(mods, want) {
			t.Errorf("the spt payload lacks module %s (has %v)", want, mods)
		}
	}
	// The tender's modules drive no device: loaded always; their
	// dependencies come with them.
	if !slices.Equal(always, host.TenderModules) {
		t.Errorf("modules loaded always: %v; want %v", always, host.TenderModules)
	}
	if cfg.Payload != spec.PayloadSPT || cfg.SPT.Tender != "/bin/solo5-spt" || cfg.SPT.Kernel != "/srv/unikernel.spt" || !slices.Equal(cfg.SPT.Ports, []int{80, 443}) || cfg.SPT.MemMiB < 64 {
		t.Errorf("spt configuration %+v", cfg.SPT)
	}
	for _, line := range cpioList(t, gz, true) {
		if strings.HasSuffix(line, " bin/solo5-spt") && !strings.HasPrefix(line, "-rwxr-xr-x") {
			t.Errorf("the tender is not executable: %s", line)
		}
	}
	// A unikernel that is not an ELF file is refused with the fix.
	os.WriteFile(uk, []byte("not a kernel"), 0o644)
	if _, _, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), Unikernel: uk, Tender: tender}); err == nil || !strings.Contains(err.Error(), "mirage_target: spt") {
		t.Errorf("non-ELF unikernel: %v", err)
	}
}

// TestImageIsReproducible builds the host image twice, in two build
// directories, through the Image step: the same bytes. A changed page gives
// a different image.
func TestImageIsReproducible(t *testing.T) {
	kroot := hostkernel.Root(t)
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	site := fixtureSite(t)
	quiet, _ := testLog()
	build := func() *image.Receipt {
		t.Helper()
		dir := t.TempDir()
		siteReceipt(t, dir, "feedc0de12345678")
		if _, err := unikernel.Build(context.Background(), unikernel.Options{SiteDir: site, BuildDir: dir, Target: unikernel.NoTarget, Log: quiet}); err != nil {
			t.Fatal(err)
		}
		r, err := image.Build(context.Background(), image.Options{BuildDir: dir, Layout: host.Name, SiteDir: site, Size: 128 << 20,
			Settings: layout.Settings{HostKernel: kroot}, Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := build(), build()
	if a.Digest != b.Digest {
		t.Fatalf("two builds differ: %s and %s", a.Digest, b.Digest)
	}
	t.Logf("host image: %d data bytes, digest %s", a.DataBytes, a.Digest)
	for _, k := range []string{"layout.init", "layout.vmlinuz", "layout.site", "layout.grub", "layout.kernel_release"} {
		if a.Inputs[k] == "" {
			t.Errorf("input %s not recorded: %v", k, a.Inputs)
		}
	}
	checkWithRealTools(t, a.Path, kroot)

	os.WriteFile(filepath.Join(site, "index.html"), []byte("<p>changed</p>\n"), 0o644)
	if c := build(); c.Digest == a.Digest {
		t.Error("a changed site gave the same image")
	}
}

func TestKernelErrorsNameTheFix(t *testing.T) {
	_, err := host.FindKernel(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "bash .ci/host-kernel") || !strings.Contains(err.Error(), "deploy.host_kernel") {
		t.Errorf("empty host_kernel: %v", err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-6.1.0-1-cloud-amd64"), []byte("x"), 0o644)
	if _, err := host.FindKernel(dir); err == nil || !strings.Contains(err.Error(), "modules of kernel 6.1.0-1-cloud-amd64") {
		t.Errorf("kernel without modules: %v", err)
	}
}

func TestGRUBBootsLinuxWithTheInitramfsOnTheSerialConsole(t *testing.T) {
	for _, want := range []string{
		"linux /boot/vmlinuz console=ttyS0,115200n8",
		"initrd /boot/initrd",
		"insmod linux",
		"search --no-floppy --file /boot/vmlinuz --set=root",
		"serial --unit=0 --speed=115200",
	} {
		if !strings.Contains(host.GRUBConfig, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, host.GRUBConfig)
		}
	}
	if strings.Contains(host.GRUBConfig, "multiboot") {
		t.Error("grub.cfg uses multiboot")
	}
}

// checkWithRealTools reads the host image with tools we did not write:
// sfdisk (one EFI System Partition), fsck.fat (a clean FAT32), mtools (GRUB,
// the kernel byte for byte, the initramfs, which cpio lists).
func checkWithRealTools(t *testing.T, img, kernelRoot string) {
	t.Helper()
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	fsck := testtool.Need(t, "fsck.fat", "dosfstools")
	mcopy := testtool.Need(t, "mcopy", "mtools")
	out, err := exec.Command(sfdisk, "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var pt struct {
		PartitionTable struct {
			Label      string
			Partitions []struct {
				Start, Size int64
				Type        string
			}
		}
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Fatal(err)
	}
	ps := pt.PartitionTable.Partitions
	if pt.PartitionTable.Label != "gpt" || len(ps) != 1 || ps[0].Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Fatalf("sfdisk: %s; want a GPT with one EFI System Partition", out)
	}
	esp := testtool.Extract(t, img, ps[0].Start*512, ps[0].Size*512)
	if out, err := exec.Command(fsck, "-n", esp).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Fixing")) {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	get := func(name string) []byte {
		t.Helper()
		cmd := exec.Command(mcopy, "-i", esp, "::"+name, "-")
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("mcopy ::%s: %v", name, err)
		}
		return b
	}
	if efi := get(host.BootPath); !bytes.HasPrefix(efi, []byte("MZ")) {
		t.Error("BOOTX64.EFI is not a PE image")
	}
	k, err := host.FindKernel(kernelRoot)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(k.Vmlinuz)
	if !bytes.Equal(get(host.KernelPath), want) {
		t.Error("/boot/vmlinuz differs from the kernel package's")
	}
	if names := cpioList(t, get(host.InitrdPath), false); !slices.Contains(names, "init") || !slices.Contains(names, "srv/site/index.html") {
		t.Errorf("/boot/initrd lists %v", names)
	}
}

// TestInitBuildsBesideBundlersGems: a blog whose gems Bundler installed
// into vendor/bundle (a common setup) still gets its init built; go must
// not take that vendor/ for its own vendored modules.
func TestInitBuildsBesideBundlersGems(t *testing.T) {
	repo, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	root := testtool.CopyRepo(t, repo)
	gem := filepath.Join(root, "vendor", "bundle", "ruby", "3.1.0", "gems", "jekyll-4.3.1", "lib")
	if err := os.MkdirAll(gem, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(gem, "jekyll.rb"), []byte("module Jekyll; end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	b, err := host.BuildInit(context.Background())
	if err != nil {
		t.Fatalf("building the init beside vendor/bundle: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Fatalf("the init is not an ELF program: %q…", b[:min(len(b), 8)])
	}
}
