package bake

import (
	"os"

	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// blockSize is the EBS direct APIs' block: every PutSnapshotBlock carries
// exactly this much. It is the image digest's block too, so Bake reads the
// blocks the Image step hashed.
const blockSize = sparse.BlockSize

// blocksIn is how many blocks hold size bytes.
func blocksIn(size int64) int64 { return sparse.BlocksIn(size) }

// plan is which blocks may hold data (sparse.DataBlocks), and how that was
// found, for the log.
type plan struct {
	sparse.Blocks
	how string
}

// planBlocks finds the blocks to read. Where the filesystem cannot report
// extents, every block is a candidate: correct, only slower, since zero
// blocks are still skipped after reading.
func planBlocks(f *os.File, size int64) (plan, error) {
	bs, err := sparse.DataBlocks(f, size)
	if err != nil {
		return plan{}, err
	}
	p := plan{Blocks: bs}
	switch {
	case !bs.Supported:
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
var readBlock = sparse.ReadBlock
