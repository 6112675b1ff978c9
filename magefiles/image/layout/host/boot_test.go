package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/hostinit/console"
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

// bootTimeout bounds a boot, from QEMU's start: under software emulation on two
// cores, OVMF, GRUB, Linux and the init take a few tens of seconds.
const bootTimeout = 4 * time.Minute

// buildTimeout bounds what comes before the boot: jekyll, compiling the init
// (a minute or more with a cold build cache on two busy cores), the image.
const buildTimeout = 10 * time.Minute

// TestBootServesTheBlog is the host layout end to end: this repository's blog
// built by jekyll, no unikernel (mirage_target: none), the Image step's host
// image booted by OVMF in QEMU with a virtio NIC on QEMU's user network, and
// the blog fetched over HTTP through a port forward.
func TestBootServesTheBlog(t *testing.T) {
	kernelRoot, qemu, fw := bootTools(t)
	testtool.Need(t, "jekyll", "jekyll")
	// Building (jekyll, the init with a cold Go cache, the image) has its
	// own budget; bootTimeout starts when QEMU does.
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	// The blog, built from a copy so the author's _site and _build stay untouched.
	repo, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	root := testtool.CopyRepo(t, repo)
	log, logs := testLog()
	sr, err := site.Build(ctx, site.Options{Root: root, Log: log})
	if err != nil {
		t.Fatalf("site: %v\n%s", err, logs)
	}
	siteDir := filepath.Join(root, "_site")
	buildDir := filepath.Join(root, "_build")
	// The Cert step with https off passes the build on.
	if err := receipt.Write(buildDir, cert.ReceiptName, cert.Receipt{BuildID: sr.BuildID, Commit: sr.Commit}); err != nil {
		t.Fatal(err)
	}
	if _, err := unikernel.Build(ctx, unikernel.Options{SiteDir: siteDir, BuildDir: buildDir, Target: unikernel.NoTarget, Log: log}); err != nil {
		t.Fatal(err)
	}
	ir, err := image.Build(ctx, image.Options{
		BuildDir: buildDir, Layout: host.Name, SiteDir: siteDir,
		Settings: layout.Settings{HostKernel: kernelRoot},
		Log:      log,
	})
	if err != nil {
		t.Fatalf("image: %v\n%s", err, logs)
	}
	want := image.BootSettings{VirtualizationType: "hvm", BootMode: "uefi", EnaSupport: true, RootDeviceName: "/dev/xvda"}
	if ir.Boot != want {
		t.Errorf("boot settings %+v; want %+v", ir.Boot, want)
	}
	t.Logf("image: %d bytes of data in a %d-byte image, digest %s; %s", ir.DataBytes, ir.SizeBytes, ir.Digest, initramfsLine(logs.String()))

	ctx, cancelBoot := context.WithTimeout(ctx, bootTimeout)
	defer cancelBoot()
	vm := boot(ctx, t, qemu, fw, ir.Path, withRDRAND, 80, 22, 443, 8080)
	base, client := vm.base, vm.client
	t.Logf("first HTTP 200 %.1fs after QEMU started", vm.firstOK.Seconds())

	get := func(path string, header ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		r, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return r, string(b)
	}
	meta := `<meta name="build-id" content="` + sr.BuildID + `">`

	r, index := get("/")
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(index, meta) {
		t.Errorf("GET /: %s, build-id meta present: %v", ct, strings.Contains(index, meta))
	}
	if want, _ := os.ReadFile(filepath.Join(siteDir, "index.html")); index != string(want) {
		t.Error("GET / differs from _site/index.html")
	}
	// A post: the first one the index links to.
	post := regexp.MustCompile(`href="(/\d{4}/\d{2}/\d{2}/[^"]+/)"`).FindStringSubmatch(index)
	if post == nil {
		t.Fatal("the index links no post")
	}
	r, body := get(post[1])
	wantPost, _ := os.ReadFile(filepath.Join(siteDir, filepath.FromSlash(post[1]), "index.html"))
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/html; charset=utf-8" || body != string(wantPost) || !strings.Contains(body, meta) {
		t.Errorf("GET %s: %d %s; want the post with the build id", post[1], r.StatusCode, r.Header.Get("Content-Type"))
	}
	// Conditional and compressed, through the real network path.
	if r2, _ := get(post[1], "If-None-Match", r.Header.Get("ETag")); r2.StatusCode != 304 {
		t.Errorf("revalidating %s: %d, want 304", post[1], r2.StatusCode)
	}
	r, body = get("/build-id.txt")
	if r.StatusCode != 200 || strings.TrimSpace(body) != sr.BuildID || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /build-id.txt: %d %q %s; want %s", r.StatusCode, body, r.Header.Get("Content-Type"), sr.BuildID)
	}
	r, body = get("/feed.xml")
	if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), "xml") || !strings.Contains(body, "<feed") {
		t.Errorf("GET /feed.xml: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	r, body = get("/no/such/page/")
	want404, _ := os.ReadFile(filepath.Join(siteDir, "404.html"))
	if r.StatusCode != 404 || body != string(want404) || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /no/such/page/: %d %s; want 404 with the site's 404.html", r.StatusCode, r.Header.Get("Content-Type"))
	}

	// Nothing else listens: no shell, no other server. (The probe itself is
	// checked on port 80, where the server waits for a request.)
	if vm.closed(t, 80) {
		t.Error("the probe finds port 80 closed: it cannot tell listeners apart")
	}
	for _, p := range []int{22, 443, 8080} {
		if !vm.closed(t, p) {
			t.Errorf("something listens on the guest's port %d", p)
		}
	}

	// The serial console shows the init's steps, with timings.
	lines := initLines(t, vm.serial)
	log2 := strings.Join(lines, "\n")
	for _, step := range []string{
		"init started",
		"mounting /proc /sys /dev /tmp /run done in",
		"module virtio_pci loaded",
		"module virtio_net loaded",
		"kernel modules for the devices present done in",
		// The CPU's RDRAND seeded it before the init started, as on EC2.
		"random number generator seeded before the init started",
		"random number generator seeded: no wait",
		"bringing up the network (DHCP) done in",
		"network up: ",
		"address 10.0.2.15/24 gateway 10.0.2.2",
		"site build " + sr.BuildID,
		"serving ",
	} {
		if !strings.Contains(log2, step) {
			t.Errorf("the serial console lacks %q", step)
		}
	}
	// Only the drivers for the devices present: none for EC2's NICs, nor
	// for an entropy device this VM does not have.
	for _, m := range []string{"ena", "xen_netfront", "virtio_rng"} {
		if strings.Contains(log2, "module "+m+" ") {
			t.Errorf("the init loaded %s under QEMU, which has no such device", m)
		}
	}
	t.Logf("init's console lines:\n%s", strings.Join(lines, "\n"))
	// The init's own timeline: with entropy provided, serving within a
	// second of its start (its clock, not QEMU's, which software emulation
	// on a shared machine stretches).
	ready, phases := initTimeline(t, lines)
	t.Logf("init: serving %s after it started; phases: %s", ready, phases)
	if ready > initBudget {
		// Under software emulation the guest's clock runs with the host's:
		// another process holding the shared CPU stretches every phase. One
		// more boot, with this VM off, tells a busy host from a slow init;
		// an init that really is slow (a wait for entropy, modules for
		// absent devices) is over budget both times.
		vm.stop()
		t.Logf("the init took %s, over its %s budget; booting once more in case the host was busy", ready, initBudget)
		actx, cancelAgain := context.WithTimeout(context.Background(), bootTimeout)
		defer cancelAgain()
		again := boot(actx, t, qemu, fw, ir.Path, withRDRAND, 80)
		ready2, phases2 := initTimeline(t, initLines(t, again.serial))
		t.Logf("init, second boot: serving %s after it started; phases: %s", ready2, phases2)
		if ready2 > initBudget {
			t.Errorf("the init took %s and then %s from its start to serving; want at most %s", ready, ready2, initBudget)
		}
	}
}

// initBudget is the init's time from its start to serving under QEMU with
// an entropy device: mounting, the modules for the devices present, DHCP,
// and the site loaded alongside.
const initBudget = time.Second

// readyLine is the init's summary: "ready: serving 812ms after init started
// (mount 11ms, modules 312ms, …)".
var readyLine = regexp.MustCompile(regexp.QuoteMeta(console.Prefix+console.ReadyPrefix) + `serving (\S+) after init started \((.*)\)$`)

// initTimeline reads the init's summary line: its time to serving and the
// phases, each checked to parse.
func initTimeline(t *testing.T, lines []string) (time.Duration, string) {
	t.Helper()
	for _, l := range lines {
		m := readyLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		ready, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		for _, p := range strings.Split(m[2], ", ") {
			f := strings.Fields(p)
			if _, err := time.ParseDuration(f[len(f)-1]); err != nil || len(f) < 2 {
				t.Errorf("phase %q in %q does not end with a duration", p, l)
			}
		}
		for _, want := range []string{"mount ", "modules ", "entropy ", "network ", "site "} {
			if !strings.Contains(m[2], want) {
				t.Errorf("the init's timeline %q lacks the phase %q", m[2], want)
			}
		}
		return ready, m[2]
	}
	t.Fatalf("the init logged no %q line", console.ReadyPrefix)
	return 0, ""
}

// vm is a booted guest answering HTTP.
type vm struct {
	base    string // http://127.0.0.1:PORT
	client  *http.Client
	serial  string // the serial console's log file
	firstOK time.Duration
	probes  map[int]int // guest port → loopback port forwarded to it
	stop    func()      // powers the VM off (the test's cleanup does too)
}

// closed reports whether nothing listens on the guest's port: QEMU's user
// network accepts the connection, finds the guest's port closed and hangs
// up at once, where a listener would keep it open waiting for a request.
func (v *vm) closed(t *testing.T, guest int) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(v.probes[guest]), 5*time.Second)
	if err != nil {
		return true
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	return n == 0 && err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// entropy is how a boot gives the guest's kernel entropy, as EC2's CPUs
// do with RDRAND: a CPU model that has it, or QEMU's virtio-rng device,
// which the init then loads virtio_rng for.
type entropy []string

var (
	withRDRAND    = entropy{"-cpu", "max"}
	withVirtioRNG = entropy{"-device", "virtio-rng-pci"}
)

// boot starts QEMU in software emulation, shaped like the EC2 instances the
// image runs on: a PCI Express machine (q35; Nitro's devices are PCIe), the
// disk on NVMe, a virtio NIC on QEMU's user network standing in for ENA,
// OVMF, 512 MiB, an entropy source. One vCPU: under software emulation on
// a shared machine, a second one makes each cross-CPU call in the kernel
// (module loading flushes every CPU's TLB) wait for the host to schedule
// the other vCPU's thread, which measures the host rather than the init.
// The port forward is bound to the loopback and the serial console goes
// to a file; it waits for HTTP 200 on /. QEMU is killed when the test ends.
func boot(ctx context.Context, t *testing.T, qemu string, fw image.Firmware, img string, rng entropy, probe ...int) *vm {
	t.Helper()
	port := freePort(t)
	nic := "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(port) + "-:80"
	probes := map[int]int{}
	for _, guest := range probe {
		probes[guest] = freePort(t)
		nic += ",hostfwd=tcp:127.0.0.1:" + strconv.Itoa(probes[guest]) + "-:" + strconv.Itoa(guest)
	}
	serial := filepath.Join(t.TempDir(), "serial.log")
	vars := filepath.Join(t.TempDir(), "vars.fd")
	copyFile(t, fw.Vars, vars)
	args := []string{
		"-accel", "tcg", "-machine", "q35", "-smp", "1", "-m", "512",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + fw.Code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "file=" + img + ",format=raw,if=none,id=disk,snapshot=on",
		"-device", "nvme,drive=disk,serial=blog",
		"-nic", nic,
		"-display", "none", "-serial", "file:" + serial, "-monitor", "none",
		"-no-reboot",
	}
	args = append(args, rng...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	var qemuOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(serial)
			t.Logf("serial console:\n%s\nqemu:\n%s", b, qemuOut.String())
		}
	})
	v := &vm{base: "http://127.0.0.1:" + strconv.Itoa(port), client: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, serial: serial, probes: probes,
		stop: func() { _ = cmd.Process.Kill() }}
	for {
		if r, err := v.client.Get(v.base + "/"); err == nil {
			r.Body.Close()
			// 301: an image with https answers plain HTTP with its redirect.
			if r.StatusCode == 200 || r.StatusCode == http.StatusMovedPermanently {
				v.firstOK = time.Since(start)
				return v
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("QEMU exited before the guest served HTTP: %v", err)
		case <-ctx.Done():
			t.Fatalf("no HTTP 200 from the guest within %s", bootTimeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// initLines are the init's lines on the serial console.
func initLines(t *testing.T, serial string) []string {
	t.Helper()
	b, err := os.ReadFile(serial)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, console.Prefix) {
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
	}
	return lines
}

// initramfsLine is the layout's log line about the initramfs.
func initramfsLine(logs string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "initramfs built") {
			return l
		}
	}
	return "(no initramfs line logged)"
}

// TestBootRunsTheSPTPayload boots the Mirage payload's image with a stand-in
// for solo5-spt (no Mirage toolchain builds a real unikernel here), twice:
// testdata/standin-spt, a static Go program, and testdata/standin-spt-c,
// which behaves the same but is linked dynamically against glibc and
// Debian's libseccomp as the real tender is, so it starts only if the image
// carries its interpreter and libraries. Real: the tun and nftables
// modules, the tap, ip_forward, the DNAT from the NIC, and the init starting
// the tender with the plan's command line (and, for the dynamic one, its
// LD_LIBRARY_PATH). Stood in: the unikernel, whose address the stand-in
// takes on the host's loopback to answer HTTP with the command line it was
// given.
func TestBootRunsTheSPTPayload(t *testing.T) {
	kernelRoot, qemu, fw := bootTools(t)

	tenders := []struct {
		name    string
		dynamic bool
		build   func(ctx context.Context, t *testing.T, dir string) string
	}{
		{"static", false, func(ctx context.Context, t *testing.T, dir string) string {
			tender := filepath.Join(dir, "solo5-spt")
			build := exec.CommandContext(ctx, "go", "build", "-o", tender, "./testdata/standin-spt")
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("building the stand-in tender: %v\n%s", err, out)
			}
			return tender
		}},
		{"dynamic", true, func(_ context.Context, t *testing.T, dir string) string { return dynamicTender(t, dir) }},
	}
	for _, tc := range tenders {
		t.Run(tc.name, func(t *testing.T) {
			// Building (the init with a cold Go cache, the image) has its
			// own budget; bootTimeout starts when QEMU does.
			ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
			defer cancel()
			dir := t.TempDir()
			tender := tc.build(ctx, t, dir)
			// Any ELF file passes for the unikernel: the stand-in only checks it is there.
			uk := filepath.Join(dir, "blog.spt")
			copyFile(t, tender, uk)

			log, logs := testLog()
			buildDir := filepath.Join(dir, "_build")
			siteReceipt(t, buildDir, "feedc0de12345678")
			if _, err := unikernel.Build(ctx, unikernel.Options{BuildDir: buildDir, Prebuilt: uk, Log: log}); err != nil {
				t.Fatal(err)
			}
			ir, err := image.Build(ctx, image.Options{
				BuildDir: buildDir, Layout: host.Name,
				Settings: layout.Settings{HostKernel: kernelRoot, Solo5SPT: tender},
				Log:      log,
			})
			if err != nil {
				t.Fatalf("image: %v\n%s", err, logs)
			}
			t.Logf("image: %d bytes of data; %s", ir.DataBytes, initramfsLine(logs.String()))

			ctx, cancelBoot := context.WithTimeout(ctx, bootTimeout)
			defer cancelBoot()
			vm := boot(ctx, t, qemu, fw, ir.Path, withVirtioRNG)
			t.Logf("first HTTP 200 %.1fs after QEMU started", vm.firstOK.Seconds())
			r, err := vm.client.Get(vm.base + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			// The unikernel's address and gateway: the plan's first /30, as QEMU's
			// 10.0.2.0/24 does not overlap it.
			want := "standin-spt --mem=" + strconv.Itoa(64+2*int(fileSize(t, uk))>>20) + " --net:service=tap0 /srv/unikernel.spt --ipv4=100.127.255.254/30 --ipv4-gateway=100.127.255.253\n"
			if string(body) != want {
				t.Errorf("the tender got\n%q\nwant\n%q", body, want)
			}
			lines := strings.Join(initLines(t, vm.serial), "\n")
			steps := []string{
				"payload spt",
				"module tun loaded", "module nf_tables loaded", "module nft_chain_nat loaded", "module nft_nat loaded",
				// QEMU's entropy device, found once virtio_pci is loaded,
				// seeds the generator before DHCP needs it.
				"module virtio_rng loaded", "random number generator seeded: no wait",
				"plan: tap tap0 host 100.127.255.253/30 unikernel 100.127.255.254/30 gateway 100.127.255.253",
				`plan: nft table ip blog: iifname "eth0" tcp dport 80 dnat to 100.127.255.254:80`,
				"creating the tap and the port forwards done in",
				"starting [/bin/solo5-spt --mem=",
				console.ReadyPrefix + "starting the unikernel ",
			}
			if tc.dynamic {
				// libseccomp, loaded from the image, answered with its version.
				if v := r.Header.Get("X-Libseccomp"); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
					t.Errorf("X-Libseccomp: %q; want libseccomp's version", v)
				}
				steps = append(steps, "] with [LD_LIBRARY_PATH="+host.TenderLibDir+"]")
			}
			for _, step := range steps {
				if !strings.Contains(lines, step) {
					t.Errorf("the serial console lacks %q", step)
				}
			}
			t.Logf("init's console lines:\n%s", lines)
		})
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// firmware finds OVMF's code and variables pair, or skips (fails under CI).
// bootTools skips a VM-booting test under -short and finds what it needs:
// the pinned host kernel, GRUB's EFI binaries, QEMU and OVMF.
func bootTools(t *testing.T) (kernelRoot, qemu string, fw image.Firmware) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	kernelRoot = hostkernel.Root(t)
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	qemu = testtool.Need(t, image.QEMU, "qemu-system-x86")
	return kernelRoot, qemu, firmware(t)
}

func firmware(t *testing.T) image.Firmware {
	t.Helper()
	for _, f := range image.DefaultFirmware {
		if f.Vars == "" {
			continue
		}
		if _, err := os.Stat(f.Code); err == nil {
			if _, err := os.Stat(f.Vars); err == nil {
				return f
			}
		}
	}
	testtool.Missing(t, "no OVMF firmware (/usr/share/OVMF/OVMF_CODE_4M.fd); install it with `apt-get install ovmf`")
	return image.Firmware{}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testLog() (*logrus.Entry, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	return l.WithField("step", "test"), &buf
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(fmt.Errorf("copying %s: %w", from, err))
	}
}
