package grubefi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// GRUB's module area (include/grub/kernel.h): a grub_module_info64 header
// ("mimg", padding, offset and size of the area) followed by modules, each
// a {type, size} header and its payload. Type 1 is the memdisk.
const (
	moduleMagic    = 0x676d696d // "mimg"
	objTypeMemdisk = 1
	tarBlock       = 512
)

// Normalize makes a grub-mkstandalone EFI binary reproducible, in place: in the
// memdisk tar it zeroes every entry's mtime, recomputes the header checksums
// and sorts the entries by name. Sizes and offsets are unchanged, so nothing
// else in the binary moves. It fails, changing nothing, when the binary is not
// laid out as GRUB 2 lays it out.
func Normalize(efi []byte) error {
	tar, err := memdisk(efi)
	if err != nil {
		return err
	}
	return normalizeTar(tar)
}

// memdisk finds the memdisk payload inside the PE section "mods".
func memdisk(b []byte) ([]byte, error) {
	mods, err := peSection(b, "mods")
	if err != nil {
		return nil, err
	}
	if len(mods) < 24 || binary.LittleEndian.Uint32(mods) != moduleMagic {
		return nil, errors.New("the mods section does not start with GRUB's module info")
	}
	offset := binary.LittleEndian.Uint64(mods[8:])
	size := binary.LittleEndian.Uint64(mods[16:])
	if offset < 24 || size > uint64(len(mods)) || offset > size {
		return nil, fmt.Errorf("GRUB module info out of range (offset %d, size %d, section %d)", offset, size, len(mods))
	}
	for p := offset; p+8 <= size; {
		typ := binary.LittleEndian.Uint32(mods[p:])
		n := uint64(binary.LittleEndian.Uint32(mods[p+4:]))
		if n < 8 || p+n > size {
			return nil, fmt.Errorf("GRUB module at %d has a bad size %d", p, n)
		}
		if typ == objTypeMemdisk {
			return mods[p+8 : p+n], nil
		}
		p += n
	}
	return nil, errors.New("no memdisk module: was the binary made by grub-mkstandalone?")
}

// peSection returns the raw bytes of the named section of a PE image.
func peSection(b []byte, name string) ([]byte, error) {
	if len(b) < 0x40 || string(b[:2]) != "MZ" {
		return nil, errors.New("not a PE image (no MZ header)")
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if pe+24 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return nil, errors.New("not a PE image (no PE signature)")
	}
	coff := pe + 4
	sections := int(binary.LittleEndian.Uint16(b[coff+2:]))
	table := coff + 20 + int(binary.LittleEndian.Uint16(b[coff+16:]))
	for i := 0; i < sections; i++ {
		s := table + 40*i
		if s+40 > len(b) {
			break
		}
		if strings.TrimRight(string(b[s:s+8]), "\x00") != name {
			continue
		}
		size := int(binary.LittleEndian.Uint32(b[s+16:]))
		at := int(binary.LittleEndian.Uint32(b[s+20:]))
		if at+size > len(b) {
			return nil, fmt.Errorf("PE section %s runs past the end of the file", name)
		}
		return b[at : at+size], nil
	}
	return nil, fmt.Errorf("no PE section %q", name)
}

// normalizeTar rewrites a ustar archive in place: mtimes zero, checksums
// recomputed, entries sorted by name. A GNU long-name header ('L') stays
// with the entry it names.
func normalizeTar(t []byte) error {
	type entry struct {
		name  string
		bytes []byte
	}
	var entries []entry
	off := 0
	for off+tarBlock <= len(t) && !sparse.IsZero(t[off:off+tarBlock]) {
		start, name := off, ""
		for {
			if off+tarBlock > len(t) {
				return errors.New("memdisk tar ends inside an entry")
			}
			h := t[off : off+tarBlock]
			if string(h[257:262]) != "ustar" {
				return fmt.Errorf("memdisk tar header at %d is not ustar", off)
			}
			size, err := strconv.ParseUint(strings.Trim(string(h[124:136]), "\x00 "), 8, 64)
			if err != nil {
				return fmt.Errorf("memdisk tar header at %d has a bad size: %w", off, err)
			}
			data := off + tarBlock
			off = data + int((size+tarBlock-1)/tarBlock*tarBlock)
			if off > len(t) {
				return errors.New("memdisk tar entry runs past the end")
			}
			if h[156] == 'L' {
				name = string(bytes.TrimRight(t[data:data+int(size)], "\x00"))
				continue // the entry it names follows
			}
			if name == "" {
				name = cstring(h[0:100])
				if prefix := cstring(h[345:500]); prefix != "" {
					name = prefix + "/" + name
				}
			}
			break
		}
		entries = append(entries, entry{name: name, bytes: bytes.Clone(t[start:off])})
	}
	for _, e := range entries {
		// Headers are every block not inside an entry's data: walk again.
		for p := 0; p < len(e.bytes); {
			h := e.bytes[p : p+tarBlock]
			size, _ := strconv.ParseUint(strings.Trim(string(h[124:136]), "\x00 "), 8, 64)
			copy(h[136:148], "00000000000\x00")
			copy(h[148:156], "        ")
			var sum int
			for _, c := range h {
				sum += int(c)
			}
			// GRUB's own format: seven octal digits and a space.
			copy(h[148:156], fmt.Sprintf("%07o ", sum))
			p += tarBlock + int((size+tarBlock-1)/tarBlock*tarBlock)
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	pos := 0
	for _, e := range entries {
		pos += copy(t[pos:], e.bytes)
	}
	return nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
