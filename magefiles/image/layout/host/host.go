// Package host is the host boot layout: how the blog runs on today's EC2.
//
// MirageOS 4 has no target that boots natively on current EC2 families (Xen
// HVM offers no virtio, Nitro offers only ENA and NVMe, EC2 has no PVH), so
// this layout boots a stock Linux cloud kernel — Debian's
// linux-image-cloud-amd64, with EC2's drivers — from the uefi layout's GPT,
// ESP and standalone GRUB EFI, with an initramfs written here in Go. Its /init
// (hostinit/, at the repository root: it runs on the instance) brings up the first NIC with DHCP and runs the payload:
//
//   - spt: the Mirage unikernel (mirage_target: spt) under Solo5's
//     sandboxed-process tender, behind a tap and a port forward;
//   - static: no unikernel (mirage_target: none); the init serves _site.
//
// Everything is reproducible: the init is built with -trimpath and no build
// id or VCS stamp, the initramfs has fixed metadata and order, and GRUB's
// binary is normalised by grubefi.
package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/unikernel-blog/blog/hostinit/spec"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/grubefi"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host/initramfs"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// Name is the layout's deploy.boot value.
const Name = "host"

// Paths on the ESP and in the initramfs.
const (
	KernelPath = "/boot/vmlinuz"
	InitrdPath = "/boot/initrd"
	BootPath   = "/EFI/BOOT/BOOTX64.EFI"
	siteRoot   = "/srv/site"
	chainPath  = "/etc/tls/chain.pem"
	keyPath    = "/etc/tls/key.pem"
	tenderPath = "/bin/solo5-spt"
	sptPath    = "/srv/unikernel.spt"
)

// formatVersion changes whenever this package changes the bytes it writes
// for the same inputs (the initramfs's layout, its configuration file), so
// images written by an older version are not reused.
const formatVersion = "2"

// InitPackage is the init's import path; the Image step builds it.
const InitPackage = "github.com/unikernel-blog/blog/hostinit"

// DeviceModules drive the devices the image may meet: EC2's and QEMU's
// NICs — ENA (Nitro), xen-netfront (Xen HVM; EC2 boots UEFI AMIs on Nitro
// only, but the init is not tied to this image's boot mode), virtio-net
// over virtio-pci (QEMU, `mage run`) — and QEMU's virtio-rng entropy
// source (-device virtio-rng-pci), which seeds the kernel's random number
// generator where no RDRAND does. The init loads those whose device alias
// matches a device present, with their dependencies. NVMe, the serial
// console and AF_PACKET (DHCP) are built into the cloud kernel.
var DeviceModules = []string{"virtio_pci", "virtio_net", "ena", "xen_netfront", "virtio_rng"}

// TenderModules are what the Mirage payload adds: tun for the tap, and
// nftables with NAT for the port forward. They drive no device, so the init
// loads them always.
var TenderModules = []string{"tun", "nf_tables", "nft_chain_nat", "nft_nat"}

// CommandLine is the kernel's: the console on the first serial port (EC2's
// console output, QEMU's -serial), quiet so the init's lines stand out, and a
// reboot 10 s after a panic rather than a hang.
const CommandLine = "console=ttyS0,115200n8 quiet panic=10"

// grub boots the kernel with its initramfs, console on the serial port.
var grub = grubefi.SerialBoot("linux", KernelPath, "blog host", "linux "+KernelPath+" "+CommandLine, "initrd "+InitrdPath)

// GRUBConfig is the embedded grub.cfg.
var GRUBConfig = grub.Config

// Layout writes host images.
type Layout struct{ env layout.Env }

// New returns the host layout.
func New(env layout.Env) (layout.Layout, error) {
	if env.Settings.HostKernel == "" {
		return nil, errors.New("the host layout needs host_kernel: set deploy.host_kernel to an unpacked linux-image package (README: The host layout)")
	}
	return &Layout{env: env}, nil
}

// Name is "host".
func (l *Layout) Name() string { return Name }

// Prepare finds the Linux kernel, builds the init and resolves the payload
// for k: the unikernel under solo5-spt, or (no k.Path) the static server for
// the site. Its inputs are everything besides the unikernel the image's
// bytes depend on: GRUB, the Linux kernel and modules, the init, and the
// payload's files.
func (l *Layout) Prepare(ctx context.Context, k layout.Kernel) (layout.Prepared, error) {
	grub, err := grubefi.Version(ctx)
	if err != nil {
		return layout.Prepared{}, err
	}
	kern, err := FindKernel(l.env.Settings.HostKernel)
	if err != nil {
		return layout.Prepared{}, err
	}
	init, err := BuildInit(ctx)
	if err != nil {
		return layout.Prepared{}, err
	}
	in := map[string]string{
		"grub":           grub,
		"grub_cfg":       sha([]byte(GRUBConfig)),
		"cmdline":        CommandLine,
		"format":         formatVersion,
		"kernel_release": kern.Release,
		"vmlinuz":        kern.VmlinuzSHA256,
		"init":           sha(init),
	}
	opts := InitramfsOptions{Kernel: kern, Init: init}
	modules := slices.Clone(DeviceModules)
	if k.Path == "" {
		if l.env.SiteDir == "" {
			return layout.Prepared{}, errors.New("the static payload needs the site directory, and the Image step passed none")
		}
		sum, mod, err := siteHash(l.env.SiteDir)
		if err != nil {
			return layout.Prepared{}, err
		}
		in["site"], in["site_modified"] = sum, mod.UTC().Format(time.RFC3339)
		opts.SiteDir = l.env.SiteDir
		if t := l.env.TLS; t != nil {
			// The certificate and how it is served: a renewal or a new alias is a new image.
			in["tls"] = t.SHA256
			in["tls_names"] = strings.Join(append([]string{t.Domain}, t.Aliases...), ",")
			in["hsts_max_age"] = fmt.Sprint(t.HSTSMaxAge)
			opts.TLS = t
		}
	} else {
		t, err := l.findTender()
		if err != nil {
			return layout.Prepared{}, err
		}
		if in["tender"], err = receipt.HashFile(t); err != nil {
			return layout.Prepared{}, err
		}
		// What the tender needs to start goes into the image too (tender.go).
		if in["tender_needs"], err = tenderNeedsDigest(t); err != nil {
			return layout.Prepared{}, err
		}
		opts.Unikernel, opts.Tender = k.Path, t
		modules = append(modules, TenderModules...)
	}
	all, _, err := kern.Modules.Resolve(modules)
	if err != nil {
		return layout.Prepared{}, err
	}
	for _, m := range all {
		if in["module "+m.Path], err = receipt.HashFile(filepath.Join(kern.Modules.Dir, m.Path)); err != nil {
			return layout.Prepared{}, err
		}
	}
	return layout.Prepared{
		Inputs: in,
		Write: func(ctx context.Context, d *layout.Disk) (layout.BootSettings, error) {
			return l.write(ctx, d, kern, opts)
		},
	}, nil
}

func (l *Layout) findTender() (string, error) {
	tender := l.env.Settings.Solo5SPT
	if tender != "" {
		abs, err := filepath.Abs(tender)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() {
			return "", fmt.Errorf("solo5_spt %s is not a file (%v); point deploy.solo5_spt (or DEPLOY_SOLO5_SPT) at the solo5-spt of your opam switch, e.g. $(opam var bin)/solo5-spt", tender, err)
		}
		return abs, nil
	}
	p, err := exec.LookPath("solo5-spt")
	if err != nil {
		return "", errors.New("solo5-spt not found on PATH; the spt payload needs Solo5's tender from the opam switch that built the unikernel: run `eval $(opam env)`, or set deploy.solo5_spt (DEPLOY_SOLO5_SPT) to its path; or set mirage_target: none to serve the site without Mirage")
	}
	return filepath.Abs(p)
}

// write lays out the GPT, the ESP and its files.
func (l *Layout) write(ctx context.Context, d *layout.Disk, kern *Kernel, opts InitramfsOptions) (layout.BootSettings, error) {
	initrd, cfg, err := Initramfs(opts)
	if err != nil {
		return layout.BootSettings{}, err
	}
	if l.env.Log != nil {
		l.env.Log.WithFields(map[string]any{"payload": cfg.Payload, "modules": len(cfg.Modules), "initramfs_bytes": len(initrd), "kernel_release": kern.Release}).Info("initramfs built")
	}
	efi, err := grubefi.Build(ctx, grub, l.env.CacheDir, l.env.Log)
	if err != nil {
		return layout.BootSettings{}, err
	}
	vmlinuz, err := os.ReadFile(kern.Vmlinuz)
	if err != nil {
		return layout.BootSettings{}, fmt.Errorf("reading the Linux kernel: %w", err)
	}
	span, err := layout.BootSpan(d.Size)
	if err != nil {
		return layout.BootSettings{}, err
	}
	if err := layout.WriteGPT(d, layout.GPTPartition{Type: gpt.EFISystemPartition, Name: "EFI System", Span: span}); err != nil {
		return layout.BootSettings{}, err
	}
	fat, err := layout.NewFAT32(d, span, "ESP")
	if err != nil {
		return layout.BootSettings{}, err
	}
	if need := int64(len(efi) + len(vmlinuz) + len(initrd)); need > fat.Free() {
		return layout.BootSettings{}, fmt.Errorf("%w: GRUB (%d bytes), the Linux kernel (%d bytes) and the initramfs (%d bytes) need more than the %d bytes free on the %d-byte ESP",
			layout.ErrNoSpace, len(efi), len(vmlinuz), len(initrd), fat.Free(), span.Size)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{BootPath, efi}, {KernelPath, vmlinuz}, {InitrdPath, initrd}} {
		if err := fat.Mkdir(path.Dir(f.path)); err != nil {
			return layout.BootSettings{}, err
		}
		if _, err := fat.WriteFile(f.path, bytes.NewReader(f.data)); err != nil {
			return layout.BootSettings{}, err
		}
	}
	if err := fat.Finish(); err != nil {
		return layout.BootSettings{}, err
	}
	return layout.HVMUEFI, nil
}

// InitramfsOptions are what goes into the initramfs: the kernel's modules and
// the init always, then either the site (static) or the unikernel and its
// tender (spt).
type InitramfsOptions struct {
	Kernel    *Kernel
	Init      []byte      // the init binary
	SiteDir   string      // static payload
	Unikernel string      // spt payload: the .spt kernel
	Tender    string      // spt payload: solo5-spt
	TLS       *layout.TLS // static payload with https: the certificate
}

// Initramfs builds the gzip-compressed initramfs and returns it with the
// init's configuration.
func Initramfs(o InitramfsOptions) ([]byte, *spec.Config, error) {
	a := initramfs.New()
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "etc"} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	// The kernel opens /dev/console as init's stdin, stdout and stderr
	// before init runs, so it must exist before devtmpfs is mounted.
	if err := a.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, nil, err
	}
	if err := a.File("init", o.Init, 0o755); err != nil {
		return nil, nil, err
	}
	cfg := &spec.Config{KernelRelease: o.Kernel.Release}
	want := slices.Clone(DeviceModules)
	switch {
	case o.SiteDir != "" && o.Unikernel == "":
		_, mod, err := siteHash(o.SiteDir)
		if err != nil {
			return nil, nil, err
		}
		cfg.Payload = spec.PayloadStatic
		cfg.Static = &spec.Static{Root: siteRoot, Port: 80, Modified: mod.Unix()}
		cfg.BuildID = readBuildID(o.SiteDir)
		if err := addTree(a, o.SiteDir, strings.TrimPrefix(siteRoot, "/")); err != nil {
			return nil, nil, err
		}
		if t := o.TLS; t != nil {
			if err := addTLS(a, t); err != nil {
				return nil, nil, err
			}
			cfg.Static.TLS = &spec.TLS{Chain: chainPath, Key: keyPath, Port: 443, Domain: t.Domain, Aliases: t.Aliases, HSTSMaxAge: t.HSTSMaxAge}
		}
	case o.Unikernel != "" && o.Tender != "":
		want = append(want, TenderModules...)
		uk, err := os.ReadFile(o.Unikernel)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the unikernel: %w", err)
		}
		if !bytes.HasPrefix(uk, []byte("\x7fELF")) {
			return nil, nil, fmt.Errorf("the unikernel %s is not an ELF file; the host layout runs Mirage's spt target (mirage_target: spt)", o.Unikernel)
		}
		tender, err := os.ReadFile(o.Tender)
		if err != nil {
			return nil, nil, fmt.Errorf("reading solo5-spt: %w", err)
		}
		if err := a.File(strings.TrimPrefix(sptPath, "/"), uk, 0o644); err != nil {
			return nil, nil, err
		}
		// The tender with its interpreter and libraries (tender.go).
		libPath, err := addTender(a, o.Tender, tender)
		if err != nil {
			return nil, nil, err
		}
		cfg.Payload = spec.PayloadSPT
		// The unikernel's memory: its image (the site is crunched into it)
		// twice over, plus room for the network stack's buffers.
		cfg.SPT = &spec.SPT{Tender: tenderPath, Kernel: sptPath, Ports: []int{80, 443}, MemMiB: 64 + 2*len(uk)>>20, LibraryPath: libPath}
	default:
		return nil, nil, errors.New("the initramfs needs a payload: the site directory (static) or a unikernel and solo5-spt (spt)")
	}
	mods, _, err := o.Kernel.Modules.Resolve(want)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mods {
		ko, err := o.Kernel.Modules.Read(m.Name)
		if err != nil {
			return nil, nil, err
		}
		// Stored decompressed: finit_module then needs no in-kernel
		// decompression support, and gzip compresses the whole archive.
		p := path.Join("lib/modules", o.Kernel.Release, strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m.Path, ".xz"), ".zst"), ".gz"))
		if err := a.File(p, ko, 0o644); err != nil {
			return nil, nil, err
		}
		cfg.Modules = append(cfg.Modules, spec.Module{
			Name: m.Name, Path: "/" + p, Depends: m.Depends, Aliases: m.Aliases,
			Always: slices.Contains(TenderModules, m.Name),
		})
	}
	if err := cfg.Check(); err != nil {
		return nil, nil, err
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	if err := a.File(strings.TrimPrefix(spec.Path, "/"), append(js, '\n'), 0o644); err != nil {
		return nil, nil, err
	}
	gz, err := a.Gzip()
	if err != nil {
		return nil, nil, err
	}
	return gz, cfg, nil
}

// addTLS puts the chain and key into /etc/tls; the key readable by root
// (the init) only.
func addTLS(a *initramfs.Archive, t *layout.TLS) error {
	if err := a.Dir("etc/tls", 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		src, dst string
		mode     uint64
	}{{t.ChainFile, chainPath, 0o644}, {t.KeyFile, keyPath, 0o600}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("reading the certificate: %w; run `mage cert`", err)
		}
		if err := a.File(strings.TrimPrefix(f.dst, "/"), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// addTree adds every regular file under dir at prefix, with 0644 (the init
// only reads them).
func addTree(a *initramfs.Archive, dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return a.Dir(prefix, 0o755)
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return a.Dir(name, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return a.File(name, b, 0o644)
		}
		return nil // links and devices are not part of a built site
	})
}

// siteHash hashes the site's files and finds their newest mtime, which the
// static server sends as Last-Modified.
func siteHash(dir string) (string, time.Time, error) {
	var t receipt.Tree
	var newest time.Time
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		rel, _ := filepath.Rel(dir, p)
		return t.AddFile(filepath.ToSlash(rel), p)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading the site %s: %w; run `mage site`", dir, err)
	}
	if t.Len() == 0 {
		return "", time.Time{}, fmt.Errorf("the site %s is empty; run `mage site`", dir)
	}
	return t.Sum(), newest.Truncate(time.Second), nil
}

func readBuildID(siteDir string) string {
	b, err := os.ReadFile(filepath.Join(siteDir, "build-id.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
