package image

import (
	"fmt"

	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "image"

// Receipt describes a finished disk image. Bake reads it: the sha256 names the
// image in AWS, and Boot says how the AMI must be registered.
type Receipt struct {
	Path         string            `json:"path"`          // absolute path of the raw image
	Layout       string            `json:"layout"`        // boot layout: uefi, pvgrub
	SizeBytes    int64             `json:"size_bytes"`    // the image's (virtual) size
	DataBytes    int64             `json:"data_bytes"`    // bytes actually holding data
	SHA256       string            `json:"sha256"`        // hex SHA-256 of all SizeBytes bytes
	Kernel       string            `json:"kernel"`        // the kernel put in the image
	KernelSHA256 string            `json:"kernel_sha256"` //
	BuildID      string            `json:"build_id"`      // the site build the image serves, when known
	Boot         BootSettings      `json:"boot"`          // how to register the AMI
	Inputs       map[string]string `json:"inputs"`        // input name → hash, for skipping unchanged work
}

// BootSettings are what RegisterImage needs to boot a layout.
type BootSettings struct {
	VirtualizationType string `json:"virtualization_type"`       // "hvm" or "paravirtual"
	BootMode           string `json:"boot_mode,omitempty"`       // "uefi" for hvm layouts
	EnaSupport         bool   `json:"ena_support"`               //
	RootDeviceName     string `json:"root_device_name"`          // e.g. /dev/xvda
	NeedsKernelID      bool   `json:"needs_kernel_id,omitempty"` // paravirtual: register with the PV-GRUB AKI
}

// ReadReceipt loads _build/image.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	var r Receipt
	ok, err := receipt.Read(buildDir, ReceiptName, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("image: no disk image built yet (%s is missing); run `mage image`", receipt.Path(buildDir, ReceiptName))
	}
	return &r, nil
}
