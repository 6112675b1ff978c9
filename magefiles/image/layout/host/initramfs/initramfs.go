// Package initramfs writes Linux initramfs archives (cpio "newc", gzip),
// deterministically: the same files give the same bytes on any machine at any
// time. Entries are sorted by name, each parent directory precedes its
// children, inode numbers count up from 1 in that order, and every owner is
// root with one fixed mtime. The cpio format itself is u-root's pkg/cpio.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// MTime is every entry's modification time: 2000-01-01 00:00:00 UTC. Any
// fixed value makes the archive reproducible; a date after 1970 keeps tools
// that warn about timestamps at 0 quiet.
const MTime = 946684800

// Archive collects the files of an initramfs.
type Archive struct {
	entries map[string]cpio.Record
}

// New returns an empty archive.
func New() *Archive { return &Archive{entries: map[string]cpio.Record{}} }

// clean makes an archive name: relative, slash-separated, no dot segments.
// The kernel unpacks names relative to the root; a leading "/" would be kept
// literally by some cpio tools.
func clean(name string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" || p == "." {
		return "", fmt.Errorf("initramfs: %q is not a file name", name)
	}
	return p, nil
}

func (a *Archive) add(r cpio.Record) error {
	name, err := clean(r.Name)
	if err != nil {
		return err
	}
	if prev, ok := a.entries[name]; ok {
		// Directories may be named twice (explicitly and as a parent).
		if prev.Mode&cpio.S_IFMT == cpio.S_IFDIR && r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			return nil
		}
		return fmt.Errorf("initramfs: %s added twice", name)
	}
	r.Name = name
	a.entries[name] = r
	// Every parent gets a directory entry: the kernel does not create
	// missing parents when it unpacks an initramfs.
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = cpio.Directory(d, 0o755)
		}
	}
	return nil
}

// File adds a regular file with the given permissions (e.g. 0o755).
func (a *Archive) File(name string, content []byte, perm uint64) error {
	return a.add(cpio.StaticRecord(content, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm&0o7777}))
}

// Dir adds a directory.
func (a *Archive) Dir(name string, perm uint64) error {
	return a.add(cpio.Directory(name, perm&0o7777))
}

// CharDev adds a character device node, e.g. dev/console (5, 1), which the
// kernel opens as init's standard streams before init can mount devtmpfs.
func (a *Archive) CharDev(name string, perm uint64, major, minor uint64) error {
	return a.add(cpio.CharDev(name, perm&0o7777, major, minor))
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(name, target string) error {
	return a.add(cpio.Symlink(name, target))
}

// Names lists the entries in archive order.
func (a *Archive) Names() []string { return slices.Sorted(maps.Keys(a.entries)) }

// WriteCPIO writes the uncompressed newc archive.
func (a *Archive) WriteCPIO(w io.Writer) error {
	cw := cpio.Newc.Writer(w)
	for i, name := range a.Names() {
		r := a.entries[name]
		r.Ino = uint64(i + 1)
		r.UID, r.GID = 0, 0
		r.MTime = MTime
		r.Dev, r.Major, r.Minor = 0, 0, 0
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("initramfs: writing %s: %w", name, err)
		}
	}
	if err := cw.WriteRecord(cpio.TrailerRecord); err != nil {
		return fmt.Errorf("initramfs: writing the trailer: %w", err)
	}
	return nil
}

// WriteGzip writes the archive gzip-compressed, as the kernel's initramfs
// loader reads it (CONFIG_RD_GZIP). The gzip header carries no name and no
// time, so the bytes depend on the content only.
func (a *Archive) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := a.WriteCPIO(zw); err != nil {
		return err
	}
	return zw.Close()
}

// Gzip returns the compressed archive.
func (a *Archive) Gzip() ([]byte, error) {
	var b bytes.Buffer
	if err := a.WriteGzip(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
