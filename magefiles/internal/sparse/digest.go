package sparse

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
)

// The image digest is a disk image's content address: the Image step records
// it, Bake tags the AMI with it and reuses an AMI that has it. Version 1, for
// an image of size bytes cut into 512 KiB blocks (the last zero-padded):
//
//	digest = SHA-256( "blog image digest v1\n" ‖ uint64be(size) ‖
//	                  for every block i that is not all zeros, i ascending:
//	                  uint64be(i) ‖ SHA-256(block i) )
//
// written as 64 lower-case hex digits.
//
//   - It covers the logical bytes only. An all-zero block adds nothing,
//     whether the filesystem keeps it as a hole or as written zeros, so the
//     same bytes give the same digest on any filesystem and after any copy.
//   - It reads only the blocks SEEK_DATA/SEEK_HOLE report as data: a 1 GiB
//     image holding 20 MiB costs reading and hashing about 20 MiB.
//   - It is as collision-resistant as SHA-256: the encoding is injective (the
//     size first, then fixed-width entries in strictly ascending order), so two
//     images with one digest have the same size and the same non-zero blocks,
//     unless SHA-256 itself collides.
//   - The SHA-256 of a block is the checksum Bake sends with it to EBS.
const digestDomain = "blog image digest v1\n"

// DigestHexLen is the length of a digest as text.
const DigestHexLen = 2 * sha256.Size

// Digest is an image's content address and what computing it found.
type Digest struct {
	Hex         string // the digest, 64 hex digits
	ExtentBytes int64  // bytes in the file's data extents (read to compute it)
	DataBlocks  int64  // blocks that are not all zeros
}

// Digester folds blocks into a digest; blocks must come in ascending order.
type Digester struct {
	h    hash.Hash
	last int64
	n    int64
}

// NewDigester starts the digest of an image of size bytes.
func NewDigester(size int64) *Digester {
	d := &Digester{h: sha256.New(), last: -1}
	d.h.Write([]byte(digestDomain))
	d.h.Write(binary.BigEndian.AppendUint64(nil, uint64(size)))
	return d
}

// Add folds in non-zero block idx by its SHA-256.
func (d *Digester) Add(idx int64, sum [sha256.Size]byte) error {
	if idx <= d.last {
		return fmt.Errorf("image digest: block %d after block %d; blocks must be added in ascending order", idx, d.last)
	}
	var entry [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(entry[:8], uint64(idx))
	copy(entry[8:], sum[:])
	d.h.Write(entry[:])
	d.last, d.n = idx, d.n+1
	return nil
}

// Hex is the digest of the blocks added so far.
func (d *Digester) Hex() string { return hex.EncodeToString(d.h.Sum(nil)) }

// DigestFile computes the digest of f's first size bytes, reading only the
// blocks in its data extents.
func DigestFile(f *os.File, size int64) (Digest, error) {
	bs, err := DataBlocks(f, size)
	if err != nil {
		return Digest{}, err
	}
	d := NewDigester(size)
	buf := make([]byte, BlockSize)
	for _, s := range bs.Spans {
		for i := s.First; i <= s.Last; i++ {
			zero, err := ReadBlock(f, size, i, buf)
			if err != nil {
				return Digest{}, err
			}
			if zero {
				continue
			}
			if err := d.Add(i, sha256.Sum256(buf)); err != nil {
				return Digest{}, err
			}
		}
	}
	return Digest{Hex: d.Hex(), ExtentBytes: bs.ExtentBytes, DataBlocks: d.n}, nil
}

// DigestPath is DigestFile for the file at path.
func DigestPath(path string, size int64) (Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, err
	}
	defer f.Close()
	return DigestFile(f, size)
}
