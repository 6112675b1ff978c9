package awsharness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
)

// A new snapshot is "not found" for its first calls (coldsnap #43, #56), and
// CompleteSnapshot is not idempotent (EBS direct APIs reference).
func TestNewSnapshotIsNotFoundAtFirstAndCompletesOnce(t *testing.T) {
	h := Start(t, Options{SnapshotNotFoundCalls: 2})
	ctx := context.Background()
	c := h.EBS(t)
	out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ClientToken: aws.String(UniqueName("tok")), Timeout: aws.Int32(60)})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{1}, blockBytes)
	sum := sha256.Sum256(data)
	put := func() error {
		_, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
			SnapshotId: out.SnapshotId, BlockIndex: aws.Int32(0), BlockData: bytes.NewReader(data), DataLength: aws.Int32(blockBytes),
			Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		}, func(o *ebs.Options) { o.Retryer = aws.NopRetryer{} })
		return err
	}
	var codes []string
	for range 3 {
		codes = append(codes, apiCode(put()))
	}
	if codes[0] != "ResourceNotFoundException" || codes[1] != "ResourceNotFoundException" || codes[2] != "" {
		t.Fatalf("the first PutSnapshotBlock calls answered %q, want not found twice, then success", codes)
	}
	agg := sha256.Sum256(sum[:])
	complete := &ebs.CompleteSnapshotInput{SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(1),
		Checksum: aws.String(base64.StdEncoding.EncodeToString(agg[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear}
	if _, err := c.CompleteSnapshot(ctx, complete); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteSnapshot(ctx, complete); apiCode(err) != "ValidationException" {
		t.Fatalf("completing again: %v, want ValidationException", err)
	}
	if err := put(); apiCode(err) != "ValidationException" {
		t.Fatalf("writing after completion: %v, want ValidationException", err)
	}
}

// CompleteSnapshot answers the snapshot's status ("completed | pending |
// error", EBS direct APIs reference): pending while EC2 shows it pending,
// completed when it is, error when the aggregate checksum is wrong.
func TestCompleteSnapshotAnswersTheSnapshotsStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending int
		badSum  bool
		want    ebstypes.Status
	}{
		{"processing", 1, false, ebstypes.StatusPending},
		{"done at once", -1, false, ebstypes.StatusCompleted},
		{"bad aggregate", -1, true, ebstypes.StatusError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Start(t, Options{PendingDescribes: tc.pending, SnapshotNotFoundCalls: -1})
			ctx := context.Background()
			c := h.EBS(t)
			out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(60)})
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte{2}, blockBytes)
			sum := sha256.Sum256(data)
			if _, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
				SnapshotId: out.SnapshotId, BlockIndex: aws.Int32(0), BlockData: bytes.NewReader(data), DataLength: aws.Int32(blockBytes),
				Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
			}); err != nil {
				t.Fatal(err)
			}
			agg := sha256.Sum256(sum[:])
			if tc.badSum {
				agg[0] ^= 1
			}
			done, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(1),
				Checksum: aws.String(base64.StdEncoding.EncodeToString(agg[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
				ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear})
			if err != nil {
				t.Fatal(err)
			}
			if done.Status != tc.want {
				t.Fatalf("CompleteSnapshot answered %q, want %q", done.Status, tc.want)
			}
		})
	}
}
