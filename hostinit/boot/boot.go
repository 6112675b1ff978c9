// Package boot does what an init does before anything else: mount the kernel's
// filesystems and load the kernel modules the image carries.
package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount is one filesystem to mount.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// Mounts are the essentials: /proc and /sys for netlink's and the tender's
// needs, devtmpfs for /dev/net/tun and /dev/kvm-like nodes, tmpfs scratch.
var Mounts = []Mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
}

// MountAll mounts ms in order, creating the mount points. A target already
// mounted (EBUSY) counts as done: the kernel may have mounted devtmpfs.
func MountAll(ms []Mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.Target, err)
		}
		if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.FSType, m.Target, err)
		}
	}
	return nil
}

// LoadResult says what happened to one module.
type LoadResult struct {
	Path string
	Err  error // nil when loaded or already present
	// NoDevice is true when the module refused to load because its hardware
	// or hypervisor is absent (xen-netfront off Xen): expected, not a fault.
	NoDevice bool
}

// LoadModules loads each module file in order with finit_module. One failing
// does not stop the others: a NIC driver for another instance family may
// fail while the one this instance needs loads.
func LoadModules(paths []string) []LoadResult {
	res := make([]LoadResult, 0, len(paths))
	for _, p := range paths {
		err := load(p)
		r := LoadResult{Path: p}
		switch {
		case err == nil, errors.Is(err, unix.EEXIST):
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			r.NoDevice, r.Err = true, err
		default:
			r.Err = err
		}
		res = append(res, r)
	}
	return res
}

func load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			// Kernels without finit_module take the bytes instead.
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				return rerr
			}
			return unix.InitModule(b, "")
		}
		return err
	}
	return nil
}

// ModuleName is a module file's name without directory and extension.
func ModuleName(path string) string {
	base := filepath.Base(path)
	for ext := filepath.Ext(base); ext != ""; ext = filepath.Ext(base) {
		base = base[:len(base)-len(ext)]
	}
	return base
}

// WaitForEntropy blocks until the kernel's random number generator is
// seeded. A blocking getrandom is what makes Linux (5.18 and later) generate
// entropy from timer jitter when it has no other source; the DHCP client polls
// without blocking, and would wait forever on a VM without RDRAND or
// virtio-rng (QEMU's default CPU under software emulation). On EC2 the CPU's
// RDRAND seeds it before init runs, and this returns at once.
func WaitForEntropy() error {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
