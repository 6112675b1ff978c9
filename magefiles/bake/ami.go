package bake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
)

// ec2API is the part of EC2 a bake uses; *ec2.Client has it. The waiters
// need DescribeSnapshots and DescribeImages.
type ec2API interface {
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
	RegisterImage(context.Context, *ec2.RegisterImageInput, ...func(*ec2.Options)) (*ec2.RegisterImageOutput, error)
	DeregisterImage(context.Context, *ec2.DeregisterImageInput, ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error)
	DescribeSnapshots(context.Context, *ec2.DescribeSnapshotsInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error)
	DeleteSnapshot(context.Context, *ec2.DeleteSnapshotInput, ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
}

// tags are the snapshot's and the AMI's: state lives in AWS, and these are
// how a later run (or Launch) finds what exists.
func (b *baker) tags(img *image.Receipt) []types.Tag {
	return []types.Tag{
		fleet.Tag("Name", b.cfg.Site+" "+fleet.Short(img.SHA256)),
		fleet.Tag(fleet.TagSite, b.cfg.Site),
		fleet.Tag(fleet.TagImageSHA256, img.SHA256),
		fleet.Tag(fleet.TagBuildID, fleet.OrUnknown(img.BuildID)),
		fleet.Tag(fleet.TagCommit, fleet.OrUnknown(img.Commit)),
	}
}

// existingImage is an AMI already holding this image.
type existingImage struct{ ImageID, SnapshotID string }

// findImage looks for this site's AMI of the image sha256. An available one
// is reused; a pending one (a run that died while waiting) is waited for.
func (b *baker) findImage(ctx context.Context, sha string) (*existingImage, error) {
	out, err := b.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners: []string{"self"},
		Filters: []types.Filter{
			{Name: aws.String("tag:" + fleet.TagSite), Values: []string{b.cfg.Site}},
			{Name: aws.String("tag:" + fleet.TagImageSHA256), Values: []string{sha}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bake: looking for an AMI of image %s: %w; check the ec2:DescribeImages permission and the region", fleet.Short(sha), err)
	}
	var pending *types.Image
	for i := range out.Images {
		img := &out.Images[i]
		switch img.State {
		case types.ImageStateAvailable:
			return &existingImage{ImageID: aws.ToString(img.ImageId), SnapshotID: rootSnapshot(img)}, nil
		case types.ImageStatePending:
			pending = img
		}
	}
	if pending == nil {
		return nil, nil
	}
	id := aws.ToString(pending.ImageId)
	b.log.Infof("AMI %s of this image is still pending (an earlier run stopped while waiting); waiting for it", id)
	if err := b.waitImage(ctx, id); err != nil {
		return nil, err
	}
	return &existingImage{ImageID: id, SnapshotID: rootSnapshot(pending)}, nil
}

func rootSnapshot(img *types.Image) string {
	for _, m := range img.BlockDeviceMappings {
		if aws.ToString(m.DeviceName) == aws.ToString(img.RootDeviceName) && m.Ebs != nil {
			return aws.ToString(m.Ebs.SnapshotId)
		}
	}
	return ""
}

func (b *baker) deleteSnapshot(ctx context.Context, id string) error {
	_, err := b.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	return err
}

// waiterDelays applies Options.WaitDelay to a waiter's polling.
func (b *baker) waiterDelays(minDelay, maxDelay *time.Duration) {
	if b.waitDelay > 0 {
		*minDelay, *maxDelay = b.waitDelay, 4*b.waitDelay
	}
}

// notYetVisible wraps a waiter's acceptors so "not found" right after
// creation, which is EC2's eventual consistency, means "keep waiting".
func notYetVisible[In, Out any](code string, next func(context.Context, In, Out, error) (bool, error)) func(context.Context, In, Out, error) (bool, error) {
	return func(ctx context.Context, in In, out Out, err error) (bool, error) {
		if fleet.HasCode(err, code) {
			return true, nil
		}
		return next(ctx, in, out, err)
	}
}

// waitSnapshot waits for EBS to finish processing the completed snapshot.
func (b *baker) waitSnapshot(ctx context.Context, id string) error {
	in := &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}
	w := ec2.NewSnapshotCompletedWaiter(b.ec2, func(o *ec2.SnapshotCompletedWaiterOptions) {
		b.waiterDelays(&o.MinDelay, &o.MaxDelay)
		o.Retryable = notYetVisible("InvalidSnapshot.NotFound", o.Retryable)
	})
	err := w.Wait(ctx, in, snapshotMaxWait)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bake: waiting for snapshot %s: %w", id, ctx.Err())
	}
	// The waiter says only that it failed; ask what state the snapshot is in.
	out, derr := b.ec2.DescribeSnapshots(context.WithoutCancel(ctx), in)
	if derr != nil || len(out.Snapshots) == 0 {
		return fmt.Errorf("bake: waiting for snapshot %s to complete: %w", id, err)
	}
	s := out.Snapshots[0]
	if s.State == types.SnapshotStateError {
		return fmt.Errorf("bake: snapshot %s failed after completion (state error: %s); its blocks or aggregate checksum did not verify; run `mage bake` again", id, aws.ToString(s.StateMessage))
	}
	return fmt.Errorf("bake: snapshot %s stuck in %s after %s; check EBS direct API quotas and the AWS Health dashboard, then run `mage bake` again: %w", id, s.State, snapshotMaxWait, err)
}

// amiName is unique per run: an AMI name stays taken while a failed or
// pending registration of the same image exists.
func amiName(site, sha string, now time.Time) string {
	return fmt.Sprintf("%s-%s-%s", site, fleet.Short(sha), now.UTC().Format("20060102T150405Z"))
}

// RegisterImageInput is the request that makes the AMI of img from its
// snapshot; preflight's DryRun probe sends the same one.
func RegisterImageInput(c *config.Config, img *image.Receipt, snapID string, tags []types.Tag) *ec2.RegisterImageInput {
	boot := img.Boot
	in := &ec2.RegisterImageInput{
		Name:               aws.String(amiName(c.Site, img.SHA256, time.Now())),
		Description:        aws.String(fmt.Sprintf("%s: disk image %s, build %s", c.Site, fleet.Short(img.SHA256), img.BuildID)),
		Architecture:       types.ArchitectureValuesX8664,
		RootDeviceName:     aws.String(boot.RootDeviceName),
		VirtualizationType: aws.String(boot.VirtualizationType),
		ImdsSupport:        types.ImdsSupportValuesV20,
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String(boot.RootDeviceName),
			Ebs: &types.EbsBlockDevice{
				SnapshotId:          aws.String(snapID),
				VolumeType:          types.VolumeTypeGp3,
				VolumeSize:          aws.Int32(int32((img.SizeBytes + 1<<30 - 1) >> 30)),
				DeleteOnTermination: aws.Bool(true),
			},
		}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: tags}},
	}
	if boot.VirtualizationType == "hvm" {
		in.EnaSupport = aws.Bool(boot.EnaSupport)
		if boot.BootMode != "" {
			in.BootMode = types.BootModeValues(boot.BootMode)
		}
	}
	if boot.NeedsKernelID {
		in.KernelId = aws.String(c.PVGrubKernelID)
	}
	return in
}

// register creates the AMI from the snapshot and registers its undo.
func (b *baker) register(ctx context.Context, img *image.Receipt, snapID string, tags []types.Tag) (string, error) {
	out, err := b.ec2.RegisterImage(ctx, RegisterImageInput(b.cfg, img, snapID, tags))
	if err != nil {
		return "", fmt.Errorf("bake: registering the AMI from snapshot %s: %w", snapID, err)
	}
	id := aws.ToString(out.ImageId)
	b.undo.Add("deregistering AMI "+id,
		"deregister it: aws ec2 deregister-image --image-id "+id,
		func(ctx context.Context) error {
			_, err := b.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
			return err
		})
	return id, nil
}

// waitImage waits for the AMI to become available.
func (b *baker) waitImage(ctx context.Context, id string) error {
	in := &ec2.DescribeImagesInput{ImageIds: []string{id}}
	w := ec2.NewImageAvailableWaiter(b.ec2, func(o *ec2.ImageAvailableWaiterOptions) {
		b.waiterDelays(&o.MinDelay, &o.MaxDelay)
		o.Retryable = notYetVisible("InvalidAMIID.NotFound", o.Retryable)
	})
	err := w.Wait(ctx, in, imageMaxWait)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bake: waiting for AMI %s: %w", id, ctx.Err())
	}
	out, derr := b.ec2.DescribeImages(context.WithoutCancel(ctx), in)
	if derr != nil || len(out.Images) == 0 {
		return fmt.Errorf("bake: waiting for AMI %s to become available: %w", id, errors.Join(err, derr))
	}
	im := out.Images[0]
	reason := ""
	if im.StateReason != nil {
		reason = ": " + aws.ToString(im.StateReason.Message)
	}
	return fmt.Errorf("bake: AMI %s is %s, not available, after waiting up to %s%s; check the boot settings in the image receipt: %w", id, im.State, imageMaxWait, reason, err)
}
