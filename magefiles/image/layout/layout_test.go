package layout

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func newTestDisk(t *testing.T, size int64, seed string) (*Disk, *os.File) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return NewDisk(f, size, seed), f
}

// Disk.WriteAt must give the same bytes as plain writes, whatever it skips.
func TestDiskWritesMatchPlainWrites(t *testing.T) {
	const size = 1 << 20
	d, f := newTestDisk(t, size, "s")
	model := make([]byte, size)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		off := rng.Int63n(size)
		n := rng.Intn(3*blockSize) + 1
		if off+int64(n) > size {
			n = int(size - off)
		}
		p := make([]byte, n)
		switch rng.Intn(3) {
		case 0: // zeros: over data they must land, over nothing they may be skipped
		case 1:
			rng.Read(p)
		default: // mostly zero with a few bytes set
			p[rng.Intn(n)] = byte(rng.Intn(255) + 1)
		}
		if _, err := d.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("the disk's bytes differ from plain writes")
	}
	if _, err := d.WriteAt([]byte{1}, size); err == nil {
		t.Error("a write past the end succeeded")
	}
}

func TestDiskSkipsZeroBlocks(t *testing.T) {
	const size = 64 << 20
	d, f := newTestDisk(t, size, "s")
	if _, err := d.WriteAt(make([]byte, 32<<20), 0); err != nil { // like go-diskfs writing an empty FAT
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 3*blockSize)
	if _, err := d.WriteAt(data, 40<<20); err != nil {
		t.Fatal(err)
	}
	if d.Written() != int64(len(data)) {
		t.Errorf("%d bytes reached the file; want only the %d non-zero", d.Written(), len(data))
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("%d bytes allocated; want the zeros left as holes", st.Blocks*512)
	}
}

func TestIdentifiersFollowTheSeed(t *testing.T) {
	a, _ := newTestDisk(t, 1<<20, "seed-a")
	a2, _ := newTestDisk(t, 1<<20, "seed-a")
	b, _ := newTestDisk(t, 1<<20, "seed-b")
	if a.UUID("x") != a2.UUID("x") || a.ID32("x") != a2.ID32("x") {
		t.Error("the same seed gave different identifiers")
	}
	if a.UUID("x") == b.UUID("x") || a.UUID("x") == a.UUID("y") || a.ID32("x") == b.ID32("x") {
		t.Error("different seeds or purposes gave the same identifier")
	}
	if u := a.UUID("x"); len(u) != 36 || u[14] != '5' {
		t.Errorf("UUID %s; want a version 5 (name-based) UUID", u)
	}
}

func TestBootSpan(t *testing.T) {
	s, err := BootSpan(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if s.Start != Alignment || s.End() != (1<<30)-Alignment || s.End()%Alignment != 0 {
		t.Errorf("1 GiB disk: span %+v; want 1 MiB .. 1 GiB-1 MiB, clear of the backup GPT", s)
	}
	if s, _ := BootSpan(64 << 40); s.Size != MaxFilesystem {
		t.Errorf("64 TiB disk: span %+v; want it capped at %d", s, MaxFilesystem)
	}
	if _, err := BootSpan(1 << 20); err == nil {
		t.Error("a 1 MiB disk got a partition")
	}
}

func TestFATCapacity(t *testing.T) {
	const size = 64 << 20
	d, f := newTestDisk(t, size, "s")
	fs, err := NewFAT32(d, Span{Start: 0, Size: size}, "T")
	if err != nil {
		t.Fatal(err)
	}
	free := fs.Free()
	if free < size-2<<20 || free > size {
		t.Fatalf("free %d bytes on a %d-byte FAT32; want nearly all of it", free, size)
	}
	if err := fs.Mkdir("/a/b"); err != nil {
		t.Fatal(err)
	}
	if fs.Free() != free-2*fs.clusterSize {
		t.Errorf("two directories took %d bytes; want two clusters", free-fs.Free())
	}
	// A file that just fits, then one byte more than what is left.
	left := fs.Free()
	if _, err := fs.WriteFile("/a/b/fits", io.LimitReader(zeroReader{}, left-fs.clusterSize)); err != nil {
		t.Fatalf("a file of all but one cluster of the free space: %v", err)
	}
	// Full to the last cluster, the filesystem is still sound.
	if err := fs.Finish(); err != nil {
		t.Fatal(err)
	}
	fsck, err := exec.LookPath("fsck.fat")
	if err != nil {
		fsck = "/usr/sbin/fsck.fat"
	}
	if !fileExists(fsck) {
		t.Log("fsck.fat not found: install the Debian package dosfstools to check the full filesystem")
	} else if out, err := exec.Command(fsck, "-n", "-v", f.Name()).CombinedOutput(); err != nil || strings.Contains(string(out), "Fixing") {
		t.Errorf("fsck.fat -n on the full filesystem: %v\n%s", err, out)
	}
	_, err = fs.WriteFile("/a/over", io.LimitReader(zeroReader{}, fs.clusterSize+1))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("err %v; want ErrNoSpace rather than clusters past the end", err)
	}
	if _, err := fs.WriteFile("/missing/f", strings.NewReader("x")); err == nil {
		t.Error("a file in a directory never made was written")
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
