// Package elfdeps finds what the dynamic loader needs to start an ELF
// program: its interpreter (PT_INTERP) and every shared library it needs
// (DT_NEEDED, recursively), found the way glibc's loader searches (ld.so(8):
// DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH, ld.so.cache, the default
// directories). It reads the files' program headers and dynamic sections
// with debug/elf and never runs them, so it works on a program for another
// root or one that would not start here.
package elfdeps

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Search is where libraries are looked for, besides the run paths the
// objects carry themselves. Directories are absolute, slash-separated.
type Search struct {
	// LibraryPath is LD_LIBRARY_PATH's directories.
	LibraryPath []string
	// CacheDirs stand for /etc/ld.so.cache: the directories ld.so.conf names,
	// which ldconfig indexes (see ParseConf).
	CacheDirs []string
	// DefaultDirs are the loader's built-in directories, searched last
	// unless the needing object says DF_1_NODEFLIB (see DefaultDirs).
	DefaultDirs []string
}

// File is one file the program needs.
type File struct {
	Name     string // as asked for: the PT_INTERP path, or a DT_NEEDED entry such as libc.so.6
	Path     string // where it was found, an absolute slash path in the searched fs.FS
	NeededBy string // the Path of the object that asked for it
}

// Deps is what a program needs to start.
type Deps struct {
	Interp *File // nil for a statically linked program
	Libs   []File
}

// Files are the interpreter, if any, then the libraries.
func (d *Deps) Files() []File {
	var fs []File
	if d.Interp != nil {
		fs = append(fs, *d.Interp)
	}
	return append(fs, d.Libs...)
}

// NotFoundError is a needed file the search did not find.
type NotFoundError struct {
	Name, NeededBy string
	Interp         bool     // the ELF interpreter rather than a library
	Searched       []string // the directories tried, in order
	Rejected       []string // candidates that were there but unusable, with why
}

func (e *NotFoundError) Error() string {
	if e.Interp {
		msg := fmt.Sprintf("the ELF interpreter %s (PT_INTERP of %s) is not there", e.Name, e.NeededBy)
		if len(e.Rejected) > 0 {
			msg = fmt.Sprintf("the ELF interpreter %s (PT_INTERP of %s) is unusable: %s", e.Name, e.NeededBy, strings.Join(e.Rejected, "; "))
		}
		return msg
	}
	msg := fmt.Sprintf("%s, needed by %s, is in none of the directories the loader searches (%s)", e.Name, e.NeededBy, strings.Join(e.Searched, ", "))
	if len(e.Rejected) > 0 {
		msg += "; unusable there: " + strings.Join(e.Rejected, "; ")
	}
	return msg
}

// object is a loaded ELF file, as far as the search is concerned.
type object struct {
	path    string
	loader  *object // the object whose DT_NEEDED loaded it (nil for the program)
	needed  []string
	rpath   []string // DT_RPATH, ignored when DT_RUNPATH is present (ld.so(8))
	runpath []string
	nodef   bool   // DF_1_NODEFLIB: no ld.so.cache, no default directories
	soname  string // DT_SONAME
}

// kind is what every object of one program must share: the loader maps only
// objects of the program's class, byte order and machine, and skips others
// found on the way ("wrong ELF class").
type kind struct {
	class   elf.Class
	data    elf.Data
	machine elf.Machine
}

func (k kind) String() string { return fmt.Sprintf("%s %s %s", k.class, k.data, k.machine) }

// Resolve finds the interpreter and libraries the program at the absolute
// path program needs, in fsys (os.DirFS("/") for this machine). Libraries
// are listed once each, breadth first, as the loader maps them; a library
// the loader would find already mapped (the interpreter's soname, one
// loaded for an earlier DT_NEEDED) is not listed again.
func Resolve(fsys fs.FS, program string, s Search) (*Deps, error) {
	f, err := openELF(fsys, program)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := kind{f.Class, f.Data, f.Machine}
	main, err := readObject(f, program, nil)
	if err != nil {
		return nil, err
	}
	deps := &Deps{}
	loaded := map[string]bool{}
	if main.soname != "" {
		loaded[main.soname] = true
	}
	interp, err := interpreter(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", program, err)
	}
	if interp != "" {
		ok, why := candidate(fsys, interp, want)
		if !ok {
			e := &NotFoundError{Name: interp, NeededBy: program, Interp: true}
			if why != "" {
				e.Rejected = []string{interp + ": " + why}
			}
			return nil, e
		}
		deps.Interp = &File{Name: interp, Path: interp, NeededBy: program}
		// The loader is mapped first; a DT_NEEDED naming it (libc.so.6
		// needs ld-linux-x86-64.so.2) finds it by name or soname.
		loaded[interp] = true
		if o, err := load(fsys, interp, nil); err == nil && o.soname != "" {
			loaded[o.soname] = true
		}
	}

	queue := []*object{main}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		for _, name := range o.needed {
			if loaded[name] {
				continue
			}
			p, err := find(fsys, name, o, s, want)
			if err != nil {
				return nil, err
			}
			loaded[name] = true
			lib, err := load(fsys, p, o)
			if err != nil {
				return nil, err
			}
			if lib.soname != "" {
				loaded[lib.soname] = true
			}
			deps.Libs = append(deps.Libs, File{Name: name, Path: p, NeededBy: o.path})
			queue = append(queue, lib)
		}
	}
	return deps, nil
}

// find searches for name, needed by o, in the loader's order (ld.so(8),
// glibc elf/dl-load.c _dl_map_object): a name with a slash is a path; else
// the DT_RPATH of o and of each object that loaded it (for those without
// DT_RUNPATH), LD_LIBRARY_PATH, o's DT_RUNPATH (not inherited), the cache,
// the default directories. The loader also tries glibc-hwcaps
// subdirectories first; a build machine's optimised variants are left out,
// and the baseline library runs on any CPU.
func find(fsys fs.FS, name string, o *object, s Search, want kind) (string, error) {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", fmt.Errorf("%s needs %q, a path relative to wherever it is started from; only library names and absolute paths can be resolved", o.path, name)
		}
		if ok, why := candidate(fsys, name, want); !ok {
			e := &NotFoundError{Name: name, NeededBy: o.path, Searched: []string{path.Dir(name)}}
			if why != "" {
				e.Rejected = []string{name + ": " + why}
			}
			return "", e
		}
		return name, nil
	}
	var dirs []string
	if len(o.runpath) == 0 {
		for l := o; l != nil; l = l.loader {
			if len(l.runpath) == 0 {
				for _, d := range l.rpath {
					dirs = append(dirs, expand(d, l))
				}
			}
		}
	}
	dirs = append(dirs, s.LibraryPath...)
	for _, d := range o.runpath {
		dirs = append(dirs, expand(d, o))
	}
	if !o.nodef {
		dirs = append(dirs, s.CacheDirs...)
		dirs = append(dirs, s.DefaultDirs...)
	}
	e := &NotFoundError{Name: name, NeededBy: o.path}
	seen := map[string]bool{}
	for _, d := range dirs {
		// An empty entry is the working directory, which the program
		// will not have where it runs.
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		if strings.Contains(d, "$") {
			return "", fmt.Errorf("%s: the run path %q uses a dynamic string token other than $ORIGIN ($LIB, $PLATFORM), which depends on the loader's build; rebuild it without one", o.path, d)
		}
		e.Searched = append(e.Searched, d)
		p := path.Join(d, name)
		ok, why := candidate(fsys, p, want)
		if ok {
			return p, nil
		}
		if why != "" {
			e.Rejected = append(e.Rejected, p+": "+why)
		}
	}
	return "", e
}

// expand replaces $ORIGIN (or ${ORIGIN}) with the directory of the object
// whose run path it is.
func expand(dir string, o *object) string {
	origin := path.Dir(o.path)
	dir = strings.ReplaceAll(dir, "${ORIGIN}", origin)
	return path.Clean(strings.ReplaceAll(dir, "$ORIGIN", origin))
}

// candidate reports whether p is a file the loader would map for a program
// of kind want; a file that is there but unusable comes with why.
func candidate(fsys fs.FS, p string, want kind) (bool, string) {
	f, err := openELF(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, ""
	}
	if err != nil {
		return false, err.Error()
	}
	defer f.Close()
	if got := (kind{f.Class, f.Data, f.Machine}); got != want {
		return false, fmt.Sprintf("%s, not %s", got, want)
	}
	return true, ""
}

func openELF(fsys fs.FS, p string) (*elf.File, error) {
	b, err := fs.ReadFile(fsys, strings.TrimPrefix(p, "/"))
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s is not an ELF file: %w", p, err)
	}
	return f, nil
}

func load(fsys fs.FS, p string, loader *object) (*object, error) {
	f, err := openELF(fsys, p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readObject(f, p, loader)
}

// readObject reads what the search needs from f's dynamic section; a file
// without one (a static program) needs nothing.
func readObject(f *elf.File, p string, loader *object) (*object, error) {
	o := &object{path: p, loader: loader}
	if f.Section(".dynamic") == nil && !hasDynamic(f) {
		return o, nil
	}
	var err error
	strs := func(tag elf.DynTag) []string {
		if err != nil {
			return nil
		}
		var v []string
		if v, err = f.DynString(tag); err != nil {
			err = fmt.Errorf("reading %s of %s: %w", tag, p, err)
		}
		return v
	}
	o.needed = strs(elf.DT_NEEDED)
	o.runpath = splitPaths(strs(elf.DT_RUNPATH))
	o.rpath = splitPaths(strs(elf.DT_RPATH))
	if so := strs(elf.DT_SONAME); len(so) > 0 {
		o.soname = so[0]
	}
	if err != nil {
		return nil, err
	}
	flags, err := f.DynValue(elf.DT_FLAGS_1)
	if err != nil {
		return nil, fmt.Errorf("reading DT_FLAGS_1 of %s: %w", p, err)
	}
	for _, v := range flags {
		o.nodef = o.nodef || elf.DynFlag1(v)&elf.DF_1_NODEFLIB != 0
	}
	return o, nil
}

// hasDynamic reports a PT_DYNAMIC segment, for files whose section headers
// were stripped.
func hasDynamic(f *elf.File) bool {
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC {
			return true
		}
	}
	return false
}

func splitPaths(entries []string) []string {
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, strings.Split(e, ":")...)
	}
	return dirs
}

// interpreter is the PT_INTERP path, "" for a program without one.
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("reading PT_INTERP: %w", err)
		}
		s := string(bytes.TrimRight(b, "\x00"))
		if !path.IsAbs(s) {
			return "", fmt.Errorf("PT_INTERP %q is not an absolute path", s)
		}
		return s, nil
	}
	return "", nil
}
