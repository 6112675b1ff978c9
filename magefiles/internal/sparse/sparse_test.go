package sparse

import (
	"crypto/sha256"
	"encoding/hex"
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

func TestHashMatchesReadingEverything(t *testing.T) {
	const size = 64 << 20
	f, whole := sparseFile(t, size, map[int64][]byte{
		0:          []byte("boot sector"),
		20 << 20:   make([]byte, 3<<20), // written zeros are data too
		40<<20 + 7: []byte("unaligned"),
		size - 3:   []byte("end"),
	})
	want := sha256.Sum256(whole)
	sum, data, err := Hash(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if sum != hex.EncodeToString(want[:]) {
		t.Errorf("sum %s, want %x", sum, want)
	}
	if data < 3<<20 || data >= size/2 {
		t.Errorf("data bytes %d: holes were counted as data, or data missed", data)
	}
}

func TestWithoutSeekDataEverythingIsData(t *testing.T) {
	f, whole := sparseFile(t, 4<<20, map[int64][]byte{1 << 20: []byte("x")})
	Seek = func(int, int64, int) (int64, error) { return 0, unix.EINVAL }
	t.Cleanup(func() { Seek = unix.Seek })
	ext, supported, err := DataExtents(f, 4<<20)
	if err != nil || supported || len(ext) != 1 || ext[0] != (Extent{0, 4 << 20}) {
		t.Fatalf("extents %v supported %v err %v", ext, supported, err)
	}
	want := sha256.Sum256(whole)
	if sum, data, _ := Hash(f, 4<<20); sum != hex.EncodeToString(want[:]) || data != 4<<20 {
		t.Errorf("fallback hash %s data %d", sum, data)
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
