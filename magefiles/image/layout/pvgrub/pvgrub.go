// Package pvgrub is the pvgrub boot layout: Amazon's PV-GRUB route for
// paravirtual AMIs. PV-GRUB (GRUB legacy 0.97 as a Xen PV kernel, the AMI's
// AKI) reads /boot/grub/menu.lst from the root volume and boots the Xen PV
// kernel it names.
//
// The filesystem is FAT32: GRUB legacy reads it (fsys_fat), and go-diskfs
// writes it without root or mounts, where go-diskfs's ext4 uses extents, which
// GRUB legacy cannot read. Two AKI families exist, matching pvgrub_root:
//
//   - hd0: the filesystem covers the disk from byte 0, no partition table;
//     menu.lst says root (hd0).
//   - hd00: an MBR with one FAT32 partition; menu.lst says root (hd0,0).
package pvgrub

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
)

// Name is the layout's deploy.boot value.
const Name = "pvgrub"

// Roots are the pvgrub_root values.
const (
	RootDisk      = "hd0"  // filesystem on the whole disk
	RootPartition = "hd00" // filesystem on the first MBR partition
)

// KernelPath is the gzip-compressed kernel on the filesystem; PV-GRUB
// decompresses it while loading, and it saves space and upload time.
const KernelPath = "/boot/kernel.gz"

// MenuPath is where PV-GRUB looks for its configuration.
const MenuPath = "/boot/grub/menu.lst"

// Layout writes pvgrub images.
type Layout struct {
	root string
}

// New returns the pvgrub layout for the pvgrub_root setting (hd0 when unset).
func New(env layout.Env) (layout.Layout, error) {
	root := env.Settings.PVGrubRoot
	switch root {
	case "":
		root = RootDisk
	case RootDisk, RootPartition:
	default:
		return nil, fmt.Errorf("pvgrub_root %q must be %s or %s, matching the PV-GRUB AKI's name", root, RootDisk, RootPartition)
	}
	return &Layout{root: root}, nil
}

// Name is "pvgrub".
func (l *Layout) Name() string { return Name }

// Prepare: the input is the AKI family, which decides the partitioning and menu.lst.
func (l *Layout) Prepare(_ context.Context, k layout.Kernel) (layout.Prepared, error) {
	return layout.Prepared{
		Inputs: map[string]string{"pvgrub_root": l.root},
		Write:  func(ctx context.Context, d *layout.Disk) (layout.BootSettings, error) { return l.write(ctx, d, k) },
	}, nil
}

// Menu is menu.lst for the given GRUB root device.
func Menu(grubRoot string) string {
	return strings.Join([]string{
		"default 0",
		"timeout 0",
		"title unikernel",
		"root " + grubRoot,
		"kernel " + KernelPath,
		"",
	}, "\n")
}

// write lays out the filesystem (partitioned or not), menu.lst and the kernel.
func (l *Layout) write(ctx context.Context, d *layout.Disk, k layout.Kernel) (layout.BootSettings, error) {
	var span layout.Span
	var grubRoot string
	if l.root == RootPartition {
		s, err := layout.BootSpan(d.Size)
		if err != nil {
			return layout.BootSettings{}, err
		}
		if err := layout.WriteMBR(d, layout.MBRPartition{Type: mbr.Fat32LBA, Bootable: true, Span: s}); err != nil {
			return layout.BootSettings{}, err
		}
		span, grubRoot = s, "(hd0,0)"
	} else {
		span, grubRoot = layout.Span{Start: 0, Size: min(d.Size, layout.MaxFilesystem)}, "(hd0)"
	}
	fs, err := layout.NewFAT32(d, span, "BOOT")
	if err != nil {
		return layout.BootSettings{}, err
	}
	if err := fs.Mkdir("/boot/grub"); err != nil {
		return layout.BootSettings{}, err
	}
	if _, err := fs.WriteFile(MenuPath, strings.NewReader(Menu(grubRoot))); err != nil {
		return layout.BootSettings{}, err
	}
	kf, err := os.Open(k.Path)
	if err != nil {
		return layout.BootSettings{}, fmt.Errorf("opening the kernel: %w", err)
	}
	defer kf.Close()
	zr := gzipped(ctx, kf)
	defer zr.Close() // stops the compressor if writing failed
	if _, err := fs.WriteFile(KernelPath, zr); err != nil {
		return layout.BootSettings{}, err
	}
	if err := fs.Finish(); err != nil {
		return layout.BootSettings{}, err
	}
	// EC2 reserves /dev/sda1 as the root device of paravirtual AMIs (its
	// device-naming table), whichever AKI family: the hd0/hd00 choice is about
	// what is on the volume, not what it is called.
	return layout.BootSettings{
		VirtualizationType: "paravirtual",
		RootDeviceName:     "/dev/sda1",
		NeedsKernelID:      true,
	}, nil
}

// gzipped streams r compressed, reproducibly: Go's gzip writes no file name,
// a zero mtime and OS "unknown" unless told otherwise, so the same kernel
// always gives the same bytes.
func gzipped(ctx context.Context, r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzip.BestCompression)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := io.Copy(zw, ctxReader{ctx, r}); err != nil {
			pw.CloseWithError(fmt.Errorf("compressing the kernel: %w", err))
			return
		}
		pw.CloseWithError(zw.Close())
	}()
	return pr
}

// ctxReader stops a long copy when the build is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
