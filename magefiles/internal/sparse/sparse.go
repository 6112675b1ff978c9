// Package sparse reads disk images the way they are stored: as sparse files
// whose holes are zeros by definition. The Image step hashes images with it
// and Bake plans its uploads with it, so neither ever reads a hole.
package sparse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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

// Hash returns the hex SHA-256 of f's first size bytes and how many of them
// lie in data extents. Holes are hashed as zeros without being read.
func Hash(f *os.File, size int64) (sum string, dataBytes int64, err error) {
	extents, _, err := DataExtents(f, size)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	pos := int64(0)
	for _, e := range extents {
		writeZeros(h, e.Off-pos)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, e.Off, e.Len), buf); err != nil {
			return "", 0, fmt.Errorf("reading %s to hash it: %w", f.Name(), err)
		}
		dataBytes += e.Len
		pos = e.End()
	}
	writeZeros(h, size-pos)
	return hex.EncodeToString(h.Sum(nil)), dataBytes, nil
}

// zeros is compared and hashed against; bytes.Equal on it is vectorised.
var zeros = make([]byte, 1<<20)

func writeZeros(w io.Writer, n int64) {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		w.Write(zeros[:k])
		n -= k
	}
}

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
