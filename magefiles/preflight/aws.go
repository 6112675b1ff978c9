package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/launch"
)

// policyFix is the fix for every denied permission.
const policyFix = "attach the policy `mage policy` prints to the deploy role (README: Set up AWS once)"

// Run is Local, then the AWS checks: credentials, hosted zone and record,
// and the permissions of the calls that create and remove things, by DryRun.
func Run(ctx context.Context, opts Options) *Report {
	r, awsCfg := Local(ctx, opts)
	if len(r.Failed()) > 0 && awsCfg.Region == "" {
		r.skip(CheckCreds, "not checked: fix the configuration first")
		return r
	}
	c := opts.Config

	id, err := sts.NewFromConfig(awsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		r.fail(CheckCreds, "sts:GetCallerIdentity failed: "+apiMessage(err),
			"give the AWS SDK credentials: AWS_PROFILE (after aws configure or aws sso login) on a workstation, the OIDC role in CI (README: Set up AWS once)")
		return r
	}
	r.pass(CheckCreds, fmt.Sprintf("account %s as %s", aws.ToString(id.Account), aws.ToString(id.Arn)))

	if c.Domain != "" {
		r53 := route53.NewFromConfig(awsCfg)
		z, err := fleet.FindZone(ctx, r53, c.Domain, c.HostedZoneID)
		if err != nil {
			r.fail(CheckZone, err.Error(), "create a public hosted zone for the domain and delegate the domain to its name servers (README: Set up AWS once), or set deploy.hosted_zone_id")
		} else {
			r.pass(CheckZone, fmt.Sprintf("%s (%s)", z.ID, z.Name))
			rec, err := fleet.ReadRecord(ctx, r53, z, c.Domain)
			switch {
			case err != nil:
				r.fail(CheckRecord, err.Error(), "change the record as the message says; Swap then manages it")
			case rec.Type == "":
				r.pass(CheckRecord, rec.Name+" has no record yet: the first deploy creates it")
			default:
				r.pass(CheckRecord, fmt.Sprintf("%s %s → %s", rec.Name, rec.Type, rec.Target))
			}
		}
	}

	x := ec2.NewFromConfig(awsCfg)
	amis, err1 := fleet.SiteImages(ctx, x, c.Site)
	insts, err2 := fleet.SiteInstances(ctx, x, c.Site)
	snaps, err3 := fleet.SiteSnapshots(ctx, x, c.Site)
	if err := errors.Join(err1, err2, err3); err != nil {
		r.fail(CheckList, apiMessage(err), policyFix)
		return r
	}
	r.pass(CheckList, fmt.Sprintf("%d AMI(s), %d instance(s), %d snapshot(s) of site %s", len(amis), len(insts), len(snaps), c.Site))
	permissions(ctx, r, x, opts, amis, insts, snaps)
	return r
}

// dryRun is one permission probe.
type dryRun struct {
	action string
	// call makes the request with DryRun set; "" skip means it ran.
	call func(ctx context.Context) error
	skip string // why it cannot be probed yet
}

func permissions(ctx context.Context, r *Report, x *ec2.Client, opts Options, amis []fleet.AMI, insts []fleet.Instance, snaps []fleet.Snapshot) {
	c := opts.Config
	dry := aws.Bool(true)
	var ami, snap, inst string
	for i := len(amis) - 1; i >= 0 && ami == ""; i-- {
		if amis[i].State == string(types.ImageStateAvailable) {
			ami = amis[i].ID
		}
	}
	for i := len(snaps) - 1; i >= 0 && snap == ""; i-- {
		if snaps[i].State == string(types.SnapshotStateCompleted) {
			snap = snaps[i].ID
		}
	}
	if len(insts) > 0 {
		inst = insts[len(insts)-1].ID
	}
	// RunInstances is authorized against the security group too, and the
	// policy allows only the site's (tagged) group: probe with it, as Launch runs.
	g, err := launch.FindSecurityGroup(ctx, x, c.Site, "")
	if err != nil {
		r.fail("permission ec2:DescribeSecurityGroups", apiMessage(err), policyFix)
		return
	}
	var sg string
	if g != nil {
		sg = aws.ToString(g.GroupId)
	}
	none := func(what string) string {
		return "not probed: the site has no " + what + " yet; the first deploy makes one (the policy of `mage policy` grants it)"
	}
	// Each probe sends the request the real call sends, with DryRun set.
	probes := []dryRun{
		{action: "ec2:CreateSecurityGroup", call: func(ctx context.Context) error {
			in := launch.CreateSecurityGroupInput(c.Site, "")
			in.DryRun = dry
			_, err := x.CreateSecurityGroup(ctx, in)
			return err
		}},
		{action: "ec2:AllocateAddress", call: func(ctx context.Context) error {
			in := fleet.AllocateAddressInput(c.Site)
			in.DryRun = dry
			_, err := x.AllocateAddress(ctx, in)
			return err
		}},
		{action: "ec2:RunInstances", skip: none("AMI or security group"), call: func(ctx context.Context) error {
			in := launch.RunInstancesInput(c, launch.Target{ImageID: ami, BuildID: "preflight", Commit: "preflight"}, sg, "")
			in.DryRun, in.ClientToken = dry, nil
			_, err := x.RunInstances(ctx, in)
			return err
		}},
		{action: "ec2:RegisterImage", skip: none("completed snapshot"), call: func(ctx context.Context) error {
			img := &image.Receipt{Digest: "preflight", BuildID: "preflight", SizeBytes: image.DefaultSize, Boot: layout.HVMUEFI}
			in := bake.RegisterImageInput(c, img, snap, []types.Tag{fleet.Tag(fleet.TagSite, c.Site)})
			in.DryRun = dry
			_, err := x.RegisterImage(ctx, in)
			return err
		}},
		{action: "ec2:CreateTags", skip: none("instance"), call: func(ctx context.Context) error {
			in := fleet.SetRoleInput(fleet.RoleLive, inst)
			in.DryRun = dry
			_, err := x.CreateTags(ctx, in)
			return err
		}},
		{action: "ec2:TerminateInstances", skip: none("instance"), call: func(ctx context.Context) error {
			_, err := x.TerminateInstances(ctx, &ec2.TerminateInstancesInput{DryRun: dry, InstanceIds: []string{inst}})
			return err
		}},
		{action: "ec2:DeregisterImage", skip: none("AMI"), call: func(ctx context.Context) error {
			_, err := x.DeregisterImage(ctx, &ec2.DeregisterImageInput{DryRun: dry, ImageId: aws.String(ami)})
			return err
		}},
		{action: "ec2:DeleteSnapshot", skip: none("completed snapshot"), call: func(ctx context.Context) error {
			_, err := x.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{DryRun: dry, SnapshotId: aws.String(snap)})
			return err
		}},
	}
	// Which probes have what they need.
	have := map[string]bool{
		"ec2:CreateSecurityGroup": true, "ec2:AllocateAddress": true,
		"ec2:RunInstances": ami != "" && sg != "", "ec2:DeregisterImage": ami != "",
		"ec2:RegisterImage": snap != "", "ec2:DeleteSnapshot": snap != "",
		"ec2:CreateTags": inst != "", "ec2:TerminateInstances": inst != "",
	}
	for _, p := range probes {
		name := "permission " + p.action
		if !have[p.action] {
			r.skip(name, p.skip)
			continue
		}
		err := p.call(ctx)
		switch {
		case fleet.HasCode(err, "DryRunOperation"):
			r.pass(name, "allowed (DryRun)")
		case fleet.HasCode(err, "UnauthorizedOperation"):
			r.fail(name, "denied (DryRun answered UnauthorizedOperation)", policyFix)
		case err == nil:
			r.fail(name, "the DryRun call succeeded instead of answering DryRunOperation", "report this: the endpoint ignored DryRun")
		default:
			r.fail(name, "the DryRun call failed: "+apiMessage(err), policyFix+"; or fix what the error names")
		}
	}
	r.skip("permission ebs:* route53:ChangeResourceRecordSets", "no dry run exists for these; the policy of `mage policy` grants them")
}

// apiMessage is an error's AWS code and message, else its text.
func apiMessage(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return strings.TrimSpace(api.ErrorCode() + ": " + api.ErrorMessage())
	}
	return err.Error()
}
