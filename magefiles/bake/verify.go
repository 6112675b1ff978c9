package bake

import (
	"fmt"
	"os"
	"regexp"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// verifiedName is the cache of the last image whose sha256 was checked.
const verifiedName = "bake-verified"

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// verified identifies a file's content by what changes whenever it is
// written: a rewrite in place changes mtime and ctime, a replacement the inode.
type verified struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Inode   uint64 `json:"inode"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	SHA256  string `json:"sha256"`
}

func identity(path string, fi os.FileInfo) verified {
	v := verified{Path: path, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		v.Inode = st.Ino
		v.CtimeNs = time.Unix(st.Ctim.Unix()).UnixNano()
	}
	return v
}

// verifyImage checks that the image file is the one the receipt describes,
// before anything is created in AWS: the sha256 names the AMI, so uploading
// other bytes under it would poison every later run. Hashing a whole image
// takes a while, so a successful check is remembered by the file's identity
// (size, inode, mtime, ctime) in _build/bake-verified.json.
func verifyImage(img *image.Receipt, buildDir string, log *logrus.Entry) error {
	fix := "run `mage image` again"
	if !sha256RE.MatchString(img.SHA256) {
		return fmt.Errorf("bake: the image receipt's sha256 %q is not 64 hex digits; %s", img.SHA256, fix)
	}
	if img.SizeBytes <= 0 {
		return fmt.Errorf("bake: the image receipt gives size %d; %s", img.SizeBytes, fix)
	}
	fi, err := os.Stat(img.Path)
	if err != nil {
		return fmt.Errorf("bake: the disk image is missing: %w; %s", err, fix)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("bake: %s is not a regular file; %s", img.Path, fix)
	}
	if fi.Size() != img.SizeBytes {
		return fmt.Errorf("bake: %s is %d bytes but its receipt says %d: the image changed after it was built; %s", img.Path, fi.Size(), img.SizeBytes, fix)
	}
	id := identity(img.Path, fi)
	var last verified
	if ok, _ := receipt.Read(buildDir, verifiedName, &last); ok {
		cached := last
		cached.SHA256 = ""
		if cached == id && last.SHA256 == img.SHA256 {
			return nil
		}
	}
	start := time.Now()
	sum, err := hashSparse(img.Path, img.SizeBytes)
	if err != nil {
		return fmt.Errorf("bake: hashing %s: %w", img.Path, err)
	}
	if sum != img.SHA256 {
		return fmt.Errorf("bake: %s has sha256 %s but its receipt says %s: the image changed after it was built; %s", img.Path, fleet.Short(sum), fleet.Short(img.SHA256), fix)
	}
	log.Debugf("image sha256 verified in %s", time.Since(start).Round(time.Millisecond))
	id.SHA256 = sum
	if err := receipt.Write(buildDir, verifiedName, id); err != nil {
		log.WithError(err).Warn("could not remember the verified image; the next run hashes it again")
	}
	return nil
}

// hashSparse hashes the image without reading its holes.
func hashSparse(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, _, err := sparse.Hash(f, size)
	return sum, err
}
