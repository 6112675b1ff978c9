package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// hashImage returns the SHA-256 of all size bytes of the image and how many of
// them lie in allocated data extents, as SEEK_DATA/SEEK_HOLE report them
// (whole filesystem blocks, so slightly more than the bytes written). Holes
// are hashed as zeros without being read. Where the filesystem cannot report
// holes, every byte counts as data.
func hashImage(f *os.File, size int64) (sum string, dataBytes int64, err error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, len(buf))
	hashZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	fd := int(f.Fd())
	for pos := int64(0); pos < size; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data after pos: the rest is a hole
			hashZeros(size - pos)
			break
		}
		if err != nil { // no hole support: read it all
			data = pos
		}
		hole := size
		if err == nil {
			if hole, err = unix.Seek(fd, data, unix.SEEK_HOLE); err != nil {
				hole = size
			}
		}
		hole = min(hole, size)
		hashZeros(data - pos)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, data, hole-data), buf); err != nil {
			return "", 0, fmt.Errorf("reading the image to hash it: %w", err)
		}
		dataBytes += hole - data
		pos = hole
	}
	return hex.EncodeToString(h.Sum(nil)), dataBytes, nil
}
