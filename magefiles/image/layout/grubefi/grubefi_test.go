package grubefi

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func needGRUB(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(Tool); err != nil {
		testtool.Missing(t, "grub-mkstandalone not found: install the Debian package grub-efi-amd64-bin to run this test")
	}
	if _, err := os.Stat("/usr/lib/grub/" + Format + "/normal.mod"); err != nil {
		testtool.Missing(t, "GRUB's x86_64-efi modules are missing: install the Debian package grub-efi-amd64-bin to run this test")
	}
}

var spec = Spec{Modules: []string{"normal", "echo"}, Config: "echo hello\n"}

// The point of the package: grub-mkstandalone's own output changes from one
// second to the next; ours does not.
func TestBuildIsReproducible(t *testing.T) {
	needGRUB(t)
	ctx := context.Background()
	raw1, err := run(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Build(ctx, spec, "", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // tar mtimes have one-second resolution
	raw2, err := run(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(ctx, spec, "", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(raw1, raw2) {
		t.Log("grub-mkstandalone's raw output did not change across a second; this GRUB may already be reproducible")
	}
	if !bytes.Equal(first, second) {
		t.Fatal("two builds of the same spec differ after normalisation")
	}
	// The normalised memdisk is a valid tar, sorted, with zero mtimes, and
	// still holds the configuration.
	md, err := memdisk(first)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(md))
	prev, sawCfg := "", false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the normalised memdisk is not a valid tar: %v", err)
		}
		if h.Name < prev {
			t.Errorf("entry %s after %s: want sorted names", h.Name, prev)
		}
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s has mtime %v; want 0", h.Name, h.ModTime)
		}
		if h.Name == "boot/grub/grub.cfg" {
			b, _ := io.ReadAll(tr)
			sawCfg = string(b) == spec.Config
		}
		prev = h.Name
	}
	if !sawCfg {
		t.Error("boot/grub/grub.cfg with the configuration is missing from the memdisk")
	}
}

func TestBuildUsesTheCache(t *testing.T) {
	needGRUB(t)
	dir := t.TempDir()
	first, err := Build(context.Background(), spec, dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "grub-*.efi"))
	if len(cached) != 1 {
		t.Fatalf("cache holds %v; want one binary", cached)
	}
	// A planted file proves the second build reads the cache.
	if err := os.WriteFile(cached[0], []byte("from the cache"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Build(context.Background(), spec, dir, quietLog())
	if err != nil || string(again) != "from the cache" {
		t.Fatalf("second build: %q, %v; want the cached bytes", again, err)
	}
	other, err := Build(context.Background(), Spec{Modules: spec.Modules, Config: "echo other\n"}, dir, quietLog())
	if err != nil || bytes.Equal(other, first) || string(other) == "from the cache" {
		t.Fatalf("another configuration must not hit the same cache entry (err %v)", err)
	}
}

func TestBuildNamesTheMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Build(context.Background(), spec, "", quietLog())
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err %v; want ErrNotInstalled", err)
	}
	if _, err := Version(context.Background()); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Version: err %v; want ErrNotInstalled", err)
	}
}

func TestBuildReportsGRUBErrors(t *testing.T) {
	needGRUB(t)
	_, err := Build(context.Background(), Spec{Modules: []string{"no_such_module"}, Config: ""}, "", quietLog())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("grub-efi-amd64-bin")) {
		t.Fatalf("err %v; want GRUB's complaint and the package to check", err)
	}
}

func TestVersionIsPathIndependent(t *testing.T) {
	needGRUB(t)
	v, err := Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(v) < 6 || v[:5] != "GRUB " || bytes.ContainsRune([]byte(v), '/') {
		t.Errorf("version %q; want \"GRUB <version>\" without the program's path", v)
	}
}

func TestNormalizeTar(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	long := "boot/grub/x86_64-efi/" + string(bytes.Repeat([]byte("n"), 120)) + ".mod"
	for i, name := range []string{"b.mod", long, "a.mod"} {
		body := []byte(name)
		h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), ModTime: time.Unix(int64(1e9+i), 0), Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	// GNU headers say "ustar  "; GRUB's say "ustar\x00". Both pass the check.
	b := buf.Bytes()
	if err := normalizeTar(b); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("normalised tar unreadable (bad checksum?): %v", err)
		}
		body, _ := io.ReadAll(tr)
		if string(body) != h.Name {
			t.Errorf("%s holds %q; entries must move with their data", h.Name, body)
		}
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s mtime %v; want 0", h.Name, h.ModTime)
		}
		names = append(names, h.Name)
	}
	if len(names) != 3 || names[0] != "a.mod" || names[1] != "b.mod" || names[2] != long {
		t.Errorf("entries %v; want sorted by name, the long name kept with its entry", names)
	}
	if err := normalizeTar([]byte("not a tar, but long enough to hold one header block of garbage " + string(make([]byte, 512)))); err == nil {
		t.Error("garbage accepted as a tar")
	}
}

func TestNormalizeRejectsOtherBinaries(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("MZ"), append([]byte("MZ"), make([]byte, 200)...)} {
		if err := Normalize(b); err == nil {
			t.Errorf("Normalize accepted %d bytes that are not a GRUB EFI binary", len(b))
		}
	}
}
