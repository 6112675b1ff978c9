// Package image is the Image step: it writes the kernel into a raw, bootable,
// sparse disk image under _build/ and records it in _build/image.json.
//
// The image is written natively with go-diskfs (no root, loop devices or
// mounts) into a temporary file that is renamed into place only when complete.
// It is reproducible: the same kernel, layout, settings, size and tools give
// the same bytes, so Bake can skip unchanged images by their digest (a
// content address that reads only the data blocks: sparse.DigestFile). What goes
// on the disk is the layout's business (magefiles/image/layout/...); this
// package does the sizing, the file, the digest, the receipt and the skip.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// writerVersion changes whenever this code changes the bytes it writes for the
// same inputs, so images written by an older version are not reused.
const writerVersion = "1"

// DefaultSize is the image size when Options.Size is zero: 1 GiB, the
// smallest EBS volume.
const DefaultSize = 1 << 30

// minSize leaves room for partition tables and a FAT32 filesystem, which
// needs at least 65,525 clusters.
const minSize = 64 << 20

// Options are what the Image step needs.
type Options struct {
	BuildDir string // _build: the receipts, the image and caches
	Layout   string // deploy.boot: host, uefi or pvgrub
	Size     int64  // image size in bytes, a whole number of MiB; 0 means DefaultSize
	// Settings are the deploy settings layouts read.
	Settings layout.Settings
	// Kernel is the kernel to write; empty takes the Unikernel step's,
	// and with it the build id and commit the image goes out with.
	Kernel string
	// SiteDir is the built site, for layouts that serve it without a
	// unikernel (host with mirage_target: none).
	SiteDir string
	Force   bool // write even when the inputs are unchanged (FORCE=1)
	Log     *logrus.Entry
}

// ImagePath is where the image of a layout goes under buildDir.
func ImagePath(buildDir, layoutName string) string {
	return filepath.Join(buildDir, "disk-"+layoutName+".img")
}

// Build writes the disk image, or reuses the one already there when its
// inputs are unchanged and its bytes still match the receipt.
func Build(ctx context.Context, o Options) (*Receipt, error) {
	log := o.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	newLayout, ok := layouts[o.Layout]
	if !ok {
		return nil, fmt.Errorf("image: unknown boot layout %q; set deploy.boot in _config.yml (or DEPLOY_BOOT) to one of %s", o.Layout, strings.Join(Layouts(), ", "))
	}
	if o.Size%(1<<20) != 0 || o.Size < minSize {
		return nil, fmt.Errorf("image: image_size %d is not a whole number of MiB of at least 64MiB; set deploy.image_size, e.g. 1GiB", o.Size)
	}
	buildDir, err := filepath.Abs(o.BuildDir)
	if err != nil {
		return nil, fmt.Errorf("image: resolving %s: %w", o.BuildDir, err)
	}
	kernel, from, err := findKernel(buildDir, o.Kernel)
	if err != nil {
		return nil, err
	}
	env := layout.Env{Settings: o.Settings, CacheDir: filepath.Join(buildDir, "cache"), SiteDir: o.SiteDir, Log: log}
	if t := from.TLS; t != nil {
		env.TLS = &layout.TLS{Domain: t.Domain, Aliases: t.Aliases, HSTSMaxAge: t.HSTSMaxAge, ChainFile: t.ChainFile, KeyFile: t.KeyFile, SHA256: t.SHA256}
	}
	lay, err := newLayout(env)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if kernel.Size >= o.Size {
		return nil, tooLarge(kernel, o.Size, nil)
	}
	prepared, err := lay.Prepare(ctx, kernel)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	inputs := map[string]string{
		"kernel_sha256": kernel.SHA256,
		"layout":        lay.Name(),
		"size":          strconv.FormatInt(o.Size, 10),
		"writer":        writerVersion,
	}
	for k, v := range prepared.Inputs {
		inputs["layout."+k] = v
	}
	buildID, commit := from.BuildID, from.Commit
	path := ImagePath(buildDir, lay.Name())
	log = log.WithFields(logrus.Fields{"layout": lay.Name(), "size": o.Size, "kernel": kernel.Path})

	if !o.Force {
		if r, ok := reusable(buildDir, path, inputs, log); ok {
			if (r.BuildID != buildID || r.Commit != commit) && buildID != "" {
				r.BuildID, r.Commit = buildID, commit
				if err := receipt.Write(buildDir, ReceiptName, r); err != nil {
					return nil, fmt.Errorf("image: %w", err)
				}
			}
			log.WithField("digest", r.Digest).Infof("image unchanged, skipped: %s", path)
			return r, nil
		}
	}

	log.Info("writing the disk image")
	start := time.Now()
	// An image holding the certificate's key (in the initramfs or the
	// kernel) is readable by its owner only.
	mode := os.FileMode(0o644)
	if from.TLS != nil {
		mode = 0o600
	}
	boot, err := write(ctx, path, lay.Name(), prepared.Write, o.Size, seed(inputs), mode)
	if err != nil {
		if errors.Is(err, layout.ErrNoSpace) {
			return nil, tooLarge(kernel, o.Size, err)
		}
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	d, err := sparse.DigestFile(f, o.Size)
	if err != nil {
		return nil, fmt.Errorf("image: computing the digest of %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	r := &Receipt{
		Path:         path,
		Layout:       lay.Name(),
		SizeBytes:    o.Size,
		DataBytes:    d.ExtentBytes,
		Digest:       d.Hex,
		Kernel:       kernel.Path,
		KernelSHA256: kernel.SHA256,
		BuildID:      buildID,
		Commit:       commit,
		Boot:         boot,
		Inputs:       inputs,
		ModTime:      st.ModTime(),
		Seconds:      time.Since(start).Seconds(),
	}
	if err := receipt.Write(buildDir, ReceiptName, r); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	log.WithFields(logrus.Fields{"digest": d.Hex, "data_bytes": d.ExtentBytes, "data_blocks": d.DataBlocks, "seconds": r.Seconds}).Infof("image ready: %s", path)
	return r, nil
}

// write makes the image in a temporary file beside path and renames it into
// place, so path only ever holds a complete image.
func write(ctx context.Context, path, layoutName string, writeLayout func(context.Context, *layout.Disk) (layout.BootSettings, error), size int64, seed string, mode os.FileMode) (layout.BootSettings, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return layout.BootSettings{}, fmt.Errorf("image: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return layout.BootSettings{}, fmt.Errorf("image: creating the temporary image: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	fail := func(err error) (layout.BootSettings, error) {
		f.Close()
		return layout.BootSettings{}, err
	}
	// Truncate makes a sparse file of zeros: only what the layout writes takes
	// disk space, and nothing needs to write zeros.
	if err := f.Truncate(size); err != nil {
		return fail(fmt.Errorf("image: sizing the image to %d bytes: %w; free some disk space under %s", size, err, filepath.Dir(path)))
	}
	boot, err := writeLayout(ctx, layout.NewDisk(f, size, seed))
	if err != nil {
		if errors.Is(err, layout.ErrNoSpace) {
			return fail(err)
		}
		return fail(fmt.Errorf("image: writing the %s layout: %w", layoutName, err))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("image: syncing the image: %w", err))
	}
	if err := f.Close(); err != nil {
		return layout.BootSettings{}, fmt.Errorf("image: closing the image: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return layout.BootSettings{}, fmt.Errorf("image: %w", err)
	}
	return boot, nil
}

// reusable returns the previous receipt when its inputs equal these and the
// image at path still holds what it describes: same size, and the same mtime
// or, failing that, the same digest. A receipt from before the digest (no
// digest recorded) is not reused.
func reusable(buildDir, path string, inputs map[string]string, log *logrus.Entry) (*Receipt, bool) {
	var r Receipt
	ok, err := receipt.Read(buildDir, ReceiptName, &r)
	if err != nil {
		log.WithError(err).Warn("ignoring the previous image receipt")
		return nil, false
	}
	if !ok || r.Path != path || !maps.Equal(r.Inputs, inputs) || len(r.Digest) != sparse.DigestHexLen {
		return nil, false
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() != r.SizeBytes {
		return nil, false
	}
	if st.ModTime().Equal(r.ModTime) {
		return &r, true
	}
	d, err := sparse.DigestFile(f, r.SizeBytes)
	if err != nil || d.Hex != r.Digest {
		log.Info("the image file changed since it was written; writing it again")
		return nil, false
	}
	return &r, true
}

// seed is the content hash every identifier on the disk derives from: the
// inputs, in a canonical order.
func seed(inputs map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(inputs)) {
		fmt.Fprintf(h, "%s=%s\n", k, inputs[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// findKernel resolves and hashes the kernel: the one named, or the Unikernel
// step's, whose receipt (returned; empty for a named kernel) carries the
// build the image goes out with.
func findKernel(buildDir, path string) (layout.Kernel, *unikernel.Receipt, error) {
	from := &unikernel.Receipt{}
	if path == "" {
		r, err := unikernel.ReadReceipt(buildDir)
		if err != nil {
			return layout.Kernel{}, nil, fmt.Errorf("image: %w", err)
		}
		if r.Kernel == "" {
			// mirage_target: none built no unikernel. Only the host layout
			// writes an image without one (it serves the site itself);
			// configuration allows none with boot: host only.
			return layout.Kernel{}, r, nil
		}
		if r.Target == unikernel.UnixTarget {
			return layout.Kernel{}, nil, fmt.Errorf("image: the kernel %s was built with mirage_target: unix, a program for this machine (run it: `%s --port 8080`) that no boot layout carries; set mirage_target back (spt for boot: host, or unset DEPLOY_MIRAGE_TARGET) and run again", r.Kernel, r.Kernel)
		}
		path, from = r.Kernel, r
	}
	k, err := hashKernel(path)
	return k, from, err
}

func hashKernel(path string) (layout.Kernel, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return layout.Kernel{}, fmt.Errorf("image: resolving the kernel %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return layout.Kernel{}, fmt.Errorf("image: the kernel %s is missing (%w); run `mage unikernel` again (FORCE=1 rebuilds), or set UNIKERNEL=/path/to/kernel", abs, err)
	}
	if !st.Mode().IsRegular() {
		return layout.Kernel{}, fmt.Errorf("image: the kernel %s is not a regular file; point UNIKERNEL at the kernel binary", abs)
	}
	sum, err := receipt.HashFile(abs)
	if err != nil {
		return layout.Kernel{}, fmt.Errorf("image: %w", err)
	}
	return layout.Kernel{Path: abs, Size: st.Size(), SHA256: sum}, nil
}

// tooLarge explains a kernel that does not fit and the image_size that would.
func tooLarge(k layout.Kernel, size int64, cause error) error {
	const mib = 1 << 20
	// Room for the partition tables, FATs, GRUB and slack, in whole MiB.
	suggest := (k.Size + k.Size/8 + 32*mib + mib - 1) / mib
	msg := fmt.Sprintf("image: the kernel %s (%.1f MiB) does not fit in a %d MiB image", k.Path, float64(k.Size)/mib, size/mib)
	fix := fmt.Sprintf("raise image_size (deploy.image_size in _config.yml, or DEPLOY_IMAGE_SIZE) to at least %dMiB", suggest)
	if cause != nil {
		return fmt.Errorf("%s (%w); %s", msg, cause, fix)
	}
	return fmt.Errorf("%s; %s", msg, fix)
}
