package awsharness

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// What a booted instance serves is read from its AMI, as the instance's
// disk would hold it: the AMI's root snapshot is read back block by block
// from the emulator and searched the way the image boots. An AMI that holds
// another build than its tags say serves that other build, so a gate that
// trusted tags instead of the instance would be caught.
//
// Two kinds of image are understood:
//   - test images (fleettest.WriteImage): a block holding TestImageMarker;
//   - host images (magefiles/image/layout/host): GPT, the EFI System
//     Partition's /boot/initrd (gzip'd newc cpio), and in it the site's
//     srv/site/build-id.txt, or the build-id meta tag in the unikernel.

// TestImageMarker starts the one data block of a test image; the build id
// follows it up to a newline.
const TestImageMarker = "BLOG-TEST-IMAGE build-id="

// TestImageData is the data block a test image of build holds.
func TestImageData(build string) []byte {
	return []byte(TestImageMarker + build + "\n")
}

// images caches what each AMI serves: AMIs never change.
type imageCache struct {
	mu     sync.Mutex
	builds map[string]string
}

// ServedBuild is the build instance id serves: its AMI's content. An error
// says why it serves nothing (not running, no such AMI, an image that does
// not boot to a server).
func (h *Harness) ServedBuild(ctx context.Context, id string) (string, error) {
	state, image, found, err := h.Model.InstanceImage(ctx, id)
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", fmt.Errorf("no instance %s", id)
	case state != "running":
		return "", fmt.Errorf("instance %s is %s", id, state)
	}
	h.images.mu.Lock()
	build, ok := h.images.builds[image]
	h.images.mu.Unlock()
	if ok {
		return build, nil
	}
	build, err = h.bootImage(ctx, image)
	if err != nil {
		return "", fmt.Errorf("instance %s (AMI %s) serves nothing: %w", id, image, err)
	}
	h.images.mu.Lock()
	h.images.builds[image] = build
	h.images.mu.Unlock()
	return build, nil
}

// bootImage reads the AMI's root snapshot and finds the build it serves.
func (h *Harness) bootImage(ctx context.Context, image string) (string, error) {
	img, ok := h.Model.Image(image)
	if !ok {
		return "", errors.New("the AMI does not exist")
	}
	blocks, size, err := h.Model.SnapshotData(ctx, img.SnapshotID)
	if err != nil {
		return "", err
	}
	for _, b := range blocks {
		if rest, ok := bytes.CutPrefix(b, []byte(TestImageMarker)); ok {
			build, _, _ := bytes.Cut(rest, []byte("\n"))
			return string(build), nil
		}
	}
	return hostImageBuild(blocks, size)
}

// hostImageBuild assembles the disk sparsely and reads the host layout.
func hostImageBuild(blocks map[int32][]byte, size int64) (string, error) {
	dir, err := os.MkdirTemp("", "awsharness-boot-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.img")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	for idx, b := range blocks {
		if _, err := f.WriteAt(b, int64(idx)*int64(len(b))); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	img, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer img.Close()
	b := file.New(img, true)
	table, err := gpt.Read(b, 512, 512)
	if err != nil {
		return "", fmt.Errorf("no GPT: %w", err)
	}
	parts := table.GetPartitions()
	if len(parts) == 0 {
		return "", errors.New("the GPT has no partition")
	}
	fs, err := fat32.Read(b, parts[0].GetSize(), parts[0].GetStart(), 512)
	if err != nil {
		return "", fmt.Errorf("partition 1 is not FAT32: %w", err)
	}
	initrd, err := fs.OpenFile("/boot/initrd", os.O_RDONLY)
	if err != nil {
		return "", fmt.Errorf("no /boot/initrd on the ESP: %w", err)
	}
	zr, err := gzip.NewReader(initrd)
	if err != nil {
		return "", fmt.Errorf("/boot/initrd is not gzip: %w", err)
	}
	files, err := readCPIO(zr)
	if err != nil {
		return "", err
	}
	if b, ok := files["srv/site/build-id.txt"]; ok {
		return strings.TrimSpace(string(b)), nil
	}
	for name, b := range files {
		if strings.HasSuffix(name, ".spt") {
			if m := metaBuildID.FindSubmatch(b); m != nil {
				return string(m[1]), nil
			}
		}
	}
	return "", errors.New("the initramfs has neither srv/site/build-id.txt nor a unikernel carrying a build-id meta tag")
}

var metaBuildID = regexp.MustCompile(`<meta name="build-id" content="([^"]+)"`)

// readCPIO reads the regular files of a newc ("070701") archive.
func readCPIO(r io.Reader) (map[string][]byte, error) {
	files := map[string][]byte{}
	var off int64
	read := func(n int64) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		off += n
		return b, err
	}
	pad := func() error {
		if p := (4 - off%4) % 4; p > 0 {
			_, err := read(p)
			return err
		}
		return nil
	}
	for {
		hdr, err := read(110)
		if err != nil {
			return nil, fmt.Errorf("cpio header at %d: %w", off, err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("cpio header at %d: magic %q, want 070701", off-110, hdr[:6])
		}
		field := func(i int) int64 {
			v, _ := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			return int64(v)
		}
		mode, fileSize, nameSize := field(1), field(6), field(11)
		name, err := read(nameSize)
		if err != nil {
			return nil, err
		}
		if err := pad(); err != nil {
			return nil, err
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return files, nil
		}
		data, err := read(fileSize)
		if err != nil {
			return nil, err
		}
		if err := pad(); err != nil {
			return nil, err
		}
		if mode&0o170000 == 0o100000 {
			files[strings.TrimPrefix(n, "./")] = data
		}
	}
}
