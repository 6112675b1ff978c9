package launch

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// Target is the AMI to start and the build it serves.
type Target struct {
	ImageID     string
	ImageDigest string
	BuildID     string
	Commit      string
}

// target is the build to launch: Options.Target, else the AMI in Bake's
// receipt. Either way it is confirmed in AWS, whose tags have the last word.
func (l *launcher) target(ctx context.Context) (Target, error) {
	if l.opts.Target != nil {
		return l.confirm(ctx, *l.opts.Target)
	}
	br, err := bake.ReadReceipt(l.cfg.BuildDir())
	if err != nil {
		return Target{}, err
	}
	return l.confirm(ctx, Target{ImageID: br.ImageID, ImageDigest: br.ImageDigest, BuildID: br.BuildID, Commit: br.Commit})
}

// confirm checks the AMI exists, is available and belongs to this site, and
// fills in what its tags say.
func (l *launcher) confirm(ctx context.Context, t Target) (Target, error) {
	out, err := l.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{t.ImageID}})
	if fleet.HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed") {
		return Target{}, fmt.Errorf("launch: AMI %q no longer exists; run `mage bake` to make it again", t.ImageID)
	}
	if err != nil {
		return Target{}, fmt.Errorf("launch: describing AMI %s: %w; check the ec2:DescribeImages permission and the region", t.ImageID, err)
	}
	if len(out.Images) == 0 {
		return Target{}, fmt.Errorf("launch: AMI %s no longer exists; run `mage bake` to make it again", t.ImageID)
	}
	a := fleet.FromEC2Image(out.Images[0])
	switch {
	case a.State != string(types.ImageStateAvailable):
		return Target{}, fmt.Errorf("launch: AMI %s is %s, not available; run `mage bake` again", a.ID, a.State)
	case a.Site != l.cfg.Site:
		return Target{}, fmt.Errorf("launch: AMI %s belongs to site %q, not %q (tag %s); check deploy.site", a.ID, a.Site, l.cfg.Site, fleet.TagSite)
	case t.ImageDigest != "" && a.ImageDigest != t.ImageDigest:
		return Target{}, fmt.Errorf("launch: AMI %s holds image %s, not %s; run `mage bake` again", a.ID, fleet.Short(a.ImageDigest), fleet.Short(t.ImageDigest))
	}
	found := Target{ImageID: a.ID, ImageDigest: a.ImageDigest, BuildID: a.BuildID, Commit: a.Commit}
	if found.BuildID == "" || found.BuildID == "unknown" {
		found.BuildID = t.BuildID
	}
	if found.Commit == "" || found.Commit == "unknown" {
		found.Commit = fleet.OrUnknown(t.Commit)
	}
	if found.BuildID == "" || found.BuildID == "unknown" {
		// The gate cannot tell builds apart without one.
		return Target{}, fmt.Errorf("launch: AMI %s has no %s tag and the bake receipt names no build; run `mage bake` again", a.ID, fleet.TagBuildID)
	}
	return found, nil
}
