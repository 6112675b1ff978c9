package unikernel

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// release is one MirageOS release as its sources define the DHCP switch
// (lib/devices/key.ml at the tag in github.com/mirage/mirage): written here
// from the sources, apart from the table in mirage.go, so the two check each
// other.
type release struct {
	version     string
	dhcp        string // "option": --dhcp BOOL; "flag": --no-dhcp
	dhcpDefault bool
}

// releases are every MirageOS release from 4.9.0 to 4.11.1.
var releases = []release{
	{"4.9.0", "option", false},
	{"4.10.0", "option", false}, {"4.10.1", "option", false}, {"4.10.2", "option", false},
	{"4.10.3", "option", false}, {"4.10.4", "option", false},
	{"4.10.5", "option", true}, {"4.10.6", "option", true},
	{"4.11.0", "flag", true}, {"4.11.1", "flag", true},
}

// useRelease makes the stand-in mirage (testdata/mirage) that release.
func useRelease(t *testing.T, r release) {
	t.Setenv("STANDIN_VERSION", r.version)
	t.Setenv("STANDIN_DHCP", r.dhcp)
	t.Setenv("STANDIN_DHCP_DEFAULT", strconv.FormatBool(r.dhcpDefault))
}

type fixture struct {
	mirageDir, siteDir, buildDir, log string
	logs                              *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testtool.Need(t, "make", "make")
	root := t.TempDir()
	f := &fixture{
		mirageDir: filepath.Join(root, "_mirage"),
		siteDir:   filepath.Join(root, "_site"),
		buildDir:  filepath.Join(root, "_build"),
		log:       filepath.Join(root, "standin.log"),
		logs:      &bytes.Buffer{},
	}
	write(t, filepath.Join(f.mirageDir, "config.ml"), "open Mirage\n")
	write(t, filepath.Join(f.mirageDir, "unikernel.ml"), "(* serves htdocs *)\n")
	write(t, filepath.Join(f.siteDir, "index.html"), "<h1>v1</h1>\n")
	write(t, filepath.Join(f.siteDir, "2024/01/post/index.html"), "<p>post</p>\n")
	f.stamp(t, "aaaa1111")

	bin := filepath.Join(root, "bin")
	standIn, err := os.ReadFile("testdata/mirage")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(bin, "mirage"), string(standIn))
	if err := os.Chmod(filepath.Join(bin, "mirage"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("STANDIN_LOG", f.log)
	useRelease(t, releases[len(releases)-1])
	return f
}

// stamp makes the site build id as the Site step does: in _site and in its receipt.
func (f *fixture) stamp(t *testing.T, id string) {
	t.Helper()
	write(t, filepath.Join(f.siteDir, "build-id.txt"), id+"\n")
	if err := receipt.Write(f.buildDir, site.ReceiptName, site.Receipt{BuildID: id, Commit: "c0ffee"}); err != nil {
		t.Fatal(err)
	}
	// The Cert step with https off passes the build on.
	if err := receipt.Write(f.buildDir, cert.ReceiptName, cert.Receipt{BuildID: id, Commit: "c0ffee"}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) options(target string) Options {
	l := logrus.New()
	l.SetOutput(f.logs)
	return Options{MirageDir: f.mirageDir, SiteDir: f.siteDir, BuildDir: f.buildDir, Target: target, Log: l.WithField("step", "unikernel")}
}

func (f *fixture) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRunsTheMirageCommandsInTheProject(t *testing.T) {
	f := newFixture(t)
	r, err := Build(context.Background(), f.options("virtio"))
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, f.logs)
	}
	want := []string{
		"mirage configure -t virtio @ " + f.mirageDir,
		"make depend @ " + f.mirageDir,
		"make build @ " + f.mirageDir,
	}
	if got := f.calls(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n got %q\nwant %q", got, want)
	}
	if r.Kernel != filepath.Join(f.mirageDir, "dist", "blog.virtio") || r.Target != "virtio" || r.BuildID != "aaaa1111" || r.Prebuilt {
		t.Errorf("receipt = %+v", r)
	}
	kernel, _ := os.ReadFile(r.Kernel)
	if string(kernel) != "<h1>v1</h1>\n" {
		t.Errorf("the site was not copied into htdocs before the build: kernel = %q", kernel)
	}
	if _, err := os.Stat(filepath.Join(f.mirageDir, "htdocs", "2024", "01", "post", "index.html")); err != nil {
		t.Errorf("nested site files not copied: %v", err)
	}
	stored, err := ReadReceipt(f.buildDir)
	if err != nil || stored.KernelSHA256 != r.KernelSHA256 || len(stored.Commands) != 3 {
		t.Errorf("stored receipt = %+v, %v", stored, err)
	}
}

func TestBuildSkipsUnchangedAndRebuildsOnChange(t *testing.T) {
	f := newFixture(t)
	if _, err := Build(context.Background(), f.options("xen")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), f.options("xen")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls(t)); n != 3 {
		t.Fatalf("unchanged inputs ran %d commands, want the first build's 3 only", n)
	}
	f.stamp(t, "bbbb2222")
	write(t, filepath.Join(f.siteDir, "index.html"), "<h1>v2</h1>\n")
	r, err := Build(context.Background(), f.options("xen"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls(t)); n != 6 {
		t.Errorf("a new site build ran %d commands in all, want 6", n)
	}
	if kernel, _ := os.ReadFile(r.Kernel); string(kernel) != "<h1>v2</h1>\n" {
		t.Errorf("kernel holds %q, want the new site", kernel)
	}
	write(t, filepath.Join(f.mirageDir, "unikernel.ml"), "(* changed *)\n")
	if _, err := Build(context.Background(), f.options("xen")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls(t)); n != 9 {
		t.Errorf("a changed OCaml source ran %d commands in all, want 9", n)
	}
	o := f.options("xen")
	o.Force = true
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls(t)); n != 12 {
		t.Errorf("Force ran %d commands in all, want 12", n)
	}
}

func TestMissingMirageSaysHowToInstallIt(t *testing.T) {
	f := newFixture(t)
	o := f.options("virtio")
	o.Mirage = "mirage-not-installed"
	_, err := Build(context.Background(), o)
	for _, want := range []string{"mirage-not-installed not found on PATH", "opam install", "UNIKERNEL=", "mirage_target: none"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if _, statErr := os.Stat(receipt.Path(f.buildDir, ReceiptName)); !os.IsNotExist(statErr) {
		t.Error("a failed build left a receipt")
	}
}

func TestMissingMakeIsReported(t *testing.T) {
	f := newFixture(t)
	o := f.options("virtio")
	o.Make = "make-not-installed"
	if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "apt-get install make") {
		t.Errorf("error = %v", err)
	}
}

func TestFailedBuildNamesTheCommand(t *testing.T) {
	f := newFixture(t)
	t.Setenv("STANDIN_FAIL_BUILD", "1")
	_, err := Build(context.Background(), f.options("virtio"))
	if err == nil || !strings.Contains(err.Error(), "`make build` failed in "+f.mirageDir) {
		t.Fatalf("error = %v", err)
	}
	if !strings.Contains(f.logs.String(), "package mirage-crypto not found") {
		t.Errorf("the tool's own output did not reach the log:\n%s", f.logs)
	}
	if _, err := ReadReceipt(f.buildDir); err == nil {
		t.Error("a failed build wrote a receipt")
	}
}

func TestNoSiteIsReported(t *testing.T) {
	f := newFixture(t)
	os.Remove(filepath.Join(f.siteDir, "build-id.txt"))
	if _, err := Build(context.Background(), f.options("virtio")); err == nil || !strings.Contains(err.Error(), "run `mage site` first") {
		t.Errorf("error = %v", err)
	}
}

func TestPrebuiltKernelSkipsMirage(t *testing.T) {
	f := newFixture(t)
	kernel := filepath.Join(t.TempDir(), "blog.virtio")
	write(t, kernel, "\x7fELF kernel bytes, the site crunched in: aaaa1111\n")
	o := f.options("virtio")
	o.Prebuilt = kernel
	o.Publish = true
	o.Mirage = "mirage-not-installed" // must not be needed
	r, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Prebuilt || r.Kernel != kernel || r.KernelSHA256 == "" || r.BuildID != "aaaa1111" {
		t.Errorf("receipt = %+v", r)
	}
	if calls := f.calls(t); len(calls) != 0 {
		t.Errorf("mirage ran with UNIKERNEL set: %q", calls)
	}
	if stored, err := ReadReceipt(f.buildDir); err != nil || stored.Kernel != kernel {
		t.Errorf("stored receipt = %+v, %v", stored, err)
	}
}

// The site changed, but UNIKERNEL names a kernel built from another build:
// a deploy would publish the old site while reporting the new build.
func TestPrebuiltKernelWithoutTheSiteStopsADeploy(t *testing.T) {
	f := newFixture(t)
	kernel := filepath.Join(t.TempDir(), "blog.spt")
	write(t, kernel, "\x7fELF a kernel of build 9999ffff\n")
	o := f.options("spt")
	o.Prebuilt = kernel
	o.Publish = true
	_, err := Build(context.Background(), o)
	for _, want := range []string{"UNIKERNEL=" + kernel, "does not carry the site's build aaaa1111", "would not publish", "unset UNIKERNEL", "mirage_target: none"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if _, err := ReadReceipt(f.buildDir); err == nil {
		t.Error("a receipt was written for a kernel a deploy must not use")
	}

	// A local image may use it: the step warns and records no build.
	o.Publish = false
	r, err := Build(context.Background(), o)
	if err != nil || r.BuildID != "" || !strings.Contains(f.logs.String(), "a deploy stops here") {
		t.Errorf("preview: %+v, %v\n%s", r, err, f.logs.String())
	}
}

func TestPrebuiltKernelMustBeAKernelFile(t *testing.T) {
	f := newFixture(t)
	empty := filepath.Join(t.TempDir(), "empty")
	write(t, empty, "")
	cases := map[string]string{
		filepath.Join(t.TempDir(), "missing"): "cannot be used",
		t.TempDir():                           "is not a regular file",
		empty:                                 "is empty",
	}
	for path, want := range cases {
		o := f.options("virtio")
		o.Prebuilt = path
		if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "UNIKERNEL=") {
			t.Errorf("UNIKERNEL=%s: error %v, want %q", path, err, want)
		}
	}
}

func TestReadReceiptBeforeAnyBuild(t *testing.T) {
	if _, err := ReadReceipt(t.TempDir()); err == nil || !strings.Contains(err.Error(), "run `mage unikernel`") {
		t.Errorf("error = %v", err)
	}
}

func TestTargetNoneBuildsNothing(t *testing.T) {
	f := newFixture(t)
	// No mirage on PATH is needed: none never calls it.
	t.Setenv("PATH", t.TempDir())
	r, err := Build(context.Background(), f.options(NoTarget))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kernel != "" || r.Target != NoTarget || r.BuildID != "aaaa1111" {
		t.Errorf("receipt %+v; want no kernel, target none, the site's build id", r)
	}
	if calls := f.calls(t); len(calls) != 0 {
		t.Errorf("mirage or make ran: %v", calls)
	}
	got, err := ReadReceipt(f.buildDir)
	if err != nil || got.Kernel != "" || got.Target != NoTarget {
		t.Errorf("stored receipt %+v, %v", got, err)
	}
	if !strings.Contains(f.logs.String(), "no unikernel") {
		t.Errorf("the log does not say there is no unikernel:\n%s", f.logs.String())
	}
}

// TestCertificateIsCrunchedIn: with https, the Cert step's chain and key
// are in _mirage/tls (owner only) with the names and HSTS max-age before the
// build, the kernel is made owner-only, a renewed certificate rebuilds, and
// https off removes the key again.
func TestCertificateIsCrunchedIn(t *testing.T) {
	f := newFixture(t)
	withTLS := func(sum string) {
		chain, key := filepath.Join(f.buildDir, "cert", "chain.pem"), filepath.Join(f.buildDir, "cert", "key.pem")
		write(t, chain, "CHAIN "+sum+"\n")
		write(t, key, "KEY "+sum+"\n")
		if err := receipt.Write(f.buildDir, cert.ReceiptName, cert.Receipt{BuildID: "aaaa1111", Commit: "c0ffee", HTTPS: true,
			Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 600, ChainFile: chain, KeyFile: key, SHA256: sum}); err != nil {
			t.Fatal(err)
		}
	}
	withTLS("s1")
	r, err := Build(context.Background(), f.options("virtio"))
	if err != nil {
		t.Fatal(err)
	}
	tls := filepath.Join(f.mirageDir, TLSDir)
	for name, want := range map[string]string{"server.pem": "CHAIN s1\n", "server.key": "KEY s1\n", "names": "blog.example.com\nwww.example.com\n", "hsts": "600\n"} {
		got, err := os.ReadFile(filepath.Join(tls, name))
		st, _ := os.Stat(filepath.Join(tls, name))
		if err != nil || string(got) != want || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %q (%v), mode %v; want %q, 0600", name, got, err, st.Mode(), want)
		}
	}
	if st, _ := os.Stat(r.Kernel); st.Mode().Perm() != 0o600 || r.TLS == nil || r.TLS.SHA256 != "s1" {
		t.Errorf("kernel mode %v, receipt TLS %+v", st.Mode(), r.TLS)
	}
	withTLS("s2")
	if _, err := Build(context.Background(), f.options("virtio")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls(t)); n != 6 {
		t.Errorf("a renewed certificate ran %d commands in all, want a rebuild (6)", n)
	}
	f.stamp(t, "aaaa1111") // https off
	if _, err := Build(context.Background(), f.options("virtio")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tls, "server.key")); !os.IsNotExist(err) {
		t.Errorf("https off left the key in %s: %v", tls, err)
	}
}
