// Package layout is what every boot layout shares: the interface the Image step
// calls, the boot settings a layout returns, and deterministic disk writers
// (GPT, MBR, FAT32) built on go-diskfs.
//
// A layout is one package (layout/uefi, layout/pvgrub, …) that turns the kernel
// into files on a disk plus the settings the AMI needs to boot it. The Image
// step owns everything around it: sizing, the temporary file, hashing, the
// receipt and skipping unchanged work.
package layout

import (
	"context"

	"github.com/sirupsen/logrus"
)

// Layout writes one kind of bootable disk.
type Layout interface {
	// Name is the layout's value of deploy.boot: host, uefi or pvgrub.
	Name() string
	// Prepare resolves and builds everything the layout puts on the disk for
	// kernel k (an empty k.Path: no unikernel, for the host layout), and
	// returns what the image's bytes depend on with the writer of those bytes.
	Prepare(ctx context.Context, k Kernel) (Prepared, error)
}

// Prepared is a layout ready to write.
type Prepared struct {
	// Inputs are the layout's own settings, tools and files. With the
	// kernel's hash and the image size they are everything the image's bytes
	// depend on, so the Image step skips the work when they are unchanged.
	Inputs map[string]string
	// Write lays the kernel out on d, which is all zeros, and says how to boot it.
	Write func(ctx context.Context, d *Disk) (BootSettings, error)
}

// Settings are the deploy settings layouts read; each reads its own.
type Settings struct {
	PVGrubRoot string // pvgrub: hd0 (filesystem on the whole disk) or hd00 (one MBR partition)
	HostKernel string // host: root of an unpacked linux-image package
	Solo5SPT   string // host with a unikernel: solo5-spt's path; "" looks it up on PATH
}

// Env is what a layout may use besides the kernel.
type Env struct {
	Settings Settings
	// CacheDir keeps reusable tool outputs such as the GRUB EFI binary;
	// empty disables caching.
	CacheDir string
	// SiteDir is the built site (_site), for layouts that serve it
	// themselves (host, without a unikernel).
	SiteDir string
	// TLS is the certificate for a layout that serves the site itself
	// (host without a unikernel); nil with https off.
	TLS *TLS
	Log *logrus.Entry // nil discards
}

// TLS is the site's certificate as the Cert step wrote it, and how to serve it.
type TLS struct {
	Domain     string
	Aliases    []string
	HSTSMaxAge int64
	ChainFile  string // PEM, leaf first
	KeyFile    string // PEM private key
	SHA256     string // of chain and key: an input of the image
}

// Kernel is the file a layout puts on the disk.
type Kernel struct {
	Path   string
	Size   int64
	SHA256 string
}

// BootSettings are what RegisterImage needs to boot a layout.
type BootSettings struct {
	VirtualizationType string `json:"virtualization_type"`       // "hvm" or "paravirtual"
	BootMode           string `json:"boot_mode,omitempty"`       // "uefi" for hvm layouts
	EnaSupport         bool   `json:"ena_support"`               //
	RootDeviceName     string `json:"root_device_name"`          // e.g. /dev/xvda
	NeedsKernelID      bool   `json:"needs_kernel_id,omitempty"` // paravirtual: register with the PV-GRUB AKI
}

// HVMUEFI is how a GPT disk with an EFI System Partition registers: a
// hardware-virtualised AMI that boots through UEFI firmware, with ENA, which
// is what Nitro instance types run.
var HVMUEFI = BootSettings{
	VirtualizationType: "hvm",
	BootMode:           "uefi",
	EnaSupport:         true,
	RootDeviceName:     "/dev/xvda",
}
