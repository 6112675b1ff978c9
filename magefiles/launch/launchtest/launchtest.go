// Package launchtest holds what the Launch and Swap tests share: a
// configuration for a unique site, and baked AMIs made straight through the
// harness (a one-block EBS snapshot and RegisterImage, tagged as Bake tags
// them), which is all Launch reads of a bake. Test-only.
package launchtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// Config is a configuration for a site no other test shares, rooted in a
// temporary directory, with health_url aimed at the build server.
func Config(t testing.TB, domain string, builds *awstest.BuildServer) *config.Config {
	t.Helper()
	c := &config.Config{
		Root:          t.TempDir(),
		Region:        awstest.Region,
		Site:          awstest.UniqueName("site"),
		Domain:        domain,
		InstanceType:  "t3.micro",
		Boot:          config.BootUEFI,
		TTL:           60,
		HealthURL:     config.DefaultHealthURL,
		HealthTimeout: 5 * time.Second,
		KeepImages:    3,
		Source:        map[string]string{},
	}
	if builds != nil {
		c.HealthURL = builds.HealthURL()
	}
	if err := os.MkdirAll(c.BuildDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// Build is one baked build of the site.
type Build struct {
	BuildID     string
	ImageSHA256 string
	ImageID     string
	SnapshotID  string
}

// Bake makes an AMI of build for the site as Bake would (snapshot and AMI
// tagged with site, image sha256, build id and commit) and writes
// _build/bake.json for it.
func Bake(t testing.TB, h *awstest.Harness, c *config.Config, buildID string) Build {
	t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256([]byte(c.Site + "/" + buildID))
	b := Build{BuildID: buildID, ImageSHA256: fmt.Sprintf("%x", sum)}
	tags := map[string]string{
		launch.TagSite: c.Site, launch.TagImageSHA256: b.ImageSHA256,
		launch.TagBuildID: buildID, launch.TagCommit: "c0ffee" + buildID,
	}

	e := h.EBS(t)
	var ebsTags []ebstypes.Tag
	var ec2Tags []types.Tag
	for k, v := range tags {
		ebsTags = append(ebsTags, ebstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		ec2Tags = append(ec2Tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	start, err := e.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Tags: ebsTags, Timeout: aws.Int32(60)})
	if err != nil {
		t.Fatalf("launchtest: StartSnapshot: %v", err)
	}
	b.SnapshotID = aws.ToString(start.SnapshotId)
	block := bytes.Repeat(sum[:], 512<<10/len(sum))
	bsum := sha256.Sum256(block)
	if _, err := e.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId: start.SnapshotId, BlockIndex: aws.Int32(0), BlockData: bytes.NewReader(block), DataLength: aws.Int32(int32(len(block))),
		Checksum: aws.String(base64.StdEncoding.EncodeToString(bsum[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
	}); err != nil {
		t.Fatalf("launchtest: PutSnapshotBlock: %v", err)
	}
	if _, err := e.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: start.SnapshotId, ChangedBlocksCount: aws.Int32(1)}); err != nil {
		t.Fatalf("launchtest: CompleteSnapshot: %v", err)
	}
	x := h.EC2(t)
	fast := func(lo, hi *time.Duration) { *lo, *hi = 5*time.Millisecond, 20*time.Millisecond }
	if err := ec2.NewSnapshotCompletedWaiter(x, func(o *ec2.SnapshotCompletedWaiterOptions) { fast(&o.MinDelay, &o.MaxDelay) }).
		Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{b.SnapshotID}}, time.Minute); err != nil {
		t.Fatalf("launchtest: waiting for snapshot: %v", err)
	}
	reg, err := x.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               aws.String(c.Site + "-" + b.ImageSHA256[:12]),
		Architecture:       types.ArchitectureValuesX8664,
		RootDeviceName:     aws.String("/dev/xvda"),
		VirtualizationType: aws.String("hvm"),
		BootMode:           types.BootModeValuesUefi,
		EnaSupport:         aws.Bool(true),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{
			SnapshotId: aws.String(b.SnapshotID), VolumeType: types.VolumeTypeGp3, DeleteOnTermination: aws.Bool(true),
		}}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: ec2Tags}},
	})
	if err != nil {
		t.Fatalf("launchtest: RegisterImage: %v", err)
	}
	b.ImageID = aws.ToString(reg.ImageId)
	if err := ec2.NewImageAvailableWaiter(x, func(o *ec2.ImageAvailableWaiterOptions) { fast(&o.MinDelay, &o.MaxDelay) }).
		Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{b.ImageID}}, time.Minute); err != nil {
		t.Fatalf("launchtest: waiting for AMI: %v", err)
	}
	time.Sleep(2 * time.Millisecond) // AMI creation dates have millisecond resolution: keep bakes ordered
	WriteBakeReceipt(t, c, b)
	return b
}

// WriteBakeReceipt writes _build/bake.json as Bake does for build b.
func WriteBakeReceipt(t testing.TB, c *config.Config, b Build) {
	t.Helper()
	if err := receipt.Write(c.BuildDir(), "bake", map[string]any{
		"image_id": b.ImageID, "snapshot_id": b.SnapshotID, "image_sha256": b.ImageSHA256, "reused": false,
	}); err != nil {
		t.Fatal(err)
	}
}

// RemoveReceipts deletes _build/*.json: state lives in AWS, and a run on a
// fresh machine must still find it.
func RemoveReceipts(t testing.TB, c *config.Config, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Remove(filepath.Join(c.BuildDir(), n+".json")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// Leftovers counts what of the site still exists in the emulator:
// instances not terminated, AMIs, snapshots.
func Leftovers(t testing.TB, h *awstest.Harness, site string) (instances, amis, snapshots []string) {
	t.Helper()
	insts, err := h.Shim.InstancesTagged(context.Background(), launch.TagSite, site)
	if err != nil {
		t.Fatal(err)
	}
	return insts, h.Shim.ImagesTagged(launch.TagSite, site), h.Shim.SnapshotsTagged(launch.TagSite, site)
}
