// Package kmod finds Linux kernel modules in an unpacked kernel package and
// orders them for loading: each module after the modules its depends= field
// names, read from the module's own .modinfo ELF section.
//
// Distribution kernel packages (Debian's linux-image-*) ship no modules.dep:
// depmod writes it at install time. Reading depends= from the modules
// themselves works on the package as unpacked by dpkg -x, without depmod.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Tree is the modules of one kernel version: lib/modules/<Version>/ under
// an unpacked kernel package.
type Tree struct {
	Dir     string            // the lib/modules/<version> directory
	Version string            // the kernel release, e.g. 6.1.0-56-cloud-amd64
	files   map[string]string // module name → path relative to Dir
	builtin map[string]bool   // modules built into the kernel (modules.builtin)
}

// Module is one module to load, with what it needs loaded first.
type Module struct {
	Name    string   // module name, with underscores (xen_netfront)
	Path    string   // path relative to the Tree's Dir, e.g. kernel/drivers/net/virtio_net.ko
	Depends []string // the depends= field, in its order
	// Aliases are its alias= fields: the device patterns depmod writes to
	// modules.alias (which a kernel package does not ship), in their order.
	Aliases []string
}

// moduleExts are the file names modules have: plain, or compressed as
// distributions may ship them (CONFIG_MODULE_COMPRESS_*).
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Open indexes the modules under dir (lib/modules/<version>).
func Open(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, Version: filepath.Base(dir), files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		name, ok := moduleName(d.Name())
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if prev, dup := t.files[name]; dup {
			// Several files for one module (e.g. updates/ overriding kernel/)
			// would make the choice depend on walk order: refuse instead.
			return fmt.Errorf("module %s is both %s and %s", name, prev, rel)
		}
		t.files[name] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the kernel modules under %s: %w", dir, err)
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("no kernel modules (*.ko) under %s; point host_kernel at an unpacked linux-image package (it holds lib/modules/<version>/kernel/)", dir)
	}
	// modules.builtin lists drivers compiled into the kernel: asking for one
	// of those is satisfied without a file.
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if name, ok := moduleName(filepath.Base(strings.TrimSpace(sc.Text()))); ok {
				t.builtin[name] = true
			}
		}
	}
	return t, nil
}

// moduleName turns a module's file name into its name: strip the extension,
// and '-' becomes '_' as the kernel does (xen-netfront.ko is xen_netfront).
func moduleName(file string) (string, bool) {
	for _, ext := range moduleExts {
		if base, ok := strings.CutSuffix(file, ext); ok {
			return Normalize(base), true
		}
	}
	return "", false
}

// Normalize is the kernel's spelling of a module name: '-' and '_' are the
// same character in module names, and the kernel uses '_'.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Builtin reports whether the module is compiled into the kernel.
func (t *Tree) Builtin(name string) bool { return t.builtin[Normalize(name)] }

// Path returns the file of a module relative to Dir, or "" when there is none.
func (t *Tree) Path(name string) string { return t.files[Normalize(name)] }

// Read returns a module's ELF bytes, decompressed.
func (t *Tree) Read(name string) ([]byte, error) {
	rel := t.Path(name)
	if rel == "" {
		return nil, fmt.Errorf("no module %s in %s", name, t.Dir)
	}
	return readModule(filepath.Join(t.Dir, filepath.FromSlash(rel)))
}

func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		r = xr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		r = gr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// Info reads a module's .modinfo section: the key=value strings modinfo(8)
// prints. Keys may repeat (alias=), so values are lists.
func Info(ko []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF kernel module: %w", err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("the module has no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	info := map[string][]string{}
	for _, field := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(field), "=")
		if ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

// Depends returns the module names of a depends= field ("" means none).
func Depends(info map[string][]string) []string {
	var deps []string
	for _, field := range info["depends"] {
		for d := range strings.SplitSeq(field, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, Normalize(d))
			}
		}
	}
	return deps
}

// Module reads one module's name, file and dependencies.
func (t *Tree) Module(name string) (Module, error) {
	name = Normalize(name)
	ko, err := t.Read(name)
	if err != nil {
		return Module{}, err
	}
	info, err := Info(ko)
	if err != nil {
		return Module{}, fmt.Errorf("module %s (%s): %w", name, t.Path(name), err)
	}
	return Module{Name: name, Path: t.Path(name), Depends: Depends(info), Aliases: info["alias"]}, nil
}

// Resolve returns the modules to load for the wanted ones, dependencies
// first, each once. Wanted modules compiled into the kernel are skipped and
// listed in builtin; a wanted module that is neither a file nor built in, a
// missing dependency or a dependency cycle is an error. The order depends
// only on wanted and the modules' depends= fields: dependencies in the order
// depends= lists them, wanted modules in the order given.
func (t *Tree) Resolve(wanted []string) (load []Module, builtin []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kernel modules depend on each other in a cycle: %s", strings.Join(append(chain, name), " → "))
		}
		if t.Path(name) == "" {
			if t.Builtin(name) {
				state[name] = done
				return nil
			}
			if len(chain) == 0 {
				return fmt.Errorf("kernel module %s is neither in %s nor built into the kernel; is this a kernel with EC2's drivers (Debian's linux-image-cloud-amd64)?", name, t.Dir)
			}
			return fmt.Errorf("kernel module %s needs %s (depends=), which is missing from %s; the kernel package looks incomplete", chain[len(chain)-1], name, t.Dir)
		}
		state[name] = visiting
		m, err := t.Module(name)
		if err != nil {
			return err
		}
		for _, d := range m.Depends {
			if err := visit(d, append(slices.Clone(chain), name)); err != nil {
				return err
			}
		}
		state[name] = done
		load = append(load, m)
		return nil
	}
	for _, w := range wanted {
		w = Normalize(w)
		if t.Path(w) == "" && t.Builtin(w) {
			builtin = append(builtin, w)
			continue
		}
		if err := visit(w, nil); err != nil {
			return nil, nil, err
		}
	}
	return load, builtin, nil
}
