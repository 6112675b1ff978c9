package launch

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// Target is the AMI to start and the build it serves.
type Target struct {
	ImageID     string
	ImageSHA256 string
	BuildID     string
	Commit      string
}

// bakeReceipt is the part of Bake's receipt (_build/bake.json) Launch reads.
type bakeReceipt struct {
	ImageID     string `json:"image_id"`
	ImageSHA256 string `json:"image_sha256"`
}

// bakeReceiptName is Bake's receipt under _build/.
const bakeReceiptName = "bake"

// target finds the AMI to launch: the one in _build/bake.json if it still
// exists, else the site's AMI tagged with the image's sha256 (state lives in
// AWS: a fresh checkout that ran `mage image` finds what an earlier bake made).
func (l *launcher) target(ctx context.Context) (Target, error) {
	if l.opts.Target != nil {
		return l.confirm(ctx, *l.opts.Target)
	}
	var br bakeReceipt
	ok, err := receipt.Read(l.cfg.BuildDir(), bakeReceiptName, &br)
	if err != nil {
		return Target{}, err
	}
	sha := br.ImageSHA256
	if ok && br.ImageID != "" {
		t, err := l.confirm(ctx, Target{ImageID: br.ImageID, ImageSHA256: sha})
		if err == nil {
			return t, nil
		}
		l.log.WithError(err).Warnf("the AMI in %s is not usable; looking for the image's AMI by its sha256", receipt.Path(l.cfg.BuildDir(), bakeReceiptName))
	}
	if sha == "" {
		img, err := image.ReadReceipt(l.cfg.BuildDir())
		if err != nil {
			return Target{}, fmt.Errorf("launch: no AMI to launch: %s is missing and %w", receipt.Path(l.cfg.BuildDir(), bakeReceiptName), err)
		}
		sha = img.SHA256
	}
	amis, err := SiteImages(ctx, l.ec2, l.cfg.Site,
		types.Filter{Name: aws.String("tag:" + TagImageSHA256), Values: []string{sha}},
		types.Filter{Name: aws.String("state"), Values: []string{"available"}})
	if err != nil {
		return Target{}, fmt.Errorf("launch: %w", err)
	}
	if len(amis) == 0 {
		return Target{}, fmt.Errorf("launch: site %s has no available AMI of image %s; run `mage bake`", l.cfg.Site, short(sha))
	}
	a := amis[len(amis)-1]
	return l.complete(Target{ImageID: a.ID, ImageSHA256: a.ImageSHA256, BuildID: a.BuildID, Commit: a.Commit})
}

// confirm checks the AMI exists, is available and belongs to this site, and
// fills in what its tags say.
func (l *launcher) confirm(ctx context.Context, t Target) (Target, error) {
	out, err := l.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{t.ImageID}})
	if HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable") {
		return Target{}, fmt.Errorf("launch: AMI %s no longer exists; run `mage bake` to make it again", t.ImageID)
	}
	if err != nil {
		return Target{}, fmt.Errorf("launch: describing AMI %s: %w; check the ec2:DescribeImages permission and the region", t.ImageID, err)
	}
	if len(out.Images) == 0 {
		return Target{}, fmt.Errorf("launch: AMI %s no longer exists; run `mage bake` to make it again", t.ImageID)
	}
	a := FromEC2Image(out.Images[0])
	switch {
	case a.State != string(types.ImageStateAvailable):
		return Target{}, fmt.Errorf("launch: AMI %s is %s, not available; run `mage bake` again", a.ID, a.State)
	case a.Site != l.cfg.Site:
		return Target{}, fmt.Errorf("launch: AMI %s belongs to site %q, not %q (tag %s); check deploy.site", a.ID, a.Site, l.cfg.Site, TagSite)
	case t.ImageSHA256 != "" && a.ImageSHA256 != t.ImageSHA256:
		return Target{}, fmt.Errorf("launch: AMI %s holds image %s, not %s; run `mage bake` again", a.ID, short(a.ImageSHA256), short(t.ImageSHA256))
	}
	return l.complete(Target{ImageID: a.ID, ImageSHA256: a.ImageSHA256, BuildID: a.BuildID, Commit: a.Commit})
}

// complete fills a missing build id from the site receipt; the health gate
// cannot tell builds apart without one.
func (l *launcher) complete(t Target) (Target, error) {
	if t.BuildID == "" || t.BuildID == "unknown" {
		r, err := site.ReadReceipt(l.cfg.BuildDir())
		if err != nil {
			return Target{}, fmt.Errorf("launch: AMI %s has no %s tag and %w", t.ImageID, TagBuildID, err)
		}
		t.BuildID = r.BuildID
	}
	if t.Commit == "" {
		t.Commit = "unknown"
	}
	return t, nil
}
