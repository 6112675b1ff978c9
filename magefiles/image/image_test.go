package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/grubefi"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

const mib = 1 << 20

func TestUEFILayoutCheckedByRealTools(t *testing.T) {
	needGRUB(t)
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	fsck := testtool.Need(t, "fsck.fat", "dosfstools")
	mdir := testtool.Need(t, "mdir", "mtools")
	mcopy := testtool.Need(t, "mcopy", "mtools")
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")

	kernel := randomKernel(t, 3*mib+123)
	dir := t.TempDir()
	withUnikernelReceipt(t, dir, kernel)
	r, err := Build(context.Background(), Options{BuildDir: dir, Layout: "uefi"}) // default size: 1 GiB
	if err != nil {
		t.Fatal(err)
	}
	if r.SizeBytes != DefaultSize || r.Path != filepath.Join(dir, "disk-uefi.img") {
		t.Fatalf("receipt size %d path %s; want %d and disk-uefi.img in %s", r.SizeBytes, r.Path, DefaultSize, dir)
	}
	want := BootSettings{VirtualizationType: "hvm", BootMode: "uefi", EnaSupport: true, RootDeviceName: "/dev/xvda"}
	if r.Boot != want {
		t.Errorf("boot settings %+v; want %+v", r.Boot, want)
	}

	// qemu-img: a raw image of exactly the configured size.
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		ActualSize  int64  `json:"actual-size"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, qemuImg, "info", "--output=json", r.Path)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "raw" || info.VirtualSize != DefaultSize {
		t.Errorf("qemu-img info: format %q virtual-size %d; want raw, %d", info.Format, info.VirtualSize, DefaultSize)
	}
	// Sparse: only the data takes blocks.
	if info.ActualSize > 8*mib {
		t.Errorf("the image occupies %d bytes on disk; want only its data (< 8 MiB)", info.ActualSize)
	}
	if r.DataBytes < 3*mib || r.DataBytes > 8*mib {
		t.Errorf("data_bytes %d; want the kernel, GRUB and FAT structures (3..8 MiB)", r.DataBytes)
	}

	// sfdisk: a GPT with one EFI System Partition from 1 MiB to the last whole MiB.
	var pt struct {
		PartitionTable struct {
			Label      string `json:"label"`
			FirstLBA   int64  `json:"firstlba"`
			LastLBA    int64  `json:"lastlba"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
				Type, UUID  string
				Name        string
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, sfdisk, "--json", r.Path)), &pt); err != nil {
		t.Fatal(err)
	}
	p := pt.PartitionTable
	sectors := int64(DefaultSize / 512)
	if p.Label != "gpt" || p.FirstLBA != 34 || p.LastLBA != sectors-34 || p.SectorSize != 512 || len(p.Partitions) != 1 {
		t.Fatalf("sfdisk: %+v; want a gpt label, LBAs 34..%d, one partition", p, sectors-34)
	}
	esp := p.Partitions[0]
	if esp.Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Errorf("partition type %s; want the EFI System Partition's", esp.Type)
	}
	if esp.Start != 2048 || esp.Start+esp.Size > p.LastLBA+1 || (esp.Start+esp.Size)%2048 != 0 || esp.Size < sectors-2*2048 {
		t.Errorf("ESP at sectors %d+%d; want 1 MiB-aligned from 2048 to the last whole MiB before LBA %d", esp.Start, esp.Size, p.LastLBA)
	}

	// fsck.fat on the ESP's bytes: a clean FAT32 filesystem.
	part := testtool.Extract(t, r.Path, esp.Start*512, esp.Size*512)
	out := run(t, nil, fsck, "-n", "-v", part)
	if !strings.Contains(out, "FAT32") && !strings.Contains(out, "32-bit") {
		t.Logf("fsck.fat -v:\n%s", out)
	}
	for _, bad := range []string{"Fixing", "Invalid", "uninitialized", "differ", "Leaving filesystem unchanged"} {
		if strings.Contains(out, bad) {
			t.Errorf("fsck.fat -n reported %q:\n%s", bad, out)
		}
	}

	// mtools: the files, with the fixed timestamps.
	at := r.Path + "@@" + itoa(esp.Start*512)
	listing := run(t, mtoolsEnv, mdir, "-i", at, "::/EFI/BOOT")
	if !strings.Contains(listing, "BOOTX64  EFI") {
		t.Errorf("mdir ::/EFI/BOOT does not list BOOTX64.EFI:\n%s", listing)
	}
	if !strings.Contains(listing, "1980-01-01") {
		t.Errorf("mdir ::/EFI/BOOT: want the fixed date 1980-01-01 on every entry:\n%s", listing)
	}
	listing = run(t, mtoolsEnv, mdir, "-i", at, "::/boot")
	if !strings.Contains(listing, "kernel") {
		t.Errorf("mdir ::/boot does not list the kernel:\n%s", listing)
	}
	gotKernel := run(t, mtoolsEnv, mcopy, "-i", at, "::/boot/kernel", "-")
	if wantKernel, _ := os.ReadFile(kernel); gotKernel != string(wantKernel) {
		t.Error("::/boot/kernel differs from the kernel")
	}
	efi := run(t, mtoolsEnv, mcopy, "-i", at, "::/EFI/BOOT/BOOTX64.EFI", "-")
	if !strings.HasPrefix(efi, "MZ") {
		t.Error("BOOTX64.EFI is not a PE image")
	}
}

func TestPVGrubLayoutCheckedByRealTools(t *testing.T) {
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	fsck := testtool.Need(t, "fsck.fat", "dosfstools")
	mtype := testtool.Need(t, "mtype", "mtools")
	mcopy := testtool.Need(t, "mcopy", "mtools")
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	kernel := randomKernel(t, 2*mib+7)
	wantKernel, _ := os.ReadFile(kernel)

	for _, tc := range []struct {
		root, grubRoot string
		fsAt           int64
	}{
		{root: "hd0", grubRoot: "(hd0)", fsAt: 0},
		{root: "hd00", grubRoot: "(hd0,0)", fsAt: mib},
	} {
		t.Run(tc.root, func(t *testing.T) {
			const size = 64 * mib // the smallest image_size, where go-diskfs oversizes the data area
			r, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "pvgrub", Size: size, Kernel: kernel,
				Settings: layout.Settings{PVGrubRoot: tc.root}})
			if err != nil {
				t.Fatal(err)
			}
			want := BootSettings{VirtualizationType: "paravirtual", RootDeviceName: "/dev/sda1", NeedsKernelID: true}
			if r.Boot != want {
				t.Errorf("boot settings %+v; want %+v", r.Boot, want)
			}
			if info := run(t, nil, qemuImg, "info", "--output=json", r.Path); !strings.Contains(info, `"format": "raw"`) || !strings.Contains(info, `"virtual-size": 67108864`) {
				t.Errorf("qemu-img info: want raw, 64 MiB:\n%s", info)
			}

			var fs string
			if tc.root == "hd0" {
				fs = r.Path // the filesystem is the whole disk
			} else {
				var pt struct {
					PartitionTable struct {
						Label      string
						Partitions []struct {
							Start, Size int64
							Type        string
							Bootable    bool
						}
					}
				}
				if err := json.Unmarshal([]byte(run(t, nil, sfdisk, "--json", r.Path)), &pt); err != nil {
					t.Fatal(err)
				}
				ps := pt.PartitionTable.Partitions
				if pt.PartitionTable.Label != "dos" || len(ps) != 1 || ps[0].Type != "c" || ps[0].Start != 2048 || (ps[0].Start+ps[0].Size)*512 > size {
					t.Fatalf("sfdisk: %+v; want one FAT32-LBA (type c) partition from sector 2048", pt)
				}
				fs = testtool.Extract(t, r.Path, ps[0].Start*512, ps[0].Size*512)
			}
			if out := run(t, nil, fsck, "-n", fs); strings.Contains(out, "Fixing") || strings.Contains(out, "uninitialized") {
				t.Errorf("fsck.fat -n:\n%s", out)
			}

			at := r.Path + "@@" + itoa(tc.fsAt)
			menu := run(t, mtoolsEnv, mtype, "-i", at, "::/boot/grub/menu.lst")
			if !strings.Contains(menu, "root "+tc.grubRoot+"\n") || !strings.Contains(menu, "kernel /boot/kernel.gz\n") || !strings.Contains(menu, "timeout 0\n") {
				t.Errorf("menu.lst:\n%s\nwant root %s and kernel /boot/kernel.gz", menu, tc.grubRoot)
			}
			gz := run(t, mtoolsEnv, mcopy, "-i", at, "::/boot/kernel.gz", "-")
			zr, err := gzip.NewReader(strings.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !zr.ModTime.IsZero() {
				t.Errorf("gzip header has name %q, mtime %v; want neither, for reproducible bytes", zr.Name, zr.ModTime)
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, wantKernel) {
				t.Errorf("kernel.gz does not decompress to the kernel (err %v)", err)
			}
		})
	}
}

func TestSameInputsGiveSameBytes(t *testing.T) {
	needGRUB(t)
	kernel := randomKernel(t, mib)
	for _, lay := range []struct {
		name     string
		settings layout.Settings
	}{{"uefi", layout.Settings{}}, {"pvgrub", layout.Settings{PVGrubRoot: "hd0"}}, {"pvgrub", layout.Settings{PVGrubRoot: "hd00"}}} {
		first, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: lay.name, Size: 64 * mib, Kernel: kernel, Settings: lay.settings})
		if err != nil {
			t.Fatal(err)
		}
		// Over two seconds later (FAT timestamps have 2 s resolution, GRUB's
		// memdisk tar 1 s), in another directory, so no cache is shared.
		time.Sleep(2100 * time.Millisecond)
		second, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: lay.name, Size: 64 * mib, Kernel: kernel, Settings: lay.settings})
		if err != nil {
			t.Fatal(err)
		}
		if first.Digest != second.Digest {
			t.Errorf("%s %v: two builds of the same inputs differ: %s and %s", lay.name, lay.settings, first.Digest, second.Digest)
		}
		if lay.name != "uefi" {
			continue
		}
		// And a different size changes the bytes (and the derived ids).
		other, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: lay.name, Size: 65 * mib, Kernel: kernel})
		if err != nil {
			t.Fatal(err)
		}
		if other.Digest == first.Digest {
			t.Error("a different size gave the same bytes")
		}
	}
}

func TestSkipsUnchangedInputs(t *testing.T) {
	needGRUB(t)
	dir := t.TempDir()
	kernel := randomKernel(t, mib)
	withUnikernelReceipt(t, dir, kernel)
	log, logs := testLog()
	o := Options{BuildDir: dir, Layout: "uefi", Size: 64 * mib, Log: log}
	first, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(first.Path)

	logs.Reset()
	again, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(first.Path)
	if !strings.Contains(logs.String(), "skipped") || !st2.ModTime().Equal(st1.ModTime()) || again.Digest != first.Digest {
		t.Errorf("unchanged inputs: want a skip that leaves the image alone; log:\n%s", logs.String())
	}

	// A touched but unchanged image is digested and still reused.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(first.Path, later, later); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := Build(context.Background(), o); err != nil || !strings.Contains(logs.String(), "skipped") {
		t.Errorf("touched image with the recorded digest: want a skip (err %v); log:\n%s", err, logs.String())
	}

	// A damaged image is written again.
	f, err := os.OpenFile(first.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("damage"), 40*mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	logs.Reset()
	repaired, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "skipped") || repaired.Digest != first.Digest {
		t.Errorf("damaged image: want it rewritten with the original digest; log:\n%s", logs.String())
	}

	// FORCE rewrites, to the same bytes.
	logs.Reset()
	o.Force = true
	forced, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "skipped") || forced.Digest != first.Digest {
		t.Errorf("Force: want a rewrite to the same bytes; log:\n%s", logs.String())
	}

	// A new kernel changes the inputs.
	o.Force = false
	withUnikernelReceipt(t, dir, randomKernel(t, mib))
	logs.Reset()
	changed, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "skipped") || changed.Digest == first.Digest {
		t.Errorf("new kernel: want a new image; log:\n%s", logs.String())
	}
}

// TestReceiptFromBeforeTheDigestIsNotReused: an image written before the
// receipt named images by their digest (its receipt has a sha256 and no
// digest) is written again, so Bake never reads an empty digest.
func TestReceiptFromBeforeTheDigestIsNotReused(t *testing.T) {
	dir := t.TempDir()
	kernel := randomKernel(t, mib)
	withUnikernelReceipt(t, dir, kernel)
	log, logs := testLog()
	o := Options{BuildDir: dir, Layout: "pvgrub", Size: 64 * mib, Log: log}
	first, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var old map[string]any
	if _, err := receipt.Read(dir, ReceiptName, &old); err != nil {
		t.Fatal(err)
	}
	old["sha256"] = old["digest"]
	delete(old, "digest")
	if err := receipt.Write(dir, ReceiptName, old); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	again, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "skipped") || again.Digest != first.Digest {
		t.Errorf("a receipt without a digest: want the image written again with digest %s, got %q; log:\n%s", first.Digest, again.Digest, logs.String())
	}
}

// TestReceiptCarriesTheBuild: the build id and commit come from the
// Unikernel step's receipt, the step before; a kernel named directly has none.
func TestReceiptCarriesTheBuild(t *testing.T) {
	dir := t.TempDir()
	kernel := randomKernel(t, 4096)
	r, err := Build(context.Background(), Options{BuildDir: dir, Layout: "pvgrub", Size: 64 * mib, Kernel: kernel})
	if err != nil || r.BuildID != "" {
		t.Fatalf("named kernel: build id %q, err %v; want empty", r.BuildID, err)
	}
	sum, err := receipt.HashFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	from := func(id string) {
		if err := receipt.Write(dir, unikernel.ReceiptName, unikernel.Receipt{Kernel: kernel, KernelSHA256: sum, Target: "xen", BuildID: id, Commit: "c-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{BuildDir: dir, Layout: "pvgrub", Size: 64 * mib}
	from("b1")
	r, err = Build(context.Background(), o)
	if err != nil || r.BuildID != "b1" || r.Commit != "c-b1" {
		t.Fatalf("build %q commit %q, err %v; want b1 and c-b1 from unikernel.json", r.BuildID, r.Commit, err)
	}
	back, err := ReadReceipt(dir)
	if err != nil || back.BuildID != "b1" || back.Digest != r.Digest || back.Boot != r.Boot {
		t.Fatalf("receipt on disk %+v (err %v); want what Build returned", back, err)
	}
	from("b2") // the same kernel goes out with another build: the image is reused, the receipt follows
	r, err = Build(context.Background(), o)
	if err != nil || r.BuildID != "b2" || r.Commit != "c-b2" || r.Digest != back.Digest {
		t.Fatalf("build %q commit %q sha %s, err %v; want b2, c-b2 and the same image", r.BuildID, r.Commit, r.Digest, err)
	}
}

func TestKernelTooLarge(t *testing.T) {
	dir := t.TempDir()
	// Larger than the image: refused before any work, without reading it.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 70*mib); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), Options{BuildDir: dir, Layout: "pvgrub", Size: 64 * mib, Kernel: big})
	if err == nil || !strings.Contains(err.Error(), "does not fit") || !strings.Contains(err.Error(), "image_size") {
		t.Fatalf("err %v; want one saying the kernel does not fit and to raise image_size", err)
	}

	// Smaller than the image, larger than its filesystem: found by the layout.
	needGRUB(t)
	tight := randomKernel(t, 63*mib)
	_, err = Build(context.Background(), Options{BuildDir: dir, Layout: "uefi", Size: 64 * mib, Kernel: tight})
	if err == nil || !errors.Is(err, layout.ErrNoSpace) || !strings.Contains(err.Error(), "image_size") {
		t.Fatalf("err %v; want ErrNoSpace and advice on image_size", err)
	}
	assertNoImage(t, dir)
}

// A failed build leaves no image, no temporary file, and keeps the last good image.
func TestFailureLeavesNoHalfImage(t *testing.T) {
	needGRUB(t)
	dir := t.TempDir()
	good, err := Build(context.Background(), Options{BuildDir: dir, Layout: "uefi", Size: 64 * mib, Kernel: randomKernel(t, mib)})
	if err != nil {
		t.Fatal(err)
	}
	goodSum, err := receipt.HashFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), Options{BuildDir: dir, Layout: "uefi", Size: 64 * mib, Kernel: randomKernel(t, 63*mib)})
	if !errors.Is(err, layout.ErrNoSpace) {
		t.Fatalf("err %v; want ErrNoSpace", err)
	}
	sum, err := receipt.HashFile(good.Path)
	if err != nil || sum != goodSum {
		t.Errorf("the last good image changed (sha256 %s, err %v)", sum, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".disk-") {
			t.Errorf("temporary image %s left behind", e.Name())
		}
	}

	// A cancelled build also leaves nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir2 := t.TempDir()
	if _, err := Build(ctx, Options{BuildDir: dir2, Layout: "uefi", Size: 64 * mib, Kernel: randomKernel(t, mib)}); err == nil {
		t.Fatal("a cancelled build succeeded")
	}
	assertNoImage(t, dir2)
}

func assertNoImage(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "disk-") {
			t.Errorf("%s left in %s after a failed build", e.Name(), dir)
		}
	}
}

func TestUnknownLayout(t *testing.T) {
	_, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "bios", Kernel: randomKernel(t, 4096)})
	if err == nil || !strings.Contains(err.Error(), `unknown boot layout "bios"`) || !strings.Contains(err.Error(), "pvgrub, uefi") || !strings.Contains(err.Error(), "deploy.boot") {
		t.Fatalf("err %v; want the layouts and the setting to change", err)
	}
	_, err = Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "pvgrub", Kernel: randomKernel(t, 4096), Settings: layout.Settings{PVGrubRoot: "hd1"}})
	if err == nil || !strings.Contains(err.Error(), "hd0 or hd00") {
		t.Fatalf("err %v; want pvgrub_root's allowed values", err)
	}
}

func TestMissingKernel(t *testing.T) {
	dir := t.TempDir()
	_, err := Build(context.Background(), Options{BuildDir: dir, Layout: "pvgrub"})
	if err == nil || !strings.Contains(err.Error(), "mage unikernel") {
		t.Fatalf("no unikernel receipt: err %v; want advice to run mage unikernel", err)
	}
	withUnikernelReceipt(t, dir, randomKernel(t, 4096))
	var r struct {
		Kernel string `json:"kernel"`
	}
	if _, err := receipt.Read(dir, "unikernel", &r); err != nil {
		t.Fatal(err)
	}
	os.Remove(r.Kernel)
	_, err = Build(context.Background(), Options{BuildDir: dir, Layout: "pvgrub"})
	if err == nil || !strings.Contains(err.Error(), "is missing") || !strings.Contains(err.Error(), "UNIKERNEL") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kernel gone: err %v; want it named as missing, with the fix", err)
	}
}

// TestUnixKernelIsRefused: a kernel built with mirage_target: unix runs on
// the build machine; no layout can boot it.
func TestUnixKernelIsRefused(t *testing.T) {
	dir := t.TempDir()
	kernel := randomKernel(t, 4096)
	sum, _ := receipt.HashFile(kernel)
	if err := receipt.Write(dir, unikernel.ReceiptName, unikernel.Receipt{Kernel: kernel, KernelSHA256: sum, Target: unikernel.UnixTarget}); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), Options{BuildDir: dir, Layout: "pvgrub"})
	if err == nil || !strings.Contains(err.Error(), "mirage_target: unix") || !strings.Contains(err.Error(), kernel+" --port 8080") {
		t.Fatalf("err %v; want the unix kernel refused, saying how to run it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "image.json")); !os.IsNotExist(err) {
		t.Errorf("a receipt was written for a unix kernel")
	}
}

func TestMissingGrubMkstandalone(t *testing.T) {
	t.Setenv("PATH", "")
	_, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "uefi", Kernel: randomKernel(t, 4096)})
	if !errors.Is(err, grubefi.ErrNotInstalled) || !strings.Contains(err.Error(), "grub-mkstandalone not found") || !strings.Contains(err.Error(), "apt-get install grub-efi-amd64-bin") {
		t.Fatalf("err %v; want grub-mkstandalone named with the package to install", err)
	}
	// pvgrub needs no GRUB here: it still builds.
	if _, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "pvgrub", Size: 64 * mib, Kernel: randomKernel(t, 4096)}); err != nil {
		t.Fatalf("pvgrub without GRUB installed: %v", err)
	}
}

func TestImageSizeValidated(t *testing.T) {
	for _, size := range []int64{32 * mib, 64*mib + 512} {
		_, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "pvgrub", Size: size, Kernel: randomKernel(t, 4096)})
		if err == nil || !strings.Contains(err.Error(), "image_size") {
			t.Errorf("size %d: err %v; want it refused naming image_size", size, err)
		}
	}
}

// TestReceiptNamesTheImageByItsDigest: the receipt's digest is the
// definition (magefiles/internal/sparse) applied to every byte of the
// written image, read here in full, and data_bytes counts what the
// filesystem allocated, not the image's size.
func TestReceiptNamesTheImageByItsDigest(t *testing.T) {
	r, err := Build(context.Background(), Options{BuildDir: t.TempDir(), Layout: "pvgrub", Size: 64 * mib, Kernel: randomKernel(t, 3*mib)})
	if err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(r.Path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte("blog image digest v1\n"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(whole))))
	const block = 512 << 10
	for i := 0; i*block < len(whole); i++ {
		blk := whole[i*block : min(len(whole), (i+1)*block)]
		if !bytes.Equal(blk, make([]byte, len(blk))) {
			sum := sha256.Sum256(append(blk, make([]byte, block-len(blk))...))
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
			h.Write(sum[:])
		}
	}
	if want := hex.EncodeToString(h.Sum(nil)); r.Digest != want {
		t.Errorf("receipt digest %s; the image's bytes give %s", r.Digest, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(r.Path, &st); err != nil {
		t.Fatal(err)
	}
	if r.DataBytes < 3*mib || r.DataBytes > st.Blocks*512+64*1024 {
		t.Errorf("data_bytes %d; want the kernel and the filesystem (%d bytes allocated)", r.DataBytes, st.Blocks*512)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
