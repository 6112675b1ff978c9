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
