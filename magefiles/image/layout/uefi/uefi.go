// Package uefi is the uefi boot layout: a GPT disk with one EFI System
// Partition (FAT32) holding a standalone GRUB EFI binary as the removable-media
// boot path EFI/BOOT/BOOTX64.EFI, and the kernel as /boot/kernel, which GRUB
// loads with multiboot. It boots under OVMF (QEMU) and on UEFI hosts.
package uefi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/grubefi"
)

// Name is the layout's deploy.boot value.
const Name = "uefi"

// KernelPath is where the kernel goes on the ESP; a fixed name keeps the
// image's bytes independent of what the kernel file was called.
const KernelPath = "/boot/kernel"

// BootPath is the removable-media boot path UEFI firmware tries without any
// boot entries in NVRAM, which a fresh AMI or QEMU has none of.
const BootPath = "/EFI/BOOT/BOOTX64.EFI"

// modules are the GRUB modules the configuration needs: normal runs grub.cfg;
// part_gpt and fat read the ESP; search finds it; multiboot loads the
// kernel; serial and terminal drive the console.
var modules = []string{"normal", "configfile", "echo", "test", "part_gpt", "fat", "search", "search_fs_file", "multiboot", "serial", "terminal"}

// Config is the embedded grub.cfg. GRUB starts with its root in its own
// memdisk, so it searches for the partition holding the kernel. The console
// is the first serial port, which is what EC2's console output and QEMU's
// -serial show.
var Config = strings.Join([]string{
	"serial --unit=0 --speed=115200",
	"terminal_input serial console",
	"terminal_output serial console",
	"set timeout=0",
	"insmod part_gpt",
	"insmod fat",
	"insmod multiboot",
	"search --no-floppy --file " + KernelPath + " --set=root",
	`menuentry "unikernel" {`,
	"  multiboot " + KernelPath,
	"  boot",
	"}",
	"",
}, "\n")

// Layout writes uefi images.
type Layout struct{ env layout.Env }

// New returns the uefi layout. It has no settings of its own.
func New(env layout.Env) (layout.Layout, error) { return &Layout{env: env}, nil }

// Name is "uefi".
func (l *Layout) Name() string { return Name }

// Inputs are GRUB's version: the EFI binary is part of the image.
func (l *Layout) Inputs(ctx context.Context) (map[string]string, error) {
	v, err := grubefi.Version(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"grub": v}, nil
}

// Write lays out the GPT, the ESP and its files.
func (l *Layout) Write(ctx context.Context, d *layout.Disk, k layout.Kernel) (layout.BootSettings, error) {
	efi, err := grubefi.Build(ctx, grubefi.Spec{Modules: modules, Config: Config}, l.env.CacheDir, l.env.Log)
	if err != nil {
		return layout.BootSettings{}, err
	}
	span, err := layout.BootSpan(d.Size)
	if err != nil {
		return layout.BootSettings{}, err
	}
	if err := layout.WriteGPT(d, layout.GPTPartition{Type: gpt.EFISystemPartition, Name: "EFI System", Span: span}); err != nil {
		return layout.BootSettings{}, err
	}
	fs, err := layout.NewFAT32(d, span, "ESP")
	if err != nil {
		return layout.BootSettings{}, err
	}
	if need := int64(len(efi)) + k.Size; need > fs.Free() {
		return layout.BootSettings{}, fmt.Errorf("%w: the kernel (%d bytes) and GRUB (%d bytes) need more than the %d bytes free on the %d-byte ESP",
			layout.ErrNoSpace, k.Size, len(efi), fs.Free(), span.Size)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		return layout.BootSettings{}, err
	}
	if _, err := fs.WriteFile(BootPath, bytes.NewReader(efi)); err != nil {
		return layout.BootSettings{}, err
	}
	if err := fs.Mkdir("/boot"); err != nil {
		return layout.BootSettings{}, err
	}
	kf, err := os.Open(k.Path)
	if err != nil {
		return layout.BootSettings{}, fmt.Errorf("opening the kernel: %w", err)
	}
	defer kf.Close()
	if _, err := fs.WriteFile(KernelPath, kf); err != nil {
		return layout.BootSettings{}, err
	}
	if err := fs.Finish(); err != nil {
		return layout.BootSettings{}, err
	}
	return layout.BootSettings{
		VirtualizationType: "hvm",
		BootMode:           "uefi",
		EnaSupport:         true,
		RootDeviceName:     "/dev/xvda",
	}, nil
}
