package host

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing/fstest"

	"github.com/unikernel-blog/blog/magefiles/image/layout/host/elfdeps"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host/initramfs"
)

// tenderLibDir is where the tender's shared libraries go in the initramfs,
// each under the name the tender's objects ask for (DT_NEEDED); the init
// runs the tender with LD_LIBRARY_PATH naming it. The initramfs has no
// /etc/ld.so.cache, and which directories a loader searches by default is
// built into it, so an explicit path is what works for any loader.
const tenderLibDir = "/usr/lib/solo5-spt"

// bundleTenderDeps switches on carrying the tender's interpreter and
// libraries; tests switch it off to see the image refused.
var bundleTenderDeps = true

// tenderFile is a file the tender needs, where it goes in the initramfs.
type tenderFile struct {
	at   string // absolute path in the initramfs
	from string // the file on this machine
	why  string // what needs it, for errors
	mode uint64 // the interpreter must be executable (the kernel execs it); libraries are mapped
}

// tenderNeeds finds what solo5-spt needs to start, on this machine, from its
// ELF program header and dynamic section (elfdeps): Solo5 links the spt
// tender against glibc and libseccomp, so the real one needs its
// interpreter and libraries beside it; a static tender needs nothing.
func tenderNeeds(tender string) ([]tenderFile, error) {
	real, err := filepath.EvalSymlinks(tender)
	if err != nil {
		return nil, fmt.Errorf("solo5-spt %s: %w", tender, err)
	}
	f, err := elf.Open(real)
	if err != nil {
		return nil, fmt.Errorf("solo5-spt %s is not an ELF program (%w); point deploy.solo5_spt at the solo5-spt of your opam switch", tender, err)
	}
	machine, class := f.Machine, f.Class
	f.Close()
	if machine != elf.EM_X86_64 || class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("solo5-spt %s is a %s %s program, and the host image's Linux is x86_64: use the solo5-spt of an x86_64 opam switch", tender, class, machine)
	}
	root := os.DirFS("/")
	search, err := elfdeps.System(root, machine)
	if err != nil {
		return nil, err
	}
	deps, err := elfdeps.Resolve(root, real, search)
	if err != nil {
		return nil, fmt.Errorf("solo5-spt %s cannot start: %w; install what it needs on this machine (its libraries, e.g. `apt-get install libseccomp2`), or build a solo5-spt that has it", tender, err)
	}
	var files []tenderFile
	if i := deps.Interp; i != nil {
		files = append(files, tenderFile{at: i.Name, from: i.Path, why: "the ELF interpreter of " + i.NeededBy, mode: 0o755})
	}
	for _, l := range deps.Libs {
		files = append(files, tenderFile{at: path.Join(tenderLibDir, l.Name), from: l.Path, why: l.Name + ", needed by " + l.NeededBy, mode: 0o644})
	}
	return files, nil
}

// addTender adds solo5-spt at tenderPath and what it needs to a, then checks
// that the tender would start there: its interpreter at its PT_INTERP path
// and every library it needs found by the loader in the initramfs alone. It
// returns the LD_LIBRARY_PATH the init must give the tender ("" for none).
// An image whose tender could not start is refused with the reason, rather
// than written to restart a tender that fails forever.
func addTender(a *initramfs.Archive, tender string, data []byte) (string, error) {
	if err := a.File(strings.TrimPrefix(tenderPath, "/"), data, 0o755); err != nil {
		return "", err
	}
	image := fstest.MapFS{strings.TrimPrefix(tenderPath, "/"): {Data: data, Mode: 0o755}}
	needs, err := tenderNeeds(tender)
	if err != nil {
		return "", err
	}
	libPath := ""
	if bundleTenderDeps {
		for _, n := range needs {
			b, err := os.ReadFile(n.from)
			if err != nil {
				return "", fmt.Errorf("reading %s (%s): %w", n.from, n.why, err)
			}
			if err := a.File(strings.TrimPrefix(n.at, "/"), b, n.mode); err != nil {
				return "", err
			}
			image[strings.TrimPrefix(n.at, "/")] = &fstest.MapFile{Data: b, Mode: fs.FileMode(n.mode)}
			if path.Dir(n.at) == tenderLibDir {
				libPath = tenderLibDir
			}
		}
	}
	if _, err := elfdeps.Resolve(image, tenderPath, elfdeps.Search{LibraryPath: []string{tenderLibDir}}); err != nil {
		return "", fmt.Errorf("solo5-spt (%s) would not start in the host image: %w; it would exit with \"no such file or directory\" and be restarted forever", tender, err)
	}
	return libPath, nil
}

// tenderNeedsDigest identifies what tenderNeeds finds for tender, for the
// image's inputs: the files' places and contents.
func tenderNeedsDigest(tender string) (string, error) {
	needs, err := tenderNeeds(tender)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, n := range needs {
		b, err := os.ReadFile(n.from)
		if err != nil {
			return "", fmt.Errorf("reading %s (%s): %w", n.from, n.why, err)
		}
		fmt.Fprintf(h, "%s %x\n", n.at, sha256.Sum256(b))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
