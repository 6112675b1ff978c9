package bake

import (
	"bytes"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
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

// seek is unix.Seek, a variable so tests can take SEEK_DATA away.
var seek = unix.Seek

// planBlocks asks the filesystem where the data is (SEEK_DATA/SEEK_HOLE).
// Where that is unsupported, every block is a candidate: correct, only slower,
// since zero blocks are still skipped after reading.
func planBlocks(f *os.File, size int64) (plan, error) {
	fd := int(f.Fd())
	var p plan
	for off := int64(0); off < size; {
		start, err := seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data from off to the end
		}
		var end int64
		if err == nil {
			end, err = seek(fd, start, unix.SEEK_HOLE)
		}
		if err != nil {
			if unsupported(err) {
				return readAll(size), nil
			}
			return plan{}, err
		}
		end = min(end, size)
		first, last := start/blockSize, (end-1)/blockSize
		if n := len(p.spans); n > 0 && p.spans[n-1].last >= first {
			// the previous extent ended inside this block
			first = p.spans[n-1].last + 1
		}
		if first <= last {
			if n := len(p.spans); n > 0 && p.spans[n-1].last+1 == first {
				p.spans[n-1].last = last
			} else {
				p.spans = append(p.spans, span{first, last})
			}
			p.blocks += last - first + 1
		}
		off = end
	}
	p.how = "extents from SEEK_DATA/SEEK_HOLE"
	// Reset the offset the seeks moved; reads use ReadAt, but be tidy.
	_, _ = f.Seek(0, io.SeekStart)
	return p, nil
}

func readAll(size int64) plan {
	n := blocksIn(size)
	if n == 0 {
		return plan{how: "empty image"}
	}
	return plan{spans: []span{{0, n - 1}}, blocks: n, how: "SEEK_DATA unsupported here: reading every block"}
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
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
	return isZero(buf), nil
}

// zeroBlock is compared against with bytes.Equal, which is vectorised.
var zeroBlock [blockSize]byte

// isZero reports whether b (at most blockSize long) holds only zero bytes.
func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
