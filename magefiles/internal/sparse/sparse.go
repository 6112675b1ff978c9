// Package sparse reads disk images the way they are stored: as sparse files
// whose holes are zeros by definition. It splits an image into 512 KiB
// blocks, finds those that may hold data with SEEK_DATA/SEEK_HOLE, and
// computes the image's content digest over them (digest.go). The Image step
// names images by that digest and Bake uploads the same blocks, so neither
// ever reads a hole.
package sparse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Extent is a run of bytes that may hold data.
type Extent struct{ Off, Len int64 }

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// Seek is unix.Seek, a variable so tests can take SEEK_DATA away.
var Seek = unix.Seek

// DataExtents reports where f holds data within [0, size), as SEEK_DATA and
// SEEK_HOLE tell it (whole filesystem blocks, so a little more than the bytes
// written). Where the filesystem cannot tell, it returns one extent covering
// everything and supported false: correct, only slower.
func DataExtents(f *os.File, size int64) (extents []Extent, supported bool, err error) {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data from off to the end
		}
		var end int64
		if err == nil {
			end, err = Seek(fd, start, unix.SEEK_HOLE)
		}
		if err != nil {
			if unsupported(err) {
				return everything(size), false, nil
			}
			return nil, false, fmt.Errorf("finding the data in %s: %w", f.Name(), err)
		}
		if start >= size {
			break
		}
		end = min(end, size)
		extents = append(extents, Extent{start, end - start})
		off = end
	}
	return extents, true, nil
}

func everything(size int64) []Extent {
	if size == 0 {
		return nil
	}
	return []Extent{{0, size}}
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

// zeros is compared against; bytes.Equal on it is vectorised.
var zeros = make([]byte, 1<<20)

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeros))
		if !bytes.Equal(b[:k], zeros[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// BlockSize is the unit of the digest and of Bake's upload: the EBS direct
// APIs' block, so the SHA-256 of a block is the checksum PutSnapshotBlock
// carries.
const BlockSize = 512 << 10

// BlocksIn is how many blocks hold size bytes (the last may be partial).
func BlocksIn(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// Span is a run of block indexes [First, Last].
type Span struct{ First, Last int64 }

// Blocks are the blocks of a file that may hold data: those overlapping its
// data extents. Blocks in holes are zero by definition and never read.
type Blocks struct {
	Spans []Span
	Count int64 // blocks in Spans
	// ExtentBytes is how many bytes the data extents hold: what the
	// filesystem allocated, a little more than was written.
	ExtentBytes int64
	// Supported is false when the filesystem cannot report extents: then
	// every block is listed, which is correct, only slower.
	Supported bool
}

// DataBlocks turns f's data extents within [0, size) into the blocks they
// touch, ascending, each once.
func DataBlocks(f *os.File, size int64) (Blocks, error) {
	extents, supported, err := DataExtents(f, size)
	if err != nil {
		return Blocks{}, err
	}
	bs := Blocks{Supported: supported}
	for _, e := range extents {
		bs.ExtentBytes += e.Len
		first, last := e.Off/BlockSize, (e.End()-1)/BlockSize
		if n := len(bs.Spans); n > 0 && bs.Spans[n-1].Last >= first {
			// the previous extent ended inside this block
			first = bs.Spans[n-1].Last + 1
		}
		if first > last {
			continue
		}
		if n := len(bs.Spans); n > 0 && bs.Spans[n-1].Last+1 == first {
			bs.Spans[n-1].Last = last
		} else {
			bs.Spans = append(bs.Spans, Span{first, last})
		}
		bs.Count += last - first + 1
	}
	return bs, nil
}

// ReadBlock reads block idx of a file of size bytes into buf (BlockSize
// long), zero-filling past the end of the file. It reports whether the block
// is all zeros.
func ReadBlock(f *os.File, size, idx int64, buf []byte) (zero bool, err error) {
	off := idx * BlockSize
	n := min(int64(BlockSize), size-off)
	got, err := f.ReadAt(buf[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		return false, fmt.Errorf("reading block %d of %s: %w", idx, f.Name(), err)
	}
	clear(buf[n:BlockSize])
	return IsZero(buf[:BlockSize]), nil
}
