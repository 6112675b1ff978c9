package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// scriptPackages reads the packages=( … ) list of a .ci script.
func scriptPackages(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\npackages=\((.*?)\n\)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no packages=( … ) list", path)
	}
	var pkgs []string
	for _, l := range strings.Split(string(m[1]), "\n") {
		l, _, _ = strings.Cut(l, "#")
		pkgs = append(pkgs, strings.Fields(l)...)
	}
	return pkgs
}

// TestDeployJobsInstallOnlyWhatADeployNeeds: the deploy jobs install from
// .ci/install-deploy (no emulator, firmware or test tool) and
// .ci/install-mirage, with the Go, apt, opam and dune caches, the Mirage
// ones keyed by what determines them.
func TestDeployJobsInstallOnlyWhatADeployNeeds(t *testing.T) {
	deploy := scriptPackages(t, "../../.ci/install-deploy")
	tests := scriptPackages(t, "../../.ci/install")
	for _, p := range []string{"qemu-utils", "qemu-system-x86", "ovmf", "dosfstools", "mtools", "fdisk", "e2fsprogs", "cpio", "kmod", "ocaml-dune", "ocaml-nox", "nginx-light", "wrk", "nghttp2-client"} {
		if !slices.Contains(tests, p) {
			t.Errorf(".ci/install no longer installs %s; update this list of test-only packages", p)
		}
		if slices.Contains(deploy, p) {
			t.Errorf(".ci/install-deploy installs %s, which only the tests use", p)
		}
	}
	for _, p := range []string{"jekyll", "grub-efi-amd64-bin", "make", "libseccomp-dev", "curl"} {
		if !slices.Contains(deploy, p) {
			t.Errorf(".ci/install-deploy lacks %s, which a deploy needs", p)
		}
	}
	for _, f := range []string{"../../.ci/install", "../../.ci/install-deploy"} {
		if b, _ := os.ReadFile(f); !strings.Contains(string(b), "\nbash .ci/host-kernel\n") {
			t.Errorf("%s does not unpack the pinned kernel with .ci/host-kernel", f)
		}
	}

	wf := readWorkflowFile(t)
	job := wf.Jobs["deploy"]
	var goCache, aptCache, mirageCache bool
	for _, s := range job.Steps {
		switch {
		case strings.HasPrefix(s.Uses, "actions/setup-go@"):
			goCache = s.With["cache"] == "true"
		case strings.HasPrefix(s.Uses, "actions/cache@"):
			path, key := s.With["path"], s.With["key"]
			aptCache = aptCache || strings.Contains(path, "apt-archives") && strings.Contains(key, "hashFiles('.ci/install-deploy'")
			mirageCache = mirageCache || (strings.Contains(path, "~/.opam") && strings.Contains(path, "~/.cache/dune") && strings.Contains(path, "_mirage/duniverse") &&
				strings.Contains(key, "hashFiles('.ci/install-mirage')") && strings.Contains(key, "hashFiles('_mirage/config.ml')"))
		}
	}
	if !goCache || !aptCache || !mirageCache {
		t.Errorf("GitHub deploy job caches: Go %v, apt %v, Mirage (~/.opam, dune, duniverse by .ci/install-mirage and config.ml) %v; want all", goCache, aptCache, mirageCache)
	}
	travis := readYAML(t, "../../.travis.yml")
	dirs := asStrings(travis["cache"].(map[string]any)["directories"])
	for _, d := range []string{"$HOME/go/pkg/mod", "$HOME/.cache/go-build", "$HOME/.cache/apt-archives", "$HOME/.opam", "$HOME/.cache/dune", "_mirage/duniverse"} {
		if !slices.Contains(dirs, d) {
			t.Errorf(".travis.yml does not cache %s", d)
		}
	}
}

// fakeDeb builds a kernel package holding boot/vmlinuz-RELEASE.
func fakeDeb(t *testing.T, release string) []byte {
	t.Helper()
	dpkgDeb := testtool.Need(t, "dpkg-deb", "dpkg")
	root := filepath.Join(t.TempDir(), "pkg")
	writeFile(t, filepath.Join(root, "boot", "vmlinuz-"+release), "a kernel\n")
	writeFile(t, filepath.Join(root, "lib", "modules", release, "kernel", "drivers", "net", "virtio_net.ko"), "a module\n")
	writeFile(t, filepath.Join(root, "DEBIAN", "control"), "Package: linux-image-"+release+"\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: test <t@example.com>\nDescription: test kernel\n")
	deb := filepath.Join(t.TempDir(), "k.deb")
	if out, err := exec.Command(dpkgDeb, "--build", "--root-owner-group", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostKernelScript is .ci/host-kernel with its pin replaced by pin.
func hostKernelScript(t *testing.T, pin string) string {
	t.Helper()
	b, err := os.ReadFile("../../.ci/host-kernel")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)\n# --- pin: .*?# --- end of pin ---\n`)
	if !re.Match(b) {
		t.Fatal(".ci/host-kernel has no pin block")
	}
	p := filepath.Join(t.TempDir(), "host-kernel")
	if err := os.WriteFile(p, re.ReplaceAll(b, []byte("\n"+pin+"\n")), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostKernelScript runs .ci/host-kernel against local mirrors: the
// first one that has the pinned .deb with the pinned SHA-256 is used, the
// kernel is unpacked and stamped, a second run downloads nothing, and a
// package with another SHA-256 is refused with the fix, leaving what was
// there.
func TestHostKernelScript(t *testing.T) {
	testtool.Need(t, "curl", "curl")
	const release = "6.1.0-99-cloud-amd64"
	deb := fakeDeb(t, release)
	sum := sha256.Sum256(deb)
	const path = "pool/updates/main/l/linux-signed-amd64/linux-image-" + release + "_1.0-1_amd64.deb"
	var hits atomic.Int32
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/"+path {
			http.NotFound(w, r)
			return
		}
		w.Write(deb)
	}))
	defer good.Close()
	gone := httptest.NewServer(http.NotFoundHandler()) // the CDN after Debian dropped the version
	defer gone.Close()

	pin := func(sha string) string {
		return "package=linux-image-" + release + "\nversion=1.0-1\narchive=debian-security\npath=" + path + "\nsha256=" + sha + "\npinned=20261201T000000Z"
	}
	dir := filepath.Join(t.TempDir(), "kernel")
	run := func(script string) (string, error) {
		cmd := exec.Command("bash", script)
		cmd.Env = append(os.Environ(), "HOST_KERNEL_DIR="+dir, "HOST_KERNEL_MIRRORS="+gone.URL+" "+good.URL)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	script := hostKernelScript(t, pin(hex.EncodeToString(sum[:])))
	out, err := run(script)
	if err != nil || !strings.Contains(out, "from "+good.URL) {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "boot", "vmlinuz-"+release)); err != nil || string(b) != "a kernel\n" {
		t.Fatalf("the kernel was not unpacked: %q %v", b, err)
	}
	before := hits.Load()
	if out, err := run(script); err != nil || !strings.Contains(out, "already unpacked") || hits.Load() != before {
		t.Errorf("second run: %v, %d downloads\n%s", err, hits.Load()-before, out)
	}

	bad := hostKernelScript(t, pin(strings.Repeat("0", 64)))
	out, err = run(bad)
	if err == nil || !strings.Contains(out, "does not have the pinned SHA-256") || !strings.Contains(out, "--latest") {
		t.Errorf("a package with another SHA-256: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "boot", "vmlinuz-"+release)); err != nil {
		t.Error("a refused download removed the kernel already there")
	}
}

// TestHostKernelLatest: --latest reads Debian's indexes (here served
// locally) and prints the pin of the newest linux-image-cloud-amd64 across
// bookworm and bookworm-security, with its versioned package's pool path
// and SHA-256.
func TestHostKernelLatest(t *testing.T) {
	xz := testtool.Need(t, "xz", "xz-utils")
	testtool.Need(t, "dpkg", "dpkg")
	index := func(entries ...string) []byte {
		cmd := exec.Command(xz, "-c")
		cmd.Stdin = strings.NewReader(strings.Join(entries, "\n\n") + "\n")
		b, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	meta := func(v, dep string) string {
		return "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (" + v + ")\nVersion: " + v + "\nDepends: " + dep + "\nFilename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_" + v + "_amd64.deb"
	}
	image := func(pkg, v, dir, sha string) string {
		return "Package: " + pkg + "\nVersion: " + v + "\nFilename: " + dir + "/" + pkg + "_" + v + "_amd64.deb\nSHA256: " + sha
	}
	files := map[string][]byte{
		"/debian/dists/bookworm/main/binary-amd64/Packages.xz": index(
			image("linux-image-6.1.0-40-cloud-amd64", "6.1.176-1", "pool/main/l/linux-signed-amd64", strings.Repeat("1", 64)),
			meta("6.1.176-1", "linux-image-6.1.0-40-cloud-amd64 (= 6.1.176-1)")),
		"/debian-security/dists/bookworm-security/main/binary-amd64/Packages.xz": index(
			meta("6.1.192-3", "linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)"),
			image("linux-image-6.1.0-57-cloud-amd64", "6.1.192-3", "pool/updates/main/l/linux-signed-amd64", strings.Repeat("2", 64)),
			image("linux-image-6.1.0-57-cloud-amd64-dbg", "6.1.192-3", "pool/updates/main/l/linux-signed-amd64", strings.Repeat("3", 64))),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	cmd := exec.Command("bash", "../../.ci/host-kernel", "--latest")
	cmd.Env = append(os.Environ(), "HOST_KERNEL_INDEX="+srv.URL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("--latest: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"\npackage=linux-image-6.1.0-57-cloud-amd64\n", "\nversion=6.1.192-3\n", "\narchive=debian-security\n",
		"\npath=pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb\n",
		"\nsha256=" + strings.Repeat("2", 64) + "\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--latest printed\n%s\nwithout %q", out, want)
		}
	}
}

// TestInstallMirageReusesAMatchingRoot runs .ci/install-mirage with a
// stand-in opam that keeps its state in OPAMROOT as opam does (config,
// switches/NAME): a fresh root is initialised and given the switch and
// Mirage; a root it made is reused (Mirage asked for again, which opam
// answers from what is installed); a root made by another version of the
// script is started afresh. The real opam cannot run here: no opam
// repository is reachable.
func TestInstallMirageReusesAMatchingRoot(t *testing.T) {
	bin := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "log")
	writeExec(t, filepath.Join(bin, "opam"), `#!/bin/sh
echo "opam $*" >> `+logFile+`
case "$1 $2" in
"init "*) mkdir -p "$OPAMROOT" && touch "$OPAMROOT/config" ;;
"switch list") ls "$OPAMROOT/switches" 2>/dev/null ;;
"switch create") mkdir -p "$OPAMROOT/switches/$3" ;;
"exec "*) echo 4.11.1 ;;
esac
`)
	repo := t.TempDir()
	script, err := os.ReadFile("../../.ci/install-mirage")
	if err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(repo, ".ci", "install-mirage"), string(script))
	writeFile(t, filepath.Join(repo, "_mirage", "config.ml"), "(* a unikernel *)\n")
	root := filepath.Join(t.TempDir(), "opam-root")
	run := func() string {
		t.Helper()
		os.Remove(logFile)
		cmd := exec.Command("bash", filepath.Join(repo, ".ci", "install-mirage"))
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "OPAMROOT="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install-mirage: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(logFile)
		return string(b)
	}
	if log := run(); !strings.Contains(log, "opam init --bare --disable-sandboxing") || !strings.Contains(log, "opam switch create blog 4.14.2 -y") ||
		!strings.Contains(log, "opam install --switch=blog -y mirage>=4.9.0&<4.12.0") {
		t.Errorf("a fresh root: opam ran\n%s", log)
	}
	if log := run(); strings.Contains(log, "init") || strings.Contains(log, "switch create") || !strings.Contains(log, "opam install --switch=blog") {
		t.Errorf("its own root again: opam ran\n%s", log)
	}
	// The cache of another version of the script (another OCaml, another
	// MirageOS range): its root is not reused.
	writeFile(t, filepath.Join(root, "switches", "blog", "stale"), "")
	writeFile(t, filepath.Join(root, "blog-toolchain.stamp"), "made by another .ci/install-mirage\n")
	if log := run(); !strings.Contains(log, "opam init") || !strings.Contains(log, "switch create") {
		t.Errorf("a stale root: opam ran\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(root, "switches", "blog", "stale")); err == nil {
		t.Error("the stale switch survived")
	}
}
