// Package grubefi builds standalone GRUB EFI binaries with grub-mkstandalone,
// reproducibly: the same GRUB, modules and configuration give the same bytes
// on any machine, at any time.
//
// grub-mkstandalone packs the modules and grub.cfg into a tar "memdisk" inside
// the EFI binary. The tar records each file's mtime, and the modules are fresh
// copies in a temporary directory, so two runs a second apart differ; the
// order of the entries follows directory listing order, which can differ
// between machines. Normalize rewrites that tar in place (mtimes zero, entries
// sorted by name), and Build caches the result under the cache directory,
// keyed by GRUB's version, the modules and the configuration.
package grubefi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Tool is the GRUB command this package runs.
const Tool = "grub-mkstandalone"

// Format is the GRUB platform of the binaries: 64-bit UEFI.
const Format = "x86_64-efi"

// normalizeVersion changes whenever Normalize changes the bytes it produces,
// so cached binaries from an older rule are not reused.
const normalizeVersion = "1"

// InstallHint says how to get the tool and its EFI modules.
const InstallHint = "install it with `apt-get install grub-efi-amd64-bin` (Debian/Ubuntu; it brings grub-common)"

// ErrNotInstalled says grub-mkstandalone is missing.
var ErrNotInstalled = errors.New(Tool + " not found; " + InstallHint)

// Spec is what goes into a binary.
type Spec struct {
	// Modules are built in and preloaded; nothing else is included, which
	// keeps the binary small (about 1 MiB rather than 10).
	Modules []string
	// Config is the embedded /boot/grub/grub.cfg.
	Config string
}

// Version reports the installed GRUB's version, e.g. "GRUB 2.06-13+deb12u2".
func Version(ctx context.Context) (string, error) {
	path, err := exec.LookPath(Tool)
	if err != nil {
		return "", ErrNotInstalled
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w; reinstall grub-common", Tool, err)
	}
	// The line starts with the program's path as run; keep the version only,
	// which is what the bytes depend on.
	line := strings.TrimSpace(string(out))
	if i := strings.Index(line, "(GRUB)"); i >= 0 {
		return "GRUB" + line[i+len("(GRUB)"):], nil
	}
	return line, nil
}

// Build returns the EFI binary for spec, from cacheDir when it was built
// before (cacheDir "" disables the cache). log may be nil.
func Build(ctx context.Context, spec Spec, cacheDir string, log *logrus.Entry) ([]byte, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	version, err := Version(ctx)
	if err != nil {
		return nil, err
	}
	key := cacheKey(version, spec)
	cached := ""
	if cacheDir != "" {
		cached = filepath.Join(cacheDir, "grub-"+key[:16]+".efi")
		if b, err := os.ReadFile(cached); err == nil {
			log.WithField("cache", cached).Debug("GRUB EFI binary from the cache")
			return b, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading the cached GRUB EFI binary: %w", err)
		}
	}
	b, err := run(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := Normalize(b); err != nil {
		// The binary still boots; only its bytes may differ between runs.
		log.WithError(err).Warnf("%s %s: cannot make the EFI binary reproducible; images will differ between machines (the cache keeps them stable on this one)", Tool, version)
	}
	if cached != "" {
		if err := writeAtomic(cached, b); err != nil {
			return nil, fmt.Errorf("caching the GRUB EFI binary: %w", err)
		}
	}
	return b, nil
}

func cacheKey(version string, spec Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", version, Format, normalizeVersion, strings.Join(spec.Modules, " "), spec.Config)
	return hex.EncodeToString(h.Sum(nil))
}

func run(ctx context.Context, spec Spec) ([]byte, error) {
	path, err := exec.LookPath(Tool)
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "grubefi-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(spec.Config), 0o644); err != nil {
		return nil, err
	}
	// The tar entry of grub.cfg takes the file's mtime: fix it.
	if err := os.Chtimes(cfg, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "grub.efi")
	modules := strings.Join(spec.Modules, " ")
	cmd := exec.CommandContext(ctx, path,
		"--format="+Format,
		"--modules="+modules,
		"--install-modules="+modules,
		"--locales=", "--fonts=", "--themes=", // none: the console is serial
		"--compress=no",
		"--output="+out,
		"boot/grub/grub.cfg="+cfg,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		hint := "check the modules exist under /usr/lib/grub/" + Format + "; " + InstallHint
		return nil, fmt.Errorf("%s failed: %w: %s; %s", Tool, err, msg, hint)
	}
	return os.ReadFile(out)
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// SerialBoot is the spec every layout of ours embeds: GRUB on the first
// serial port (what EC2's console output and QEMU's -serial show), no menu
// delay, the partition holding the file at find located by search (GRUB's
// root starts in its own memdisk), then the boot commands of entry.
// loader is the GRUB module those commands need: multiboot, or linux (which
// on EFI does the EFI handover and provides initrd).
func SerialBoot(loader, find, title string, entry ...string) Spec {
	lines := []string{
		"serial --unit=0 --speed=115200",
		"terminal_input serial console",
		"terminal_output serial console",
		"set timeout=0",
		"insmod part_gpt",
		"insmod fat",
		"insmod " + loader,
		"search --no-floppy --file " + find + " --set=root",
		"menuentry " + strconv.Quote(title) + " {",
	}
	for _, e := range entry {
		lines = append(lines, "  "+e)
	}
	lines = append(lines, "  boot", "}", "")
	return Spec{
		// normal runs grub.cfg; part_gpt and fat read the ESP; search finds
		// it; serial and terminal drive the console.
		Modules: []string{"normal", "configfile", "echo", "test", "part_gpt", "fat", "search", "search_fs_file", loader, "serial", "terminal"},
		Config:  strings.Join(lines, "\n"),
	}
}
