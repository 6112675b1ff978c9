package sparse

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// reference is the digest's definition applied to the image's bytes in
// memory, written apart from the code under test: every 512 KiB block,
// zero-padded, that holds a non-zero byte, by index and SHA-256.
func reference(whole []byte) string {
	h := sha256.New()
	h.Write([]byte("blog image digest v1\n"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(whole))))
	for off := 0; off < len(whole); off += 512 << 10 {
		blk := make([]byte, 512<<10)
		copy(blk, whole[off:])
		if slices.ContainsFunc(blk, func(b byte) bool { return b != 0 }) {
			sum := sha256.Sum256(blk)
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(off/(512<<10))))
			h.Write(sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// denseFile writes whole into a new file byte for byte, zeros included, so
// the filesystem allocates all of it.
func denseFile(t *testing.T, whole []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dense")
	if err := os.WriteFile(path, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func digest(t *testing.T, f *os.File, size int64) Digest {
	t.Helper()
	d, err := DigestFile(f, size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDigestFollowsItsDefinition: for an image with data straddling a block
// boundary, written zeros, an unaligned byte and a partial last block, the
// digest is the definition's, computed from the bytes in memory.
func TestDigestFollowsItsDefinition(t *testing.T) {
	const size = 64<<20 + 4096
	f, whole := sparseFile(t, size, map[int64][]byte{
		0:                  []byte("boot sector"),
		512<<10 - 3:        []byte("straddles"),
		20 << 20:           make([]byte, 3<<20), // written zeros: allocated, all-zero blocks
		40<<20 + 7:         []byte("unaligned"),
		size - 3:           []byte("end"),
		size - 512<<10 - 1: {1},
	})
	d := digest(t, f, size)
	if want := reference(whole); d.Hex != want {
		t.Errorf("digest %s; the definition gives %s", d.Hex, want)
	}
	if d.DataBlocks != 5 {
		t.Errorf("%d non-zero blocks; want 5 (0, 1, the one at 40 MiB, the last two)", d.DataBlocks)
	}
	if d.ExtentBytes < 3<<20 || d.ExtentBytes >= size/2 {
		t.Errorf("extent bytes %d: holes were counted as data, or data missed", d.ExtentBytes)
	}
}

// TestDigestIgnoresAllocation: the same bytes as a sparse file, as a file
// written out in full, and with a hole punched where zeros were written,
// give one digest.
func TestDigestIgnoresAllocation(t *testing.T) {
	const size = 16 << 20
	sparseF, whole := sparseFile(t, size, map[int64][]byte{
		1 << 20: []byte("kernel"),
		3 << 20: make([]byte, 2<<20), // zeros written into the sparse file
		9 << 20: []byte("initrd"),
	})
	dense := denseFile(t, whole)
	a, b := digest(t, sparseF, size), digest(t, dense, size)
	if a.Hex != b.Hex || a.DataBlocks != b.DataBlocks {
		t.Fatalf("sparse %+v and dense %+v copies of the same bytes differ", a, b)
	}
	if b.ExtentBytes != size {
		t.Logf("the dense copy has %d bytes in extents of %d (this filesystem dedupes zeros?)", b.ExtentBytes, size)
	}
	if a.ExtentBytes >= b.ExtentBytes {
		t.Errorf("the sparse copy reads %d bytes, the dense one %d: holes are being read", a.ExtentBytes, b.ExtentBytes)
	}
}

// TestDigestTellsImagesApart: a changed byte, a block moved to another
// index, a longer image of zeros and a byte turned to zero each change it.
func TestDigestTellsImagesApart(t *testing.T) {
	const size = 8 << 20
	base := map[int64][]byte{1 << 20: []byte("data")}
	f, _ := sparseFile(t, size, base)
	want := digest(t, f, size).Hex
	for name, c := range map[string]struct {
		size   int64
		chunks map[int64][]byte
	}{
		"a changed byte":        {size, map[int64][]byte{1 << 20: []byte("date")}},
		"the block moved":       {size, map[int64][]byte{2 << 20: []byte("data")}},
		"moved within a block":  {size, map[int64][]byte{1<<20 + 1: []byte("data")}},
		"more zeros at the end": {size + 512<<10, base},
		"zeros at the end only": {size - 512<<10, base},
		"the data zeroed":       {size, map[int64][]byte{1 << 20: make([]byte, 4)}},
	} {
		g, whole := sparseFile(t, c.size, c.chunks)
		got := digest(t, g, c.size).Hex
		if got == want {
			t.Errorf("%s: same digest as the original", name)
		}
		if got != reference(whole) {
			t.Errorf("%s: digest %s, the definition gives %s", name, got, reference(whole))
		}
	}
}

// TestDigestVersion1 pins the definition: AMIs are tagged with digests, so a
// change here makes every deployed image look new. This value is the
// definition's for this image, and must change only with the version string.
func TestDigestVersion1(t *testing.T) {
	f, whole := sparseFile(t, 2<<20, map[int64][]byte{600 << 10: []byte("blog")})
	const v1 = "8667b332"
	got := digest(t, f, 2<<20).Hex
	if got != reference(whole) || got[:len(v1)] != v1 {
		t.Errorf("digest %s; version 1 gives %s…", got, v1)
	}
}

func TestDigesterWantsAscendingBlocks(t *testing.T) {
	d := NewDigester(4 << 20)
	if err := d.Add(3, [32]byte{}); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []int64{3, 2} {
		if err := d.Add(idx, [32]byte{}); err == nil {
			t.Errorf("block %d after block 3 accepted", idx)
		}
	}
}

func TestDataBlocksFollowExtents(t *testing.T) {
	const size = 64 << 20
	f, _ := sparseFile(t, size, map[int64][]byte{
		512<<10 - 1: {1, 2},          // blocks 0 and 1
		10 << 20:    make([]byte, 3), // block 20
		size - 1:    {9},             // the last block
	})
	bs, err := DataBlocks(f, size)
	if err != nil || !bs.Supported {
		t.Fatal(bs, err)
	}
	var listed []int64
	for _, s := range bs.Spans {
		for i := s.First; i <= s.Last; i++ {
			listed = append(listed, i)
		}
	}
	if int64(len(listed)) != bs.Count || !slices.IsSorted(listed) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Fatalf("blocks %v (count %d): want ascending, each once", listed, bs.Count)
	}
	for _, want := range []int64{0, 1, 20, BlocksIn(size) - 1} {
		if !slices.Contains(listed, want) {
			t.Errorf("block %d holds data but is not listed: %v", want, listed)
		}
	}
	// The filesystem may round extents up to its own blocks, not to the file.
	if bs.Count > 8 {
		t.Errorf("%d blocks listed for 4 with data: holes are being read", bs.Count)
	}
}
