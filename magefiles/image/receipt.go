package image

import (
	"time"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "image"

// Receipt describes a finished disk image. Bake reads it: the digest names the
// image in AWS, and Boot says how the AMI must be registered.
type Receipt struct {
	Path         string            `json:"path"`          // absolute path of the raw image
	Layout       string            `json:"layout"`        // boot layout: host, uefi, pvgrub
	SizeBytes    int64             `json:"size_bytes"`    // the image's (virtual) size
	DataBytes    int64             `json:"data_bytes"`    // bytes in the file's allocated extents (SEEK_DATA/SEEK_HOLE): what Bake uploads at most
	Digest       string            `json:"digest"`        // the image's content address: SHA-256 over its size and non-zero 512 KiB blocks (sparse.DigestFile)
	Kernel       string            `json:"kernel"`        // the kernel put in the image
	KernelSHA256 string            `json:"kernel_sha256"` //
	BuildID      string            `json:"build_id"`      // the site build the image goes out with, from the Unikernel step's receipt
	Commit       string            `json:"commit"`        // the repository's commit, likewise
	Boot         BootSettings      `json:"boot"`          // how to register the AMI
	Inputs       map[string]string `json:"inputs"`        // input name → hash, for skipping unchanged work
	ModTime      time.Time         `json:"mod_time"`      // the image file's mtime when written: unchanged means unchanged bytes
	Seconds      float64           `json:"seconds"`       // how long writing the image took
}

// BootSettings are what RegisterImage needs to boot a layout. Each layout
// fills them in; the type lives with the layouts so they need not import this
// package.
type BootSettings = layout.BootSettings

// ReadReceipt loads _build/image.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "image", "no disk image built", "run `mage image`")
}
