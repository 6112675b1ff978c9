package sparse

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// sparseFile writes chunks at offsets into a file of size bytes.
func sparseFile(t *testing.T, size int64, chunks map[int64][]byte) (*os.File, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	whole := make([]byte, size)
	for off, b := range chunks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		copy(whole[off:], b)
	}
	return f, whole
}

func TestWithoutSeekDataEverythingIsData(t *testing.T) {
	f, whole := sparseFile(t, 4<<20, map[int64][]byte{1 << 20: []byte("x")})
	want, _ := DigestFile(f, 4<<20)
	Seek = func(int, int64, int) (int64, error) { return 0, unix.EINVAL }
	t.Cleanup(func() { Seek = unix.Seek })
	ext, supported, err := DataExtents(f, 4<<20)
	if err != nil || supported || len(ext) != 1 || ext[0] != (Extent{0, 4 << 20}) {
		t.Fatalf("extents %v supported %v err %v", ext, supported, err)
	}
	d, err := DigestFile(f, 4<<20)
	if err != nil || d.Hex != reference(whole) || d.Hex != want.Hex || d.ExtentBytes != 4<<20 || d.DataBlocks != 1 {
		t.Errorf("fallback digest %+v, %v; want %s from every block read", d, err, want.Hex)
	}
}

func TestEmptyAndAllHoleFiles(t *testing.T) {
	f, _ := sparseFile(t, 8<<20, nil)
	ext, supported, err := DataExtents(f, 8<<20)
	if err != nil || !supported || len(ext) != 0 {
		t.Errorf("all-hole file: %v %v %v", ext, supported, err)
	}
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 3<<20)
	if !IsZero(b) || !IsZero(nil) {
		t.Error("zeros not recognised")
	}
	b[len(b)-1] = 1
	if IsZero(b) {
		t.Error("a one past the first MiB was missed")
	}
}
