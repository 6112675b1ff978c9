package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// DefaultDirs are the directories the loader of a machine type searches
// last. glibc builds them in (SYSTEM_DIRS): Debian and Ubuntu configure the
// multiarch directories then /lib and /usr/lib (`ld.so --help` lists them
// as "system search path"), upstream and Fedora /lib64 and /usr/lib64 for
// 64-bit; both sets are listed, multiarch first, as a file is where one of
// them is.
func DefaultDirs(m elf.Machine) []string {
	var dirs []string
	if triplet, ok := multiarch[m]; ok {
		dirs = append(dirs, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	if m == elf.EM_X86_64 || m == elf.EM_AARCH64 {
		dirs = append(dirs, "/lib64", "/usr/lib64")
	}
	return append(dirs, "/lib", "/usr/lib")
}

// multiarch are Debian's multiarch triplets (dpkg-architecture's
// DEB_HOST_MULTIARCH) for the machines this project builds for.
var multiarch = map[elf.Machine]string{
	elf.EM_X86_64:  "x86_64-linux-gnu",
	elf.EM_AARCH64: "aarch64-linux-gnu",
}

// maxIncludeDepth bounds include nesting, so a file including itself fails
// instead of recursing.
const maxIncludeDepth = 16

// ParseConf reads the directories an ld.so.conf names (conf is an absolute
// path in fsys, usually /etc/ld.so.conf), in order, following its include
// lines: what ldconfig indexes into /etc/ld.so.cache. As ldconfig reads it
// (glibc elf/ldconfig.c parse_conf): "#" starts a comment; "include
// PATTERN…" reads the files each glob matches, in sorted order, a relative
// pattern taken from the including file's directory; "hwcap" lines are
// obsolete and skipped; other lines hold directories, separated by blanks,
// commas or colons, each possibly followed by "=TYPE". A missing conf is
// no directories.
func ParseConf(fsys fs.FS, conf string) ([]string, error) {
	var dirs []string
	err := parseConf(fsys, conf, 0, &dirs)
	if errors.Is(err, fs.ErrNotExist) && len(dirs) == 0 {
		return nil, nil
	}
	return dirs, err
}

func parseConf(fsys fs.FS, conf string, depth int, dirs *[]string) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: includes nested more than %d deep", conf, maxIncludeDepth)
	}
	b, err := fs.ReadFile(fsys, strings.TrimPrefix(conf, "/"))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "include":
			for _, pattern := range fields[1:] {
				if !path.IsAbs(pattern) {
					pattern = path.Join(path.Dir(conf), pattern)
				}
				matches, err := fs.Glob(fsys, strings.TrimPrefix(pattern, "/"))
				if err != nil {
					return fmt.Errorf("%s: include %s: %w", conf, pattern, err)
				}
				slices.Sort(matches)
				for _, m := range matches {
					if err := parseConf(fsys, "/"+m, depth+1, dirs); err != nil {
						return err
					}
				}
			}
		case "hwcap":
		default:
			for _, f := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\r,:", r) }) {
				d, _, _ := strings.Cut(f, "=")
				if d = path.Clean(d); path.IsAbs(d) && !slices.Contains(*dirs, d) {
					*dirs = append(*dirs, d)
				}
			}
		}
	}
	return nil
}

// System is the search of the machine fsys is the root of, for programs of
// machine type m: its ld.so.conf and its loader's default directories, and
// no LD_LIBRARY_PATH (the environment of the build is not the program's).
func System(fsys fs.FS, m elf.Machine) (Search, error) {
	cache, err := ParseConf(fsys, "/etc/ld.so.conf")
	if err != nil {
		return Search{}, fmt.Errorf("reading the loader's configuration: %w", err)
	}
	return Search{CacheDirs: cache, DefaultDirs: DefaultDirs(m)}, nil
}
