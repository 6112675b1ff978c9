package initramfs_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/image/layout/host/initramfs"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

func sample(t *testing.T) *initramfs.Archive {
	t.Helper()
	a := initramfs.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Added out of order, parents implied: the archive sorts and fills in.
	must(a.File("srv/site/about/index.html", []byte("<p>about</p>\n"), 0o644))
	must(a.File("/init", []byte("#!init\n"), 0o755))
	must(a.CharDev("dev/console", 0o600, 5, 1))
	must(a.Dir("proc", 0o755))
	must(a.Symlink("bin/sh", "/init"))
	must(a.File("srv/site/index.html", []byte("<p>home</p>\n"), 0o644))
	must(a.File("srv/site-old/x", nil, 0o644)) // sorts between site and site/…
	return a
}

// TestListedByCpio reads the archive back with GNU cpio, which knows nothing
// of this code: names, order, types, modes, owners, times, device numbers.
func TestListedByCpio(t *testing.T) {
	cpioTool := testtool.Need(t, "cpio", "cpio")
	var raw bytes.Buffer
	if err := sample(t).WriteCPIO(&raw); err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) string {
		cmd := exec.Command(cpioTool, append([]string{"--quiet", "-i", "-t", "-n", "-H", "newc"}, args...)...)
		cmd.Stdin = bytes.NewReader(raw.Bytes())
		cmd.Env = append(cmd.Environ(), "TZ=UTC", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cpio -t: %v\n%s", err, out)
		}
		return string(out)
	}
	names := strings.Fields(list())
	want := []string{"bin", "bin/sh", "dev", "dev/console", "init", "proc", "srv", "srv/site", "srv/site-old", "srv/site-old/x", "srv/site/about", "srv/site/about/index.html", "srv/site/index.html"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -t lists\n%v\nwant\n%v", names, want)
	}
	// Every parent precedes its children, so the kernel can create them.
	seen := map[string]bool{}
	for _, n := range names {
		if i := strings.LastIndex(n, "/"); i > 0 && !seen[n[:i]] {
			t.Errorf("%s comes before its directory %s", n, n[:i])
		}
		seen[n] = true
	}
	long := list("-v")
	for _, line := range []string{
		"drwxr-xr-x   2 0        0               0 Jan  1  2000 bin",
		"lrwxrwxrwx   1 0        0               5 Jan  1  2000 bin/sh -> /init",
		"crw-------   1 0        0          5,   1 Jan  1  2000 dev/console",
		"-rwxr-xr-x   1 0        0               7 Jan  1  2000 init",
		"-rw-r--r--   1 0        0              13 Jan  1  2000 srv/site/about/index.html",
	} {
		if !strings.Contains(long, line+"\n") {
			t.Errorf("cpio -tv lacks the line\n%s\nin\n%s", line, long)
		}
	}
}

func TestGzipIsDeterministic(t *testing.T) {
	a, err := sample(t).Gzip()
	if err != nil {
		t.Fatal(err)
	}
	b, err := sample(t).Gzip()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same files differ")
	}
	// Writing the same archive twice gives the same bytes too.
	s := sample(t)
	c, _ := s.Gzip()
	d, _ := s.Gzip()
	if !bytes.Equal(c, d) || !bytes.Equal(a, c) {
		t.Fatal("writing an archive twice gives different bytes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q time %v", zr.Name, zr.ModTime)
	}
	raw, _ := io.ReadAll(zr)
	if !bytes.HasPrefix(raw, []byte("070701")) || !bytes.Contains(raw, []byte("TRAILER!!!")) {
		t.Error("not a newc archive with a trailer")
	}
}

func TestBadNames(t *testing.T) {
	a := initramfs.New()
	if err := a.File("/", nil, 0o644); err == nil {
		t.Error("the root as a file name should fail")
	}
	if err := a.File("x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.File("./x", nil, 0o644); err == nil {
		t.Error("the same file twice should fail")
	}
	if err := a.Dir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.Dir("d/", 0o755); err != nil {
		t.Errorf("a directory named twice is fine: %v", err)
	}
	if got := a.Names(); strings.Join(got, ",") != "d,x" {
		t.Errorf("names %v", got)
	}
}
