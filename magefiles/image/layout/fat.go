package layout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// ErrNoSpace says the files do not fit the filesystem; the Image step turns it
// into advice on image_size.
var ErrNoSpace = errors.New("no space left in the boot filesystem")

// Every timestamp on a FAT filesystem we write is the FAT epoch, 1980-01-01
// 00:00:00, so the bytes do not depend on when they were written.
const (
	fatFixedDate = 1<<5 | 1 // (year-1980)<<9 | month<<5 | day
	fatFixedTime = 0        // hour<<11 | minute<<5 | second/2
)

// writeChunk is how much of a file goes to go-diskfs per Write. Each Write
// re-reads the file's cluster chain and rewrites both FAT copies whole, so
// small writes (io.Copy's 32 KiB) make a 20 MiB kernel cost hundreds of FAT
// rewrites; 4 MiB keeps that to a handful while bounding memory.
const writeChunk = 4 << 20

// FAT is a FAT32 filesystem being filled on a Disk.
//
// go-diskfs writes the structure; FAT adds what a reproducible boot disk needs:
// a capacity check (go-diskfs would allocate clusters past the end of the
// filesystem), whole-chunk writes, and Finish, which fixes the timestamps and
// volume id go-diskfs takes from the clock.
type FAT struct {
	d           *Disk
	fs          *fat32.FileSystem
	span        Span
	clusterSize int64
	clusters    int64 // data clusters in the filesystem
	used        int64 // data clusters allocated so far
	dirs        map[string]bool
	buf         []byte
}

// NewFAT32 makes a FAT32 filesystem labelled label over span.
func NewFAT32(d *Disk, span Span, label string) (*FAT, error) {
	if span.Start%SectorSize != 0 || span.Size%SectorSize != 0 || span.Start < 0 || span.Size <= 0 || span.End() > d.Size {
		return nil, fmt.Errorf("FAT32: span %+v is not whole sectors inside the %d-byte disk", span, d.Size)
	}
	// reproducible=true only zeroes the volume id; Finish sets a derived one.
	fs, err := fat32.Create(d.Storage(), span.Size, span.Start, SectorSize, label, true)
	if err != nil {
		return nil, fmt.Errorf("creating a FAT32 filesystem of %d bytes at %d: %w", span.Size, span.Start, err)
	}
	f := &FAT{d: d, fs: fs, span: span, used: 1 /* the root directory */, dirs: map[string]bool{"/": true}}
	g, err := f.fixBootSector()
	if err != nil {
		return nil, err
	}
	f.clusterSize, f.clusters = g.clusterSize(), g.dataClusters()
	return f, nil
}

// fixBootSector corrects what go-diskfs writes in the boot sector and its
// backup, and returns the corrected geometry:
//
//   - total sectors (byte 32): go-diskfs sizes the FAT without its two
//     reserved entries, so for some sizes (64 MiB, say) the data area has a
//     cluster or two more than the FAT can address, which fsck.fat rejects.
//     The filesystem shrinks to what its FAT addresses, leaving those
//     sectors unused.
//   - hidden sectors (byte 28): the sectors before the filesystem, which
//     mkfs.fat sets to the partition's start and go-diskfs to 0.
//   - volume id (byte 67): go-diskfs uses the clock, or 0 when asked to be
//     reproducible; mkfs.fat a random number; ours derives from the seed.
//
// Finish calls it again in case go-diskfs rewrote the boot sector.
func (f *FAT) fixBootSector() (geometry, error) {
	g, err := readGeometry(f.d, f.span.Start)
	if err != nil {
		return geometry{}, err
	}
	bps := int64(g.bytesPerSector)
	if inTable := int64(g.sectorsPerFAT)*bps/4 - 2; g.clustersInData() > inTable {
		g.totalSectors = uint32(g.dataStart()/bps + inTable*int64(g.sectorsPerCluster))
	}
	var total, hidden, id [4]byte
	binary.LittleEndian.PutUint32(total[:], g.totalSectors)
	binary.LittleEndian.PutUint32(hidden[:], uint32(f.span.Start/bps))
	binary.LittleEndian.PutUint32(id[:], f.d.ID32(fmt.Sprintf("fat/volume-id/%d", f.span.Start)))
	for _, sector := range []int64{0, int64(g.backupBootSector)} {
		at := f.span.Start + sector*bps
		for _, field := range []struct {
			off int64
			b   []byte
		}{{28, hidden[:]}, {32, total[:]}, {67, id[:]}} {
			if _, err := f.d.WriteAt(field.b, at+field.off); err != nil {
				return geometry{}, fmt.Errorf("writing the FAT32 boot sector: %w", err)
			}
		}
	}
	return g, nil
}

// Free is how many bytes of whole clusters are still unallocated.
func (f *FAT) Free() int64 { return (f.clusters - f.used) * f.clusterSize }

// Mkdir makes the directory p and its parents.
func (f *FAT) Mkdir(p string) error {
	p = path.Clean("/" + p)
	var added int64
	for q := p; !f.dirs[q]; q = path.Dir(q) {
		added++
	}
	if f.used+added > f.clusters {
		return fmt.Errorf("%w: directory %s", ErrNoSpace, p)
	}
	if err := f.fs.Mkdir(p); err != nil {
		return fmt.Errorf("making directory %s: %w", p, err)
	}
	for q := p; !f.dirs[q]; q = path.Dir(q) {
		f.dirs[q] = true
	}
	f.used += added
	return nil
}

// WriteFile creates p (its directory must exist) with the content of r.
func (f *FAT) WriteFile(p string, r io.Reader) (int64, error) {
	p = path.Clean("/" + p)
	if !f.dirs[path.Dir(p)] {
		return 0, fmt.Errorf("writing %s: make its directory first", p)
	}
	if f.used+1 > f.clusters {
		return 0, fmt.Errorf("%w: %s", ErrNoSpace, p)
	}
	file, err := f.fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", p, err)
	}
	defer file.Close()
	f.used++ // go-diskfs gives a new file its first cluster at once
	held := int64(1)
	if f.buf == nil {
		f.buf = make([]byte, writeChunk)
	}
	var size int64
	for {
		n, rerr := io.ReadFull(r, f.buf)
		if n > 0 {
			need := max(1, (size+int64(n)+f.clusterSize-1)/f.clusterSize)
			if f.used+need-held > f.clusters {
				return size, fmt.Errorf("%w: %s needs %d bytes more than the %d free", ErrNoSpace, p,
					(f.used+need-held-f.clusters)*f.clusterSize, f.Free())
			}
			if _, err := file.Write(f.buf[:n]); err != nil {
				return size, fmt.Errorf("writing %s: %w", p, err)
			}
			f.used += need - held
			held = need
			size += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return size, nil
		}
		if rerr != nil {
			return size, fmt.Errorf("reading the content of %s: %w", p, rerr)
		}
	}
}

// Finish completes the filesystem once every file is written. It makes the
// bytes reproducible: every directory entry gets the fixed FAT-epoch
// timestamps (go-diskfs stamps entries with the current time, or with
// SOURCE_DATE_EPOCH, a process-wide setting we leave alone), and the boot
// sector its seed-derived volume id (see fixBootSector). It also fills in
// the FSInfo free count and corrects ".." entries (see writeFSInfo, stampDir).
func (f *FAT) Finish() error {
	g, err := f.fixBootSector()
	if err != nil {
		return err
	}
	fat := make([]byte, int64(g.sectorsPerFAT)*int64(g.bytesPerSector))
	if _, err := f.d.ReadAt(fat, f.span.Start+g.fatStart()); err != nil {
		return fmt.Errorf("reading the FAT: %w", err)
	}
	if err := f.writeFSInfo(g, fat); err != nil {
		return err
	}
	return f.stampDir(g, fat, g.rootCluster, g.rootCluster, 0)
}

// writeFSInfo records the free cluster count and the next free cluster in the
// FSInfo sector and its backup, where go-diskfs leaves "unknown"; fsck.fat
// reports that, and some readers rescan the whole FAT for it.
func (f *FAT) writeFSInfo(g geometry, fat []byte) error {
	var free, next uint32
	for c := uint32(2); int64(c) < g.dataClusters()+2; c++ {
		if binary.LittleEndian.Uint32(fat[c*4:])&0x0FFFFFFF == 0 {
			if free == 0 {
				next = c
			}
			free++
		}
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], free)
	binary.LittleEndian.PutUint32(b[4:], next)
	for _, sector := range []int64{int64(g.fsInfoSector), int64(g.backupBootSector) + int64(g.fsInfoSector)} {
		// The free count and next-free hint are at bytes 488 and 492.
		if _, err := f.d.WriteAt(b[:], f.span.Start+sector*int64(g.bytesPerSector)+488); err != nil {
			return fmt.Errorf("writing the FAT32 FSInfo sector: %w", err)
		}
	}
	return nil
}

// stampDir sets the fixed timestamps on every entry of the directory starting
// at cluster, and of its subdirectories. It also corrects the ".." entry of
// directories in the root: go-diskfs points it at the root's cluster, where
// the FAT specification (and fsck.fat) want 0.
func (f *FAT) stampDir(g geometry, fat []byte, cluster, parent uint32, depth int) error {
	self := cluster
	if depth > 32 {
		return errors.New("FAT directories nest deeper than 32; the filesystem is damaged")
	}
	buf := make([]byte, g.clusterSize())
	for steps := int64(0); cluster >= 2 && cluster < 0x0FFFFFF8; steps++ {
		if steps > g.dataClusters() || int(cluster)*4+4 > len(fat) {
			return fmt.Errorf("FAT cluster chain through %d loops or leaves the table; the filesystem is damaged", cluster)
		}
		off := f.span.Start + g.clusterOffset(cluster)
		if _, err := f.d.ReadAt(buf, off); err != nil {
			return fmt.Errorf("reading directory cluster %d: %w", cluster, err)
		}
		var subdirs []uint32
		end := false
		for i := 0; i+32 <= len(buf); i += 32 {
			e := buf[i : i+32]
			if e[0] == 0x00 {
				end = true
				break
			}
			if e[0] == 0xE5 || e[11]&0x3F == 0x0F { // deleted, or a long-name slot
				continue
			}
			e[13] = 0
			binary.LittleEndian.PutUint16(e[14:], fatFixedTime)
			binary.LittleEndian.PutUint16(e[16:], fatFixedDate)
			binary.LittleEndian.PutUint16(e[18:], fatFixedDate)
			binary.LittleEndian.PutUint16(e[22:], fatFixedTime)
			binary.LittleEndian.PutUint16(e[24:], fatFixedDate)
			if string(e[0:11]) == "..         " && parent == g.rootCluster {
				binary.LittleEndian.PutUint16(e[20:], 0)
				binary.LittleEndian.PutUint16(e[26:], 0)
			}
			if e[11]&0x10 != 0 && e[0] != '.' {
				subdirs = append(subdirs, uint32(binary.LittleEndian.Uint16(e[20:]))<<16|uint32(binary.LittleEndian.Uint16(e[26:])))
			}
		}
		if _, err := f.d.WriteAt(buf, off); err != nil {
			return fmt.Errorf("writing directory cluster %d: %w", cluster, err)
		}
		for _, sub := range subdirs {
			if err := f.stampDir(g, fat, sub, self, depth+1); err != nil {
				return err
			}
		}
		if end {
			return nil
		}
		cluster = binary.LittleEndian.Uint32(fat[cluster*4:]) & 0x0FFFFFFF
	}
	return nil
}

// geometry is the part of a FAT32 boot sector that locates things.
type geometry struct {
	bytesPerSector    uint16
	sectorsPerCluster uint8
	reservedSectors   uint16
	fatCount          uint8
	totalSectors      uint32
	sectorsPerFAT     uint32
	rootCluster       uint32
	fsInfoSector      uint16
	backupBootSector  uint16
}

func readGeometry(d *Disk, start int64) (geometry, error) {
	b := make([]byte, SectorSize)
	if _, err := d.ReadAt(b, start); err != nil {
		return geometry{}, fmt.Errorf("reading the FAT32 boot sector: %w", err)
	}
	g := geometry{
		bytesPerSector:    binary.LittleEndian.Uint16(b[11:]),
		sectorsPerCluster: b[13],
		reservedSectors:   binary.LittleEndian.Uint16(b[14:]),
		fatCount:          b[16],
		totalSectors:      binary.LittleEndian.Uint32(b[32:]),
		sectorsPerFAT:     binary.LittleEndian.Uint32(b[36:]),
		rootCluster:       binary.LittleEndian.Uint32(b[44:]),
		fsInfoSector:      binary.LittleEndian.Uint16(b[48:]),
		backupBootSector:  binary.LittleEndian.Uint16(b[50:]),
	}
	if g.bytesPerSector == 0 || g.sectorsPerCluster == 0 || g.fatCount == 0 || !strings.HasPrefix(string(b[82:90]), "FAT32") {
		return geometry{}, fmt.Errorf("the boot sector at %d is not FAT32", start)
	}
	return g, nil
}

func (g geometry) clusterSize() int64 { return int64(g.bytesPerSector) * int64(g.sectorsPerCluster) }
func (g geometry) fatStart() int64    { return int64(g.reservedSectors) * int64(g.bytesPerSector) }
func (g geometry) dataStart() int64 {
	return g.fatStart() + int64(g.fatCount)*int64(g.sectorsPerFAT)*int64(g.bytesPerSector)
}
func (g geometry) clustersInData() int64 {
	return (int64(g.totalSectors)*int64(g.bytesPerSector) - g.dataStart()) / g.clusterSize()
}

// dataClusters is how many clusters can hold data: those in the data area
// that the FAT has entries for (entries 0 and 1 are reserved).
func (g geometry) dataClusters() int64 {
	return min(g.clustersInData(), int64(g.sectorsPerFAT)*int64(g.bytesPerSector)/4-2)
}
func (g geometry) clusterOffset(c uint32) int64 {
	return g.dataStart() + int64(c-2)*g.clusterSize()
}
