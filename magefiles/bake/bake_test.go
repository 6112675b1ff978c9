package bake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// checkSnapshot proves the snapshot holds exactly the image's data blocks:
// listed, read back through the EBS direct API, and nothing else.
func checkSnapshot(t *testing.T, h *awsharness.Harness, snapID string, img *testImage) {
	t.Helper()
	ctx := context.Background()
	c := h.EBS(t)
	list, err := c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(snapID)})
	if err != nil {
		t.Fatalf("ListSnapshotBlocks: %v", err)
	}
	var got []int64
	for _, blk := range list.Blocks {
		got = append(got, int64(aws.ToInt32(blk.BlockIndex)))
		out, err := c.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(snapID), BlockIndex: blk.BlockIndex, BlockToken: blk.BlockToken})
		if err != nil {
			t.Fatalf("GetSnapshotBlock %d: %v", aws.ToInt32(blk.BlockIndex), err)
		}
		data, _ := io.ReadAll(out.BlockData)
		if want := img.data[int64(aws.ToInt32(blk.BlockIndex))]; !bytes.Equal(data, want) {
			t.Errorf("block %d read back differs from the image", aws.ToInt32(blk.BlockIndex))
		}
	}
	want := slices.Sorted(maps.Keys(img.data))
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot blocks = %v\nimage data blocks = %v", got, want)
	}
	snap, _ := h.Model.Snapshot(snapID)
	if snap.State != "completed" {
		t.Fatalf("snapshot state %s (%s)", snap.State, snap.Message)
	}
	if c := snap.Completion; c.Checksum != expectedAggregate(img) || c.Aggregation != "LINEAR" || c.Algorithm != "SHA256" || c.ChangedBlocksCount != len(img.data) {
		t.Fatalf("completion = %+v; want LINEAR SHA256 %s over %d blocks", c, expectedAggregate(img), len(img.data))
	}
}

func TestBakeUploadsOnlyDataAndIsIdempotent(t *testing.T) {
	// A new snapshot is "not found" for its first 3 EBS calls, as EBS answers
	// while it propagates: those are retried.
	h := awsharness.Start(t, awsharness.Options{PendingDescribes: 2, SnapshotNotFoundCalls: 3})
	c, img, r := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("bake")
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(c.Root)) // the temp root is no repository, whatever encloses it
	log, hook := testLog()

	got, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatalf("Bake: %v", err)
	}
	if got.Reused || got.BlocksUploaded != int64(len(img.data)) || got.BytesUploaded != int64(len(img.data))*blockSize || got.BlocksTotal != blocksIn(img.size) {
		t.Fatalf("receipt = %+v; want %d blocks uploaded of %d", got, len(img.data), blocksIn(img.size))
	}
	if n := h.Calls.Count("ebs", "PutSnapshotBlock"); n != len(img.data)+3 {
		t.Fatalf("%d PutSnapshotBlock calls for %d data blocks, 3 of them first answered \"not found\"", n, len(img.data))
	}
	checkSnapshot(t, h, got.SnapshotID, img)

	ami, ok := h.Model.Image(got.ImageID)
	if !ok || ami.State != "available" || ami.SnapshotID != got.SnapshotID || ami.VirtualizationType != "hvm" ||
		ami.BootMode != "uefi" || !ami.EnaSupport || ami.ImdsSupport != "v2.0" || ami.VolumeType != "gp3" ||
		!ami.DeleteOnTermination || ami.RootDeviceName != "/dev/xvda" || ami.VolumeSize != 1 || ami.KernelID != "" {
		t.Fatalf("AMI = %+v", ami)
	}
	snap, _ := h.Model.Snapshot(got.SnapshotID)
	for _, tags := range [][]awsmodel.Tag{ami.Tags, snap.Tags} {
		want := map[string]string{fleet.TagSite: c.Site, fleet.TagImageDigest: r.Digest, fleet.TagBuildID: "build-1", fleet.TagCommit: "abc123"}
		for _, tg := range tags {
			if v, ok := want[tg.Key]; ok && v == tg.Value {
				delete(want, tg.Key)
			}
		}
		if len(want) > 0 {
			t.Errorf("tags %v miss %v", tags, want)
		}
	}
	var onDisk Receipt
	if ok, err := receipt.Read(c.BuildDir(), ReceiptName, &onDisk); !ok || err != nil || onDisk.ImageID != got.ImageID || onDisk.ImageDigest != r.Digest {
		t.Fatalf("_build/bake.json = %+v, %v, %v", onDisk, ok, err)
	}
	progress := 0
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "upload: ") && strings.Contains(e.Message, "MiB/s") {
			progress++
		}
	}
	if progress == 0 {
		t.Error("no progress was logged")
	}

	// The second run finds the AMI by its tags and uploads nothing.
	h.Calls.Reset()
	again, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatalf("second Bake: %v", err)
	}
	if !again.Reused || again.ImageID != got.ImageID || again.SnapshotID != got.SnapshotID || again.BlocksUploaded != 0 {
		t.Fatalf("second receipt = %+v; want the same AMI %s, reused, 0 blocks", again, got.ImageID)
	}
	if calls := h.Calls.Actions(); !slices.Equal(calls, []string{"ec2:DescribeImages"}) {
		t.Fatalf("second run called %v; want only ec2:DescribeImages", calls)
	}
	if n := len(h.Model.ImagesTagged(fleet.TagSite, c.Site)); n != 1 {
		t.Fatalf("%d AMIs of the site; want 1", n)
	}
}

func TestBakeActions(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("actions")
	log, _ := testLog()
	if _, err := Bake(context.Background(), fastOptions(c, log)); err != nil {
		t.Fatal(err)
	}
	// What an IAM policy for `mage bake` must allow (DeleteSnapshot and
	// DeregisterImage are used on failure only).
	want := []string{"ebs:CompleteSnapshot", "ebs:PutSnapshotBlock", "ebs:StartSnapshot",
		"ec2:DescribeImages", "ec2:DescribeSnapshots", "ec2:RegisterImage"}
	if got := h.Calls.Actions(); !slices.Equal(got, want) {
		t.Fatalf("actions = %v\nwant %v", got, want)
	}
}

func TestBakeSurvivesFaults(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{Seed: 7})
	root := t.TempDir()
	writes := map[int64][]byte{blockSize - 10: randomBytes(99, 20)} // straddles blocks 0 and 1
	for i := range int64(100) {
		writes[(i*2+3)*blockSize] = randomBytes(uint64(i)+200, blockSize)
	}
	img := writeSparse(t, root+"/disk.img", 256<<20, writes)
	c, _, _ := setupWith(t, root, img, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("faults")
	// 20% of block uploads fail: throttled, 500, dropped before or after
	// being served; and the first few find no snapshot yet, as just after
	// StartSnapshot. Every other call is throttled now and then too.
	put := func(k awsharness.FaultKind, rate float64) awsharness.Fault {
		return awsharness.Fault{Service: "ebs", Operation: "PutSnapshotBlock", Kind: k, Rate: rate}
	}
	h.Faults.Add(
		awsharness.Fault{Service: "ebs", Operation: "PutSnapshotBlock", Kind: awsharness.Error, Code: "ResourceNotFoundException", Status: 404, Rate: 1, Limit: 3},
		put(awsharness.Throttle, 0.06), put(awsharness.ServerError, 0.05), put(awsharness.Drop, 0.05), put(awsharness.DropAfter, 0.04),
		awsharness.Fault{Service: "ec2", Kind: awsharness.Throttle, Rate: 0.2},
		awsharness.Fault{Operation: "StartSnapshot", Kind: awsharness.DropAfter, Rate: 1, Limit: 1},
	)
	log, _ := testLog()
	got, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatalf("Bake under faults: %v", err)
	}
	checkSnapshot(t, h, got.SnapshotID, img)
	inj := h.Faults.Injected()
	if inj["throttle"] == 0 || inj["server-error"] == 0 || inj["drop"] == 0 || inj["drop-after"] == 0 || inj["error"] != 3 {
		t.Fatalf("faults injected %v; the test proves nothing without them", inj)
	}
	// The lost StartSnapshot answer was retried with the same ClientToken:
	// one snapshot, no twin.
	if n := len(h.Model.SnapshotsTagged(fleet.TagSite, c.Site)); n != 1 {
		t.Fatalf("%d snapshots for the site; want 1", n)
	}
	t.Logf("faults injected: %v; PutSnapshotBlock attempts %d for %d blocks", inj, h.Calls.Count("ebs", "PutSnapshotBlock"), len(img.data))
}

func TestBakeCancelledLeavesNothing(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	root := t.TempDir()
	// 64 data blocks, 4 at a time, 20 ms each: cancelled well before the end.
	writes := map[int64][]byte{}
	for i := range int64(64) {
		writes[i*2*blockSize] = randomBytes(uint64(i)+10, blockSize)
	}
	img := writeSparse(t, root+"/disk.img", 64<<20, writes)
	c, _, _ := setupWith(t, root, img, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("cancel")
	c.UploadParallel = 4
	h.Faults.Add(awsharness.Fault{Operation: "PutSnapshotBlock", Kind: awsharness.Latency, Delay: 20e6, Rate: 1})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var puts atomic.Int32
	h.Calls.OnCall(func(call awsharness.Call) {
		if call.Operation == "PutSnapshotBlock" && puts.Add(1) == 10 {
			cancel()
		}
	})
	log, hook := testLog()
	_, err := Bake(ctx, fastOptions(c, log))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Bake cancelled: %v; want context.Canceled", err)
	}
	if n := h.Calls.Count("ec2", "RegisterImage") + h.Calls.Count("ebs", "CompleteSnapshot"); n != 0 {
		t.Fatalf("%d RegisterImage/CompleteSnapshot calls after cancellation", n)
	}
	if s, i := h.Model.SnapshotsTagged(fleet.TagSite, c.Site), h.Model.ImagesTagged(fleet.TagSite, c.Site); len(s)+len(i) != 0 {
		t.Fatalf("left behind: snapshots %v, images %v", s, i)
	}
	if h.Calls.Count("ec2", "DeleteSnapshot") != 1 {
		t.Fatalf("DeleteSnapshot called %d times", h.Calls.Count("ec2", "DeleteSnapshot"))
	}
	if !hook.logged("cleanup: deleting partial snapshot") {
		t.Error("the cleanup was not logged")
	}

	// The next run starts clean: a new snapshot (new ClientToken), complete.
	h.Faults.Clear()
	got, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatalf("Bake after the cancelled run: %v", err)
	}
	checkSnapshot(t, h, got.SnapshotID, img)
}

func TestBakeRegisterFailureRollsBack(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("regfail")
	h.Faults.Add(awsharness.Fault{Operation: "RegisterImage", Kind: awsharness.Error, Code: "InvalidParameterValue", Status: 400, Rate: 1})
	log, _ := testLog()
	_, err := Bake(context.Background(), fastOptions(c, log))
	if err == nil || !strings.Contains(err.Error(), "registering the AMI") {
		t.Fatalf("Bake = %v; want the RegisterImage failure", err)
	}
	if s := h.Model.SnapshotsTagged(fleet.TagSite, c.Site); len(s) != 0 {
		t.Fatalf("snapshots left: %v", s)
	}
}

func TestBakeFailedSnapshotIsNotRegistered(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("badsum")
	// EBS refuses to complete the snapshot: nothing may be registered from
	// it, and it is deleted.
	h.Faults.Add(awsharness.Fault{Operation: "CompleteSnapshot", Kind: awsharness.Error, Code: "ValidationException", Status: 400, Rate: 1})
	log, _ := testLog()
	if _, err := Bake(context.Background(), fastOptions(c, log)); err == nil || !strings.Contains(err.Error(), "completing snapshot") {
		t.Fatalf("Bake = %v", err)
	}
	if h.Calls.Count("ec2", "RegisterImage") != 0 || len(h.Model.SnapshotsTagged(fleet.TagSite, c.Site)) != 0 {
		t.Fatal("a snapshot that did not complete was registered or left behind")
	}
}

func TestPVGrubRegistersParavirtualWithKernel(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, pvgrubBoot, "pvgrub")
	c.Site = awsharness.UniqueName("pv")
	c.PVGrubKernelID = "aki-0123456789abcdef0"
	log, _ := testLog()
	got, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatal(err)
	}
	ami, _ := h.Model.Image(got.ImageID)
	if ami.VirtualizationType != "paravirtual" || ami.KernelID != c.PVGrubKernelID || ami.BootMode != "" || ami.RootDeviceName != "/dev/sda1" {
		t.Fatalf("AMI = %+v", ami)
	}
}

func TestPVGrubWithoutKernelFailsBeforeAWS(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, pvgrubBoot, "pvgrub")
	log, _ := testLog()
	_, err := Bake(context.Background(), fastOptions(c, log))
	if err == nil || !strings.Contains(err.Error(), "pvgrub_kernel_id") || !strings.Contains(err.Error(), "DEPLOY_PVGRUB_KERNEL_ID") {
		t.Fatalf("Bake = %v; want a pvgrub_kernel_id error naming the fix", err)
	}
	if calls := h.Calls.Calls(); len(calls) != 0 {
		t.Fatalf("AWS was called: %v", calls)
	}
}

func TestChangedImageFailsBeforeAWS(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, img, r := setup(t, uefiBoot, "uefi")
	log, _ := testLog()
	// First make the verification cache hold the good image, then change
	// the image in place: the cache must not vouch for it.
	if err := verifyImage(r, c.BuildDir(), log); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteAt([]byte{0xff}, 7*blockSize)
	f.Close()
	_, err = Bake(context.Background(), fastOptions(c, log))
	if err == nil || !strings.Contains(err.Error(), "changed after it was built") {
		t.Fatalf("Bake = %v; want the digest mismatch", err)
	}
	if calls := h.Calls.Calls(); len(calls) != 0 {
		t.Fatalf("AWS was called: %v", calls)
	}
}

func TestNoRegion(t *testing.T) {
	awsharness.Start(t, awsharness.Options{})
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	c, _, _ := setup(t, uefiBoot, "uefi")
	log, _ := testLog()
	if _, err := Bake(context.Background(), fastOptions(c, log)); err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("Bake = %v", err)
	}
}

// TestBakeWaitsOutANewSnapshotNotFound: EBS answers "does not exist" for a
// new snapshot longer than the retries of a failing block would last;
// within the two minutes AWS advises, the bake waits it out.
func TestBakeWaitsOutANewSnapshotNotFound(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{SnapshotNotFoundCalls: 3 * maxBlockAttempts})
	c, img, _ := setup(t, uefiBoot, "uefi")
	c.Site, c.UploadParallel = awsharness.UniqueName("notfound"), 1
	log, _ := testLog()
	got, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatalf("Bake: %v", err)
	}
	checkSnapshot(t, h, got.SnapshotID, img)
}

// TestBakeLostAnswersMakeNoTwin loses the answers of StartSnapshot,
// CompleteSnapshot and RegisterImage (served, then the connection dropped):
// one snapshot, one AMI, named for the image.
func TestBakeLostAnswersMakeNoTwin(t *testing.T) {
	for _, op := range []string{"StartSnapshot", "CompleteSnapshot", "RegisterImage"} {
		t.Run(op, func(t *testing.T) {
			h := awsharness.Start(t, awsharness.Options{})
			c, img, r := setup(t, uefiBoot, "uefi")
			c.Site = awsharness.UniqueName("lost")
			h.Faults.Add(awsharness.Fault{Operation: op, Kind: awsharness.DropAfter, Rate: 1, Limit: 1})
			log, hook := testLog()
			got, err := Bake(context.Background(), fastOptions(c, log))
			if err != nil {
				t.Fatalf("Bake: %v", err)
			}
			if h.Faults.Injected()["drop-after"] != 1 {
				t.Fatal("no answer was lost")
			}
			if amis, snaps := h.Model.ImagesTagged(fleet.TagSite, c.Site), h.Model.SnapshotsTagged(fleet.TagSite, c.Site); len(amis) != 1 || len(snaps) != 1 {
				t.Fatalf("AMIs %v snapshots %v; want one of each", amis, snaps)
			}
			if ami, _ := h.Model.Image(got.ImageID); ami.Name != AMIName(c.Site, r.Digest) || ami.SnapshotID != got.SnapshotID {
				t.Fatalf("AMI %+v, want named %s from snapshot %s", ami, AMIName(c.Site, r.Digest), got.SnapshotID)
			}
			checkSnapshot(t, h, got.SnapshotID, img)
			switch op {
			case "CompleteSnapshot":
				if !hook.logged("snapshot " + got.SnapshotID + ": the completion whose answer was lost took effect") {
					t.Error("the lost completion was not found to have taken effect")
				}
			case "RegisterImage":
				if !hook.logged("AMI " + got.ImageID + " was registered by this run (its answer was lost)") {
					t.Error("the lost registration was not adopted")
				}
			}
		})
	}
}

// TestTwoBakesOfOneImageMakeOneAMI: two bakes of the same image at once
// (no lease between them): the name lets one register and the other adopt
// its AMI and delete its own snapshot.
func TestTwoBakesOfOneImageMakeOneAMI(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("twobakes")
	log, _ := testLog()
	var wg sync.WaitGroup
	got := make([]*Receipt, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = Bake(context.Background(), fastOptions(c, log))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got[0].ImageID != got[1].ImageID {
		t.Fatalf("two AMIs of one image: %s and %s", got[0].ImageID, got[1].ImageID)
	}
	if amis, snaps := h.Model.ImagesTagged(fleet.TagSite, c.Site), h.Model.SnapshotsTagged(fleet.TagSite, c.Site); len(amis) != 1 || len(snaps) != 1 {
		t.Fatalf("AMIs %v snapshots %v; want one of each", amis, snaps)
	}
}

// TestExclusiveBakeDeletesWhatDeadRunsLeft: holding the lease, snapshots of
// the site no AMI uses (a run killed while uploading, another before
// registering) are deleted before a new upload; the AMIs' are kept.
func TestExclusiveBakeDeletesWhatDeadRunsLeft(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c, _, _ := setup(t, uefiBoot, "uefi")
	c.Site = awsharness.UniqueName("dead")
	log, _ := testLog()
	first, err := Bake(context.Background(), fastOptions(c, log))
	if err != nil {
		t.Fatal(err)
	}
	var dead []string
	for _, complete := range []bool{false, true} {
		out, err := h.EBS(t).StartSnapshot(context.Background(), &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(60),
			Tags: []ebstypes.Tag{{Key: aws.String(fleet.TagSite), Value: aws.String(c.Site)}}})
		if err != nil {
			t.Fatal(err)
		}
		for complete {
			_, err := h.EBS(t).CompleteSnapshot(context.Background(), &ebs.CompleteSnapshotInput{SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(0)})
			if _, nf := errorsAs[*ebstypes.ResourceNotFoundException](err); !nf {
				break
			}
		}
		dead = append(dead, aws.ToString(out.SnapshotId))
		// Long dead, in the story: EC2 lists them by now.
		for {
			_, err := h.EC2(t).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(out.SnapshotId)}})
			if !fleet.HasCode(err, "InvalidSnapshot.NotFound") {
				break
			}
		}
	}
	// A new image, baked holding the lease.
	img2 := writeSparse(t, filepath.Join(c.Root, "disk2.img"), 8<<20, map[int64][]byte{0: randomBytes(9, 4096)})
	c2, _, _ := setupWith(t, c.Root, img2, uefiBoot, "uefi")
	c2.Site = c.Site
	o := fastOptions(c2, log)
	o.Exclusive = true
	second, err := Bake(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	snaps := h.Model.SnapshotsTagged(fleet.TagSite, c.Site)
	want := []string{first.SnapshotID, second.SnapshotID}
	slices.Sort(want)
	if !slices.Equal(snaps, want) {
		t.Fatalf("snapshots %v, want only the two AMIs' %v (dead runs left %v)", snaps, want, dead)
	}
}
