package layout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/google/uuid"

	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// SectorSize is the logical sector size of every image: what EBS and QEMU's
// raw disks present.
const SectorSize = 512

// Alignment is where partitions start and end: 1 MiB, as sfdisk and parted
// align, which suits every block size underneath.
const Alignment = 1 << 20

// MaxFilesystem caps a boot filesystem. The kernel needs a few MiB; a FAT
// spanning a larger volume costs memory and time (go-diskfs holds and rewrites
// the whole table) for nothing, so the rest of a larger volume stays unused.
const MaxFilesystem = 4 << 30

// blockSize is the granularity at which Disk skips zero writes: the page and
// filesystem block size, so skipped blocks stay holes in the image file.
const blockSize = 4096

// Disk is an image file being written, of Size bytes that start as zeros.
//
// Writes go through a filter that drops all-zero blocks nobody wrote before:
// they are zero already, and writing them would allocate disk blocks in the
// sparse image (go-diskfs writes both FAT copies whole, mostly zeros, every
// time it allocates clusters). The identifiers a layout needs (GPT GUIDs, FAT
// volume ids, MBR signature) derive from Seed, so they are reproducible.
type Disk struct {
	Size int64
	Seed string

	f       *os.File
	dirty   map[int64]struct{} // blocks that may hold non-zero bytes
	written int64              // bytes passed through to the file
}

// NewDisk wraps f, which must be a fresh file of size zero bytes (Truncate'd,
// never written), to be filled with reproducible identifiers derived from seed.
func NewDisk(f *os.File, size int64, seed string) *Disk {
	return &Disk{Size: size, Seed: seed, f: f, dirty: map[int64]struct{}{}}
}

// Written is how many bytes reached the file: the data, without the zero
// blocks that were skipped.
func (d *Disk) Written() int64 { return d.written }

// UUID is a name-based (version 5) UUID for purpose, derived from the seed, so
// the same inputs give the same GPT GUIDs.
func (d *Disk) UUID(purpose string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("unikernel-blog/image/"+d.Seed+"/"+purpose)).String()
}

// ID32 is a 32-bit identifier for purpose (FAT volume id, MBR disk signature),
// derived from the seed.
func (d *Disk) ID32(purpose string) uint32 {
	sum := sha256.Sum256([]byte("unikernel-blog/image/" + d.Seed + "/" + purpose))
	return binary.LittleEndian.Uint32(sum[:4])
}

// ReadAt reads the image.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt writes p at off, skipping all-zero blocks that were never written.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.Size {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d-byte image", len(p), off, d.Size)
	}
	// Walk p block by block, collecting runs that must be written so that a
	// large contiguous write stays one system call.
	runStart, runEnd := -1, -1
	flush := func() error {
		if runStart < 0 {
			return nil
		}
		n, err := d.f.WriteAt(p[runStart:runEnd], off+int64(runStart))
		d.written += int64(n)
		runStart, runEnd = -1, -1
		return err
	}
	for i := 0; i < len(p); {
		pos := off + int64(i)
		block := pos / blockSize
		end := min(len(p), i+int(blockSize-pos%blockSize))
		seg := p[i:end]
		_, isDirty := d.dirty[block]
		if !isDirty && sparse.IsZero(seg) {
			if err := flush(); err != nil {
				return 0, err
			}
		} else {
			d.dirty[block] = struct{}{}
			if runStart < 0 {
				runStart = i
			}
			runEnd = end
		}
		i = end
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Storage is the disk as a go-diskfs backend.
func (d *Disk) Storage() backend.Storage { return storage{d} }

// storage adapts Disk to go-diskfs's backend.Storage. It deliberately has no
// Sync method: go-diskfs fsyncs after every partition-table write when it can,
// which only slows a temporary file the Image step syncs once at the end.
type storage struct{ d *Disk }

var _ backend.Storage = storage{}

func (s storage) Stat() (fs.FileInfo, error)                     { return s.d.f.Stat() }
func (s storage) Read(p []byte) (int, error)                     { return s.d.f.Read(p) }
func (s storage) Close() error                                   { return nil } // the Image step owns the file
func (s storage) ReadAt(p []byte, off int64) (int, error)        { return s.d.f.ReadAt(p, off) }
func (s storage) Seek(off int64, whence int) (int64, error)      { return s.d.f.Seek(off, whence) }
func (s storage) Sys() (*os.File, error)                         { return nil, backend.ErrNotSuitable }
func (s storage) Writable() (backend.WritableFile, error)        { return s, nil }
func (s storage) Path() string                                   { return s.d.f.Name() }
func (s storage) WriteAt(p []byte, off int64) (n int, err error) { return s.d.WriteAt(p, off) }

var _ io.WriterAt = storage{}
