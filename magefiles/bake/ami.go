package bake

import (
	"context"
	"errors"
	"fmt"

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
		fleet.Tag("Name", b.cfg.Site+" "+fleet.Short(img.Digest)),
		fleet.Tag(fleet.TagSite, b.cfg.Site),
		fleet.Tag(fleet.TagImageDigest, img.Digest),
		fleet.Tag(fleet.TagBuildID, fleet.OrUnknown(img.BuildID)),
		fleet.Tag(fleet.TagCommit, fleet.OrUnknown(img.Commit)),
	}
}

// existingImage is an AMI already holding this image.
type existingImage struct{ ImageID, SnapshotID string }

// findImage looks for this site's AMI of the image digest. An available one
// is reused; a pending one (a run that died while waiting) is waited for.
func (b *baker) findImage(ctx context.Context, digest string) (*existingImage, error) {
	out, err := b.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners: []string{"self"},
		Filters: []types.Filter{
			{Name: aws.String("tag:" + fleet.TagSite), Values: []string{b.cfg.Site}},
			{Name: aws.String("tag:" + fleet.TagImageDigest), Values: []string{digest}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bake: looking for an AMI of image %s: %w; check the ec2:DescribeImages permission and the region", fleet.Short(digest), err)
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

// pace is p at Options.WaitDelay's interval when set (tests).
func (b *baker) pace(p fleet.Pace) fleet.Pace { return p.Scaled(b.waitDelay) }

// waitSnapshot waits for EBS to finish processing the completed snapshot,
// at the SnapshotCompleted pace: the first look at once, as one whose
// blocks were verified may be completed already.
func (b *baker) waitSnapshot(ctx context.Context, id string) error {
	in := &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}
	var s types.Snapshot
	pace := b.pace(fleet.SnapshotCompleted)
	err := pace.Wait(ctx, b.clock, func(ctx context.Context) (bool, error) {
		out, err := b.ec2.DescribeSnapshots(ctx, in)
		switch {
		case fleet.HasCode(err, "InvalidSnapshot.NotFound"):
			return false, nil // EC2 lists a new snapshot only after a moment
		case err != nil:
			return false, fmt.Errorf("bake: reading snapshot %s: %w; check the ec2:DescribeSnapshots permission", id, err)
		case len(out.Snapshots) == 0:
			return false, nil
		}
		s = out.Snapshots[0]
		switch s.State {
		case types.SnapshotStateCompleted:
			return true, nil
		case types.SnapshotStateError:
			return false, fmt.Errorf("bake: snapshot %s failed after completion (state error: %s); its blocks or aggregate checksum did not verify; run `mage bake` again", id, aws.ToString(s.StateMessage))
		}
		return false, nil
	})
	switch {
	case errors.Is(err, fleet.ErrWaitTimeout):
		return fmt.Errorf("bake: snapshot %s still %s after %s; check EBS direct API quotas and the AWS Health dashboard, then run `mage bake` again", id, orUnlisted(string(s.State)), pace.Max)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("bake: waiting for snapshot %s: %w", id, ctx.Err())
	}
	return err
}

func orUnlisted(state string) string {
	if state == "" {
		return "not listed"
	}
	return state
}

// AMIName is the AMI's name, one per image of a site: RegisterImage takes
// no client token, and EC2 refuses a second AMI of a name
// (InvalidAMIName.Duplicate), so a retried or repeated registration finds
// the first instead of making a twin. The site (at most 63 characters) and
// the image digest (64 hex digits) fit EC2's 128.
func AMIName(site, digest string) string { return site + "-" + digest }

// RegisterImageInput is the request that makes the AMI of img from its
// snapshot; preflight's DryRun probe sends the same one.
func RegisterImageInput(c *config.Config, img *image.Receipt, snapID string, tags []types.Tag) *ec2.RegisterImageInput {
	boot := img.Boot
	in := &ec2.RegisterImageInput{
		Name:               aws.String(AMIName(c.Site, img.Digest)),
		Description:        aws.String(fmt.Sprintf("%s: disk image %s, build %s", c.Site, fleet.Short(img.Digest), img.BuildID)),
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

// register creates the AMI from the snapshot and returns it with its root
// snapshot. Its undo is registered before the call: a registration whose
// answer was lost is found again by its name. When the name is taken,
// register adopts the AMI holding it: its own (the first answer was lost)
// or another run's of the same image, whose snapshot then replaces this
// run's, deleted here.
func (b *baker) register(ctx context.Context, img *image.Receipt, snapID string, tags []types.Tag) (amiID, rootSnap string, err error) {
	in := RegisterImageInput(b.cfg, img, snapID, tags)
	name := aws.ToString(in.Name)
	for retried := false; ; retried = true {
		out, err := b.ec2.RegisterImage(ctx, in)
		if err == nil {
			b.undoRegister(aws.ToString(out.ImageId))
			return aws.ToString(out.ImageId), snapID, nil
		}
		if fleet.Unanswered(err) {
			// No answer: the AMI may exist all the same; its name finds it.
			b.undo.Add("deregistering AMI "+name+" a lost RegisterImage may have made",
				"deregister it: aws ec2 describe-images --owners self --filters Name=name,Values="+name+", then aws ec2 deregister-image",
				func(ctx context.Context) error { return b.deregisterOwn(ctx, name, snapID) })
		}
		if !fleet.HasCode(err, "InvalidAMIName.Duplicate") {
			return "", "", fmt.Errorf("bake: registering the AMI from snapshot %s: %w", snapID, err)
		}
		found, err := b.imageNamed(ctx, name)
		if err != nil {
			return "", "", err
		}
		switch {
		case found == nil:
			return "", "", fmt.Errorf("bake: EC2 says an AMI named %s exists (InvalidAMIName.Duplicate) but does not list it after %s; run `mage bake` again", name, b.pace(fleet.NewlyListed).Max)
		case found.Site != b.cfg.Site || found.ImageDigest != img.Digest:
			return "", "", fmt.Errorf("bake: the AMI name %s is taken by %s, which is not site %s's image %s (tags: site %q, image %q); deregister it or change deploy.site", name, found.ID, b.cfg.Site, fleet.Short(img.Digest), found.Site, fleet.Short(found.ImageDigest))
		case found.State == string(types.ImageStateFailed) || found.State == string(types.ImageStateInvalid):
			if retried {
				return "", "", fmt.Errorf("bake: AMI %s (%s) is %s again after registering anew; check the boot settings in the image receipt", found.ID, name, found.State)
			}
			b.log.Warnf("AMI %s of this image is %s; deregistering it and registering again", found.ID, found.State)
			if _, err := b.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(found.ID)}); err != nil {
				return "", "", fmt.Errorf("bake: deregistering the %s AMI %s: %w", found.State, found.ID, err)
			}
			continue
		}
		root := snapID
		if len(found.SnapshotIDs) > 0 {
			root = found.SnapshotIDs[0]
		}
		if root == snapID {
			b.log.Infof("AMI %s was registered by this run (its answer was lost); using it", found.ID)
			b.undoRegister(found.ID)
		} else {
			b.log.Infof("AMI %s of this image was registered by another run; using it and deleting this run's snapshot %s", found.ID, snapID)
			if err := b.deleteSnapshot(ctx, snapID); err != nil && !fleet.HasCode(err, "InvalidSnapshot.NotFound") {
				b.log.WithError(err).Warnf("deleting snapshot %s failed; mage prune deletes it", snapID)
			}
		}
		return found.ID, root, nil
	}
}

// undoRegister registers deregistering the AMI this run made.
func (b *baker) undoRegister(id string) {
	b.undo.Add("deregistering AMI "+id, "deregister it: aws ec2 deregister-image --image-id "+id,
		func(ctx context.Context) error {
			_, err := b.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
			if fleet.HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable") {
				return nil
			}
			return err
		})
}

// imageNamed finds the site's AMI of a name, looking again at the
// NewlyListed pace: EC2 lists a new AMI only after a moment.
func (b *baker) imageNamed(ctx context.Context, name string) (*fleet.AMI, error) {
	var found *fleet.AMI
	err := b.pace(fleet.NewlyListed).AtOnce().Wait(ctx, b.clock, func(ctx context.Context) (bool, error) {
		out, err := b.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
			Owners:  []string{"self"},
			Filters: []types.Filter{{Name: aws.String("name"), Values: []string{name}}},
		})
		if err != nil {
			return false, fmt.Errorf("bake: looking for the AMI named %s: %w; check the ec2:DescribeImages permission", name, err)
		}
		for _, img := range out.Images {
			if aws.ToString(img.Name) == name {
				a := fleet.FromEC2Image(img)
				found = &a
				return true, nil
			}
		}
		return false, nil
	})
	if errors.Is(err, fleet.ErrWaitTimeout) {
		return nil, nil
	}
	return found, err
}

// deregisterOwn is the AMI's undo: the AMI of this name made from this
// run's snapshot, if there is one, is deregistered.
func (b *baker) deregisterOwn(ctx context.Context, name, snapID string) error {
	a, err := b.imageNamed(ctx, name)
	if err != nil || a == nil {
		return err
	}
	if len(a.SnapshotIDs) > 0 && a.SnapshotIDs[0] != snapID {
		return nil // another run's AMI of the same image: not ours to undo
	}
	_, err = b.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(a.ID)})
	if fleet.HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable") {
		return nil
	}
	return err
}

// waitImage waits for the AMI to become available, at the ImageAvailable
// pace: RegisterImage answers with the id alone, so the first look is at once.
func (b *baker) waitImage(ctx context.Context, id string) error {
	in := &ec2.DescribeImagesInput{ImageIds: []string{id}}
	var im types.Image
	pace := b.pace(fleet.ImageAvailable)
	err := pace.Wait(ctx, b.clock, func(ctx context.Context) (bool, error) {
		out, err := b.ec2.DescribeImages(ctx, in)
		switch {
		case fleet.HasCode(err, "InvalidAMIID.NotFound"):
			return false, nil // EC2 lists a new AMI only after a moment
		case err != nil:
			return false, fmt.Errorf("bake: reading AMI %s: %w; check the ec2:DescribeImages permission", id, err)
		case len(out.Images) == 0:
			return false, nil
		}
		im = out.Images[0]
		switch im.State {
		case types.ImageStateAvailable:
			return true, nil
		case types.ImageStatePending:
			return false, nil
		}
		reason := ""
		if im.StateReason != nil {
			reason = ": " + aws.ToString(im.StateReason.Message)
		}
		return false, fmt.Errorf("bake: AMI %s is %s, not available%s; check the boot settings in the image receipt", id, im.State, reason)
	})
	switch {
	case errors.Is(err, fleet.ErrWaitTimeout):
		return fmt.Errorf("bake: AMI %s still %s after %s; check the AWS Health dashboard, then run `mage bake` again", id, orUnlisted(string(im.State)), pace.Max)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("bake: waiting for AMI %s: %w", id, ctx.Err())
	}
	return err
}
