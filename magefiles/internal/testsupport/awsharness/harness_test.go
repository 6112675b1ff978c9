package awsharness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// blockBytes is an EBS snapshot block: 512 KiB.
const blockBytes = 512 << 10

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// snapshotWithBlock starts an EBS snapshot through the SDK, writes one block and completes it.
func snapshotWithBlock(t *testing.T, h *Harness, site string) (string, [sha256.Size]byte) {
	t.Helper()
	ctx := context.Background()
	c := h.EBS(t)
	out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{
		VolumeSize: aws.Int64(1), ClientToken: aws.String(UniqueName("tok")), Timeout: aws.Int32(60),
		Tags: []ebstypes.Tag{{Key: aws.String("site"), Value: aws.String(site)}},
	})
	if err != nil {
		t.Fatalf("StartSnapshot: %v", err)
	}
	id := aws.ToString(out.SnapshotId)
	data := bytes.Repeat([]byte{7}, blockBytes)
	sum := sha256.Sum256(data)
	// A new snapshot is "not found" for a few calls: retried, as Bake does.
	untilFound(t, "PutSnapshotBlock", func() error {
		_, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
			SnapshotId: out.SnapshotId, BlockIndex: aws.Int32(3), BlockData: bytes.NewReader(data),
			DataLength: aws.Int32(blockBytes), Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		})
		return err
	})
	agg := sha256.Sum256(sum[:])
	untilFound(t, "CompleteSnapshot", func() error {
		_, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
			SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(1),
			Checksum: aws.String(base64.StdEncoding.EncodeToString(agg[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
			ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
		})
		return err
	})
	return id, sum
}

// untilFound retries call while it answers ResourceNotFoundException, a
// few dozen times at most.
func untilFound(t *testing.T, what string, call func() error) {
	t.Helper()
	for try := 0; ; try++ {
		err := call()
		if apiCode(err) == "ResourceNotFoundException" && try < 30 {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
}

func TestEBSThroughShim(t *testing.T) {
	h := Start(t, Options{InvisibleDescribes: -1}) // consistency_test.go has the windows
	ctx := context.Background()
	site := UniqueName("ebs")
	id, sum := snapshotWithBlock(t, h, site)

	snap, ok := h.Model.Snapshot(id)
	if !ok || snap.State != "completed" || snap.Blocks[3] != sum || snap.Completion.ChangedBlocksCount != 1 {
		t.Fatalf("shim snapshot = %+v, %v; want completed with block 3", snap, ok)
	}
	got, err := h.EBS(t).GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(id), BlockIndex: aws.Int32(3), BlockToken: aws.String("x")})
	if err != nil {
		t.Fatalf("GetSnapshotBlock: %v", err)
	}
	data, _ := io.ReadAll(got.BlockData)
	if sha256.Sum256(data) != sum {
		t.Fatal("block read back differs")
	}

	// kumo's errors reach the SDK as typed errors (kumo alone gives "UnknownError").
	_, err = h.EBS(t).PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId: aws.String("snap-nope"), BlockIndex: aws.Int32(0), BlockData: bytes.NewReader(make([]byte, blockBytes)),
		DataLength: aws.Int32(blockBytes), Checksum: aws.String("x"), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	var nf *ebstypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("PutSnapshotBlock on an unknown snapshot: %v (%T), want ResourceNotFoundException", err, err)
	}

	// A wrong block checksum is refused, as by AWS.
	_, err = h.EBS(t).PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId: aws.String(id), BlockIndex: aws.Int32(0), BlockData: bytes.NewReader(make([]byte, blockBytes)),
		DataLength: aws.Int32(blockBytes), Checksum: aws.String("bm9wZQ=="), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	var ve *ebstypes.ValidationException
	if !errors.As(err, &ve) {
		t.Fatalf("bad checksum: %v, want ValidationException", err)
	}

	// Snapshots are visible to EC2, filterable by tag, and deletable.
	e := h.EC2(t)
	ds, err := e.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []types.Filter{{Name: aws.String("tag:site"), Values: []string{site}}}})
	if err != nil || len(ds.Snapshots) != 1 || aws.ToString(ds.Snapshots[0].SnapshotId) != id {
		t.Fatalf("DescribeSnapshots by tag = %+v, %v", ds, err)
	}
	if _, err := e.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	if n := len(h.Model.SnapshotsTagged("site", site)); n != 0 {
		t.Fatalf("%d snapshots left after delete", n)
	}
	if _, err := h.EBS(t).ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(id)}); !errors.As(err, &nf) {
		t.Fatalf("ListSnapshotBlocks after delete: %v, want ResourceNotFoundException", err)
	}
}

func TestClientTokenIsIdempotent(t *testing.T) {
	h := Start(t, Options{})
	ctx := context.Background()
	in := &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ClientToken: aws.String(UniqueName("same"))}
	a, err := h.EBS(t).StartSnapshot(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.EBS(t).StartSnapshot(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(a.SnapshotId) != aws.ToString(b.SnapshotId) {
		t.Fatalf("same token gave %s and %s", aws.ToString(a.SnapshotId), aws.ToString(b.SnapshotId))
	}
}

func TestImagesDryRunConsoleAndInstances(t *testing.T) {
	h := Start(t, Options{PendingDescribes: 1, InvisibleDescribes: -1}) // consistency_test.go has the windows
	ctx := context.Background()
	site := UniqueName("ec2")
	snap, _ := snapshotWithBlock(t, h, site)
	e := h.EC2(t)

	// The snapshot shows pending once, then completed: waiters wait.
	if err := ec2.NewSnapshotCompletedWaiter(e, func(o *ec2.SnapshotCompletedWaiterOptions) { o.MinDelay, o.MaxDelay = 1e6, 4e6 }).
		Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}}, 1e10); err != nil {
		t.Fatalf("snapshot waiter: %v", err)
	}

	reg := &ec2.RegisterImageInput{
		Name: aws.String(site), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		BootMode: types.BootModeValuesUefi, EnaSupport: aws.Bool(true), ImdsSupport: types.ImdsSupportValuesV20,
		Architecture: types.ArchitectureValuesX8664,
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{
			SnapshotId: aws.String(snap), VolumeType: types.VolumeTypeGp3, DeleteOnTermination: aws.Bool(true), VolumeSize: aws.Int32(1)}}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}},
	}
	reg.DryRun = aws.Bool(true)
	if _, err := e.RegisterImage(ctx, reg); apiCode(err) != "DryRunOperation" {
		t.Fatalf("DryRun RegisterImage: %v, want DryRunOperation", err)
	}
	if n := len(h.Model.ImagesTagged("site", site)); n != 0 {
		t.Fatalf("DryRun registered %d images", n)
	}
	reg.DryRun = nil
	out, err := e.RegisterImage(ctx, reg)
	if err != nil {
		t.Fatalf("RegisterImage: %v", err)
	}
	ami := aws.ToString(out.ImageId)
	if err := ec2.NewImageAvailableWaiter(e, func(o *ec2.ImageAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = 1e6, 4e6 }).
		Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}}, 1e10); err != nil {
		t.Fatalf("image waiter: %v", err)
	}
	di, err := e.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("tag:site"), Values: []string{site}}}})
	if err != nil || len(di.Images) != 1 {
		t.Fatalf("DescribeImages by tag = %+v, %v", di, err)
	}
	im := di.Images[0]
	if im.State != types.ImageStateAvailable || im.BootMode != types.BootModeValuesUefi || !aws.ToBool(im.EnaSupport) ||
		im.ImdsSupport != types.ImdsSupportValuesV20 || aws.ToString(im.BlockDeviceMappings[0].Ebs.SnapshotId) != snap ||
		im.BlockDeviceMappings[0].Ebs.VolumeType != types.VolumeTypeGp3 {
		t.Fatalf("image read back = %+v", im)
	}
	if _, err := e.RegisterImage(ctx, reg); apiCode(err) != "InvalidAMIName.Duplicate" {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := e.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)}); apiCode(err) != "InvalidSnapshot.InUse" {
		t.Fatalf("deleting a snapshot in use: %v", err)
	}

	// Instances: tags from RunInstances, tag filters, console output.
	run, err := e.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String(ami), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}},
	})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	iid := aws.ToString(run.Instances[0].InstanceId)
	if _, err := e.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), DryRun: aws.Bool(true)}); apiCode(err) != "DryRunOperation" {
		t.Fatalf("DryRun RunInstances: %v", err)
	}
	// An untagged instance the filter must leave out.
	if _, err := e.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	dinst, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:site"), Values: []string{site}}, {Name: aws.String("instance-state-name"), Values: []string{"running", "pending"}}}})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	var ids []string
	for _, r := range dinst.Reservations {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
			if len(in.Tags) != 1 || aws.ToString(in.Tags[0].Value) != site {
				t.Errorf("instance tags = %+v", in.Tags)
			}
		}
	}
	if !slices.Equal(ids, []string{iid}) {
		t.Fatalf("DescribeInstances by tag = %v, want [%s]", ids, iid)
	}
	if got, err := h.Model.InstancesTagged(ctx, "site", site); err != nil || !slices.Equal(got, []string{iid}) {
		t.Fatalf("InstancesTagged = %v, %v", got, err)
	}
	// On a Nitro type only Latest gives what the console printed; the
	// buffered output is empty.
	h.Model.SetConsoleOutput(iid, "booted\n")
	co, err := e.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(iid), Latest: aws.Bool(true)})
	if err != nil {
		t.Fatalf("GetConsoleOutput: %v", err)
	}
	if text, _ := base64.StdEncoding.DecodeString(aws.ToString(co.Output)); string(text) != "booted\n" {
		t.Fatalf("console output = %q", text)
	}
	if co, err := e.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(iid)}); err != nil || aws.ToString(co.Output) != "" {
		t.Fatalf("buffered console output of a Nitro instance = %q, %v; want none", aws.ToString(co.Output), err)
	}

	if _, err := e.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(ami)}); err != nil {
		t.Fatalf("DeregisterImage: %v", err)
	}
	if n := len(h.Model.ImagesTagged("site", site)); n != 0 {
		t.Fatalf("%d images after deregister", n)
	}
	want := []string{"ebs:CompleteSnapshot", "ebs:PutSnapshotBlock", "ebs:StartSnapshot", "ec2:DeleteSnapshot",
		"ec2:DeregisterImage", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeSnapshots",
		"ec2:GetConsoleOutput", "ec2:RegisterImage", "ec2:RunInstances"}
	if got := h.Calls.Actions(); !slices.Equal(got, want) {
		t.Fatalf("actions = %v\nwant      %v", got, want)
	}
}

func TestFaults(t *testing.T) {
	h := Start(t, Options{})
	ctx := context.Background()
	e := h.EC2(t)
	noRetry := func(o *ec2.Options) { o.Retryer = aws.NopRetryer{} }
	cases := []struct {
		fault Fault
		check func(error) bool
	}{
		{Fault{Service: "ec2", Kind: Throttle, Rate: 1}, func(err error) bool { return apiCode(err) == "RequestLimitExceeded" }},
		{Fault{Service: "ec2", Kind: ServerError, Rate: 1}, func(err error) bool { return apiCode(err) == "InternalError" }},
		{Fault{Service: "ec2", Kind: Error, Code: "UnauthorizedOperation", Status: 403, Rate: 1}, func(err error) bool { return apiCode(err) == "UnauthorizedOperation" }},
		{Fault{Service: "ec2", Kind: Drop, Rate: 1}, func(err error) bool { return err != nil && apiCode(err) == "" }},
	}
	for _, c := range cases {
		h.Faults.Clear()
		h.Faults.Add(c.fault)
		_, err := e.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}, noRetry)
		if !c.check(err) {
			t.Errorf("%v: got %v", c.fault.Kind, err)
		}
	}
	h.Faults.Clear()
	// Limit and Operation scope a fault; the SDK's own retry then succeeds.
	h.Faults.Add(Fault{Operation: "DescribeImages", Kind: Throttle, Rate: 1, Limit: 1})
	if _, err := e.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}); err != nil {
		t.Fatalf("after one throttle the SDK retry should succeed: %v", err)
	}
	if got := h.Faults.Injected(); got["throttle"] != 2 || got["drop"] != 1 || got["server-error"] != 1 {
		t.Fatalf("injected = %v", got)
	}
}
