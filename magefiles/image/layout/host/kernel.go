package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/unikernel-blog/blog/magefiles/image/layout/host/kmod"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// Kernel is a Linux kernel from an unpacked kernel package.
type Kernel struct {
	Root          string     // the package root (host_kernel)
	Release       string     // e.g. 6.1.0-56-cloud-amd64
	Vmlinuz       string     // boot/vmlinuz-<release>
	VmlinuzSHA256 string     //
	Modules       *kmod.Tree // lib/modules/<release>
}

// GetKernelHint says how to get Debian's cloud kernel without installing it.
const GetKernelHint = "get Debian's cloud kernel without installing it: " +
	"`bash .ci/host-kernel` downloads the pinned linux-image-*-cloud-amd64 package from deb.debian.org, " +
	"checks its SHA-256 and unpacks it into deploy.host_kernel's default (HOST_KERNEL_DIR=DIR puts it elsewhere); " +
	"then set deploy.host_kernel (or DEPLOY_HOST_KERNEL) to DIR if it is elsewhere"

// FindKernel finds the one kernel under root: boot/vmlinuz-<release> with
// lib/modules/<release>/.
func FindKernel(root string) (*Kernel, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	found, _ := filepath.Glob(filepath.Join(abs, "boot", "vmlinuz-*"))
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no Linux kernel (boot/vmlinuz-*) under host_kernel %s; %s", abs, GetKernelHint)
	case 1:
	default:
		return nil, fmt.Errorf("several kernels under host_kernel %s (%s); unpack one kernel package per directory", abs, strings.Join(found, ", "))
	}
	release := strings.TrimPrefix(filepath.Base(found[0]), "vmlinuz-")
	mods, err := kmod.Open(filepath.Join(abs, "lib", "modules", release))
	if err != nil {
		// Debian's usrmerge puts them under usr/lib on newer releases.
		var err2 error
		if mods, err2 = kmod.Open(filepath.Join(abs, "usr", "lib", "modules", release)); err2 != nil {
			return nil, fmt.Errorf("the modules of kernel %s: %w; %s", release, err, GetKernelHint)
		}
	}
	sum, err := receipt.HashFile(found[0])
	if err != nil {
		return nil, err
	}
	return &Kernel{Root: abs, Release: release, Vmlinuz: found[0], VmlinuzSHA256: sum, Modules: mods}, nil
}

// BuildInit compiles the init, reproducibly: static (no cgo), paths trimmed,
// no build id and no VCS stamp, so the same sources and Go toolchain give the
// same bytes. -s -w drop the symbol table and DWARF, a third of the size;
// panics still print file:line from the pclntab. -mod=readonly builds from
// go.mod and the module cache only: a vendor/ directory at a blog's root is
// usually Bundler's gems (vendor/bundle), which go would otherwise take for
// its own vendored modules and refuse ("inconsistent vendoring").
func BuildInit(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "hostinit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, InitPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the init (%s): %w\n%s\nrun mage from the blog's root, with Go installed", InitPackage, err, b)
	}
	return os.ReadFile(out)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
