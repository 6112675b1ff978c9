package bake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// testImage is a sparse image file written for a test, with what it holds.
type testImage struct {
	path string
	size int64
	data map[int64][]byte // block index → the block's content, for every non-zero block
}

// writeSparse makes a sparse file of size bytes holding the given writes
// (offset → bytes); everything else is a hole. What each block holds is
// worked out from the writes, not read back through the code under test.
func writeSparse(t testing.TB, path string, size int64, writes map[int64][]byte) *testImage {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	img := &testImage{path: path, size: size, data: map[int64][]byte{}}
	for off, b := range writes {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		for i := off / blockSize; i*blockSize < off+int64(len(b)); i++ {
			blk, ok := img.data[i]
			if !ok {
				blk = make([]byte, blockSize)
				img.data[i] = blk
			}
			lo := max(off, i*blockSize)
			hi := min(off+int64(len(b)), (i+1)*blockSize)
			copy(blk[lo-i*blockSize:], b[lo-off:hi-off])
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i, blk := range img.data {
		if sparse.IsZero(blk) {
			delete(img.data, i)
		}
	}
	return img
}

// digest is the image digest's definition (magefiles/internal/sparse)
// applied to the blocks in memory, apart from the code under test.
func (img *testImage) digest() string {
	h := sha256.New()
	h.Write([]byte("blog image digest v1\n"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(img.size)))
	for _, i := range slices.Sorted(maps.Keys(img.data)) {
		sum := sha256.Sum256(img.data[i])
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// randomBytes is n bytes of seeded noise: real data, incompressible.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed+1)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// standardImage is a 2 GiB-volume-sized test image exercising the edges:
// data straddling a block boundary, an explicitly written zero block (an
// allocated extent that must be read and skipped), scattered blocks, and
// data in the last, partial block (the size is not a block multiple).
func standardImage(t testing.TB, dir string) *testImage {
	const size = 64<<20 + 4096 // 64 MiB and a bit: two GiB-rounding surprises in one
	return writeSparse(t, filepath.Join(dir, "disk.img"), size, map[int64][]byte{
		0:                          randomBytes(1, 4096),           // boot sector area
		blockSize - 100:            randomBytes(2, 200),            // straddles blocks 0 and 1
		5 * blockSize:              make([]byte, blockSize),        // written zeros: allocated, not sent
		10 * blockSize:             randomBytes(3, 3*blockSize+17), // blocks 10..13
		100 * blockSize:            randomBytes(4, blockSize),      //
		size - 4096 + 10:           randomBytes(5, 100),            // the partial last block
		60<<20 + blockSize/2 + 100: randomBytes(6, 1),              // one byte
	})
}

// setup writes an image and its receipt under a fresh repository root.
func setup(t testing.TB, boot image.BootSettings, layout string) (*config.Config, *testImage, *image.Receipt) {
	t.Helper()
	root := t.TempDir()
	img := standardImage(t, root)
	return setupWith(t, root, img, boot, layout)
}

func setupWith(t testing.TB, root string, img *testImage, boot image.BootSettings, layout string) (*config.Config, *testImage, *image.Receipt) {
	t.Helper()
	c := &config.Config{Root: root, Site: "test-site", UploadParallel: 64, ImageSize: img.size}
	r := &image.Receipt{Path: img.path, Layout: layout, SizeBytes: img.size, Digest: img.digest(), BuildID: "build-1", Commit: "abc123", Boot: boot}
	if err := receipt.Write(c.BuildDir(), image.ReceiptName, r); err != nil {
		t.Fatal(err)
	}
	return c, img, r
}

var uefiBoot = image.BootSettings{VirtualizationType: "hvm", BootMode: "uefi", EnaSupport: true, RootDeviceName: "/dev/xvda"}
var pvgrubBoot = image.BootSettings{VirtualizationType: "paravirtual", RootDeviceName: "/dev/sda1", NeedsKernelID: true}

// testLog captures the log entries of a run.
func testLog() (*logrus.Entry, logHook) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	hook := test.NewLocal(l)
	return l.WithField("step", "bake"), logHook{hook}
}

// logHook finds log lines by their start.
type logHook struct{ *test.Hook }

func (h logHook) find(prefix string) string {
	for _, e := range h.AllEntries() {
		if strings.HasPrefix(e.Message, prefix) {
			return e.Message
		}
	}
	return ""
}

func (h logHook) logged(prefix string) bool { return h.find(prefix) != "" }

// fastOptions runs the real recipe with test-sized waits.
func fastOptions(c *config.Config, log *logrus.Entry) Options {
	return Options{Config: c, Log: log, WaitDelay: time.Millisecond, RetryBase: 2 * time.Millisecond, ProgressEvery: 20 * time.Millisecond}
}

// expectedAggregate computes the LINEAR checksum from the image's data
// blocks, independently of the code under test.
func expectedAggregate(img *testImage) string {
	var idx []int64
	for i := range img.data {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	h := sha256.New()
	for _, i := range idx {
		s := sha256.Sum256(img.data[i])
		h.Write(s[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
