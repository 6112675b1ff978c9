package bake

import (
	"errors"
	"io"
	"os"

	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// blockSize is the EBS direct APIs' block: every PutSnapshotBlock carries
// exactly this much.
const blockSize = 512 << 10

// blocksIn is how many blocks hold size bytes.
func blocksIn(size int64) int64 { return (size + blockSize - 1) / blockSize }

// span is a run of block indexes [first, last].
type span struct{ first, last int64 }

// plan is which blocks may hold data: those overlapping the file's data
// extents. Blocks in holes are zero by definition and never read.
type plan struct {
	spans  []span
	blocks int64  // blocks in spans
	how    string // how the extents were found, for the log
}

// planBlocks turns the file's data extents into the blocks they touch.
// Where the filesystem cannot report extents, every block is a candidate:
// correct, only slower, since zero blocks are still skipped after reading.
func planBlocks(f *os.File, size int64) (plan, error) {
	extents, supported, err := sparse.DataExtents(f, size)
	if err != nil {
		return plan{}, err
	}
	var p plan
	for _, e := range extents {
		first, last := e.Off/blockSize, (e.End()-1)/blockSize
		if n := len(p.spans); n > 0 && p.spans[n-1].last >= first {
			// the previous extent ended inside this block
			first = p.spans[n-1].last + 1
		}
		if first > last {
			continue
		}
		if n := len(p.spans); n > 0 && p.spans[n-1].last+1 == first {
			p.spans[n-1].last = last
		} else {
			p.spans = append(p.spans, span{first, last})
		}
		p.blocks += last - first + 1
	}
	switch {
	case !supported:
		p.how = "SEEK_DATA unsupported here: reading every block"
	case size == 0:
		p.how = "empty image"
	default:
		p.how = "extents from SEEK_DATA/SEEK_HOLE"
	}
	return p, nil
}

// readBlock reads block idx into buf (blockSize long), zero-filling past the
// end of the file. It reports whether the block is all zeros.
func readBlock(f *os.File, size, idx int64, buf []byte) (zero bool, err error) {
	off := idx * blockSize
	n := min(int64(blockSize), size-off)
	got, err := f.ReadAt(buf[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		return false, err
	}
	clear(buf[n:])
	return sparse.IsZero(buf), nil
}
