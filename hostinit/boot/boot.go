// Package boot does what an init does before anything else: mount the kernel's
// filesystems, load the kernel modules for the devices present (modules.go)
// and make sure the kernel's random number generator is seeded.
package boot

import (
	"errors"
	"fmt"
	"os"

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

// EntropyReady reports, without waiting, whether the kernel's random number
// generator is seeded. On EC2 it is before init starts: the CPU's RDRAND
// seeds it (the cloud kernel trusts it, CONFIG_RANDOM_TRUST_CPU). Under QEMU
// it is once virtio_rng has loaded for a -device virtio-rng-pci.
func EntropyReady() bool {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}

// WaitForEntropy blocks until the kernel's random number generator is
// seeded. A blocking getrandom is what makes Linux (5.18 and later) generate
// entropy from timer jitter when it has no other source (about a second of
// a CPU); the DHCP client only polls without blocking, and would spin until
// interrupts seeded it. Call it where randomness is needed, after
// EntropyReady said no.
func WaitForEntropy() error {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
