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

// grub is the embedded GRUB: it multiboots the kernel, console on the serial port.
var grub = grubefi.SerialBoot("multiboot", KernelPath, "unikernel", "multiboot "+KernelPath)

// Layout writes uefi images.
type Layout struct{ env layout.Env }

// New returns the uefi layout. It has no settings of its own.
func New(env layout.Env) (layout.Layout, error) { return &Layout{env: env}, nil }

// Name is "uefi".
func (l *Layout) Name() string { return Name }

// Prepare: the inputs are GRUB's version, as the EFI binary is part of the image.
func (l *Layout) Prepare(ctx context.Context, k layout.Kernel) (layout.Prepared, error) {
	v, err := grubefi.Version(ctx)
	if err != nil {
		return layout.Prepared{}, err
	}
	return layout.Prepared{
		Inputs: map[string]string{"grub": v},
		Write:  func(ctx context.Context, d *layout.Disk) (layout.BootSettings, error) { return l.write(ctx, d, k) },
	}, nil
}

// write lays out the GPT, the ESP and its files.
func (l *Layout) write(ctx context.Context, d *layout.Disk, k layout.Kernel) (layout.BootSettings, error) {
	efi, err := grubefi.Build(ctx, grub, l.env.CacheDir, l.env.Log)
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
	return layout.HVMUEFI, nil
}
