package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
)

// benchLatency is added to every request, to model the network between the
// build machine and AWS: with none, a loopback emulator rewards any design.
const benchLatency = 5 * time.Millisecond

// BenchmarkUpload1GiB bakes a 1 GiB sparse image holding 32 MiB of data
// through the emulator with benchLatency per request, against a naive
// upload of the same image: every one of its 2048 blocks, one at a time,
// reading everything. Run both in one go (3 iterations each, about two
// minutes, most of it the naive route):
//
//	go test -run '^$' -bench Upload1GiB -benchtime 3x ./magefiles/bake/
func BenchmarkUpload1GiB(b *testing.B) {
	h := awsharness.Start(b, awsharness.Options{PendingDescribes: -1})
	h.Faults.Add(awsharness.Fault{Kind: awsharness.Latency, Delay: benchLatency, Rate: 1})
	root := b.TempDir()
	img := benchImage(b, root)
	c, _, r := setupWith(b, root, img, uefiBoot, "uefi")
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetOutput(io.Discard)
	// The image's digest check is remembered by file identity, as on any
	// rerun; do it once here so both routes measure the upload.
	if err := verifyImage(r, c.BuildDir(), log); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// Warm the emulator once (its heap, its connections): the route that
	// runs first would otherwise pay for its start-up alone.
	c.Site = awsharness.UniqueName("warmup")
	if _, err := Bake(ctx, Options{Config: c, Log: log, WaitDelay: time.Millisecond}); err != nil {
		b.Fatal(err)
	}

	b.Run("bake", func(b *testing.B) {
		var blocks int64
		for i := 0; b.Loop(); i++ {
			c.Site = awsharness.UniqueName(fmt.Sprintf("bench%d", i)) // a new site each time: nothing to reuse
			got, err := Bake(ctx, Options{Config: c, Log: log, WaitDelay: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			blocks = got.BlocksUploaded
		}
		b.ReportMetric(float64(blocks), "blocks/op")
	})

	b.Run("naive", func(b *testing.B) {
		client := h.EBS(b)
		var blocks int64
		for b.Loop() {
			n, err := naiveUpload(ctx, client, img.path, img.size)
			if err != nil {
				b.Fatal(err)
			}
			blocks = n
		}
		b.ReportMetric(float64(blocks), "blocks/op")
	})
}

// benchImage is 1 GiB holding 32 MiB of data the way a disk image does: a
// contiguous run (partition table, boot partition, kernel) and the rest
// scattered through the filesystem.
func benchImage(b *testing.B, dir string) *testImage {
	writes := map[int64][]byte{1 << 20: randomBytes(1, 16*blockSize)} // 8 MiB from 1 MiB on
	for i := range int64(48) {
		writes[(40+i*40)*blockSize] = randomBytes(uint64(i)+2, blockSize)
	}
	img := writeSparse(b, filepath.Join(dir, "disk.img"), 1<<30, writes)
	if len(img.data) != 64 {
		b.Fatalf("bench image holds %d data blocks, want 64", len(img.data))
	}
	return img
}

// naiveUpload is the straightforward route: read every block in order and
// send it, one request at a time, with the SDK's default retries.
func naiveUpload(ctx context.Context, c *ebs.Client, path string, size int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{
		VolumeSize: aws.Int64((size + 1<<30 - 1) >> 30), ClientToken: aws.String(newNonce()), Timeout: aws.Int32(60),
	})
	if err != nil {
		return 0, err
	}
	buf := make([]byte, blockSize)
	agg := sha256.New()
	n := blocksIn(size)
	for i := range n {
		if _, err := readBlock(f, size, i, buf); err != nil {
			return 0, err
		}
		sum := sha256.Sum256(buf)
		agg.Write(sum[:])
		if _, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
			SnapshotId: out.SnapshotId, BlockIndex: aws.Int32(int32(i)), BlockData: bytes.NewReader(buf),
			DataLength: aws.Int32(blockSize), Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		}); err != nil {
			return 0, err
		}
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(int32(n)),
		Checksum:          aws.String(base64.StdEncoding.EncodeToString(agg.Sum(nil))),
		ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256, ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
	})
	return n, err
}
