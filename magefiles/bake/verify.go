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

// verifiedName is the cache of the last image whose digest was checked.
const verifiedName = "bake-verified"

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// verified identifies a file's content by what changes whenever it is
// written: a rewrite in place changes mtime and ctime, a replacement the inode.
type verified struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Inode   uint64 `json:"inode"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Digest  string `json:"digest"`
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
// before anything is created in AWS: the digest names the AMI, so uploading
// other bytes under it would poison every later run. The digest reads only
// the image's data blocks; a successful check is still remembered by the
// file's identity (size, inode, mtime, ctime) in _build/bake-verified.json.
func verifyImage(img *image.Receipt, buildDir string, log *logrus.Entry) error {
	fix := "run `mage image` again"
	if !digestRE.MatchString(img.Digest) {
		return fmt.Errorf("bake: the image receipt's digest %q is not 64 hex digits; %s", img.Digest, fix)
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
		cached.Digest = ""
		if cached == id && last.Digest == img.Digest {
			return nil
		}
	}
	start := time.Now()
	d, err := sparse.DigestPath(img.Path, img.SizeBytes)
	if err != nil {
		return fmt.Errorf("bake: computing the digest of %s: %w; %s", img.Path, err, fix)
	}
	if d.Hex != img.Digest {
		return fmt.Errorf("bake: %s has digest %s but its receipt says %s: the image changed after it was built; %s", img.Path, fleet.Short(d.Hex), fleet.Short(img.Digest), fix)
	}
	log.Debugf("image digest verified in %s", time.Since(start).Round(time.Millisecond))
	id.Digest = d.Hex
	if err := receipt.Write(buildDir, verifiedName, id); err != nil {
		log.WithError(err).Warn("could not remember the verified image; the next run hashes it again")
	}
	return nil
}
