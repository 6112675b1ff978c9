package policy

import (
	"context"
	"fmt"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// Resolve fills Params from the configuration and, where credentials allow,
// from AWS: the account (sts:GetCallerIdentity) and the hosted zone (the
// lookup Swap makes, fleet.FindZone). What cannot be resolved widens to "*"
// and is named in the warnings, with how to narrow it: the policy is still
// correct, only broader. deploy.hosted_zone_id always pins the zone.
func Resolve(ctx context.Context, c *config.Config, awsOpts ...func(*awsconfig.LoadOptions) error) (Params, []string, error) {
	if err := c.Require("policy", "domain"); err != nil {
		return Params{}, nil, err
	}
	p := Params{Site: c.Site, Domain: c.Domain, Region: c.Region, ZoneID: c.HostedZoneID, ZoneConfigured: c.HostedZoneID != "", SubnetID: c.SubnetID, HTTPS: c.HTTPS, Names: c.Names()}
	var warnings []string
	awsCfg, err := awscfg.Load(ctx, c, "policy", awsOpts...)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("%v; the policy allows every region (\"*\")", err))
		if p.ZoneID == "" {
			warnings = append(warnings, "the hosted zone is unknown, so ChangeResourceRecordSets is allowed on hostedzone/* (still only for "+c.Domain+"): set deploy.hosted_zone_id to pin it")
		}
		return p, warnings, nil
	}
	p.Region = awsCfg.Region
	id, err := sts.NewFromConfig(awsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("no AWS credentials to read the account id (%v); the policy allows any account (\"*\"); it is attached in one account anyway", err))
		if p.ZoneID == "" {
			warnings = append(warnings, "the hosted zone is unknown, so ChangeResourceRecordSets is allowed on hostedzone/* (still only for "+c.Domain+"): set deploy.hosted_zone_id or run with credentials to pin it")
		}
		return p, warnings, nil
	}
	p.Account = aws.ToString(id.Account)
	z, err := fleet.FindZone(ctx, route53.NewFromConfig(awsCfg), c.Domain, c.HostedZoneID)
	if err != nil {
		if p.ZoneID == "" {
			warnings = append(warnings, fmt.Sprintf("the hosted zone of %s was not found (%v), so ChangeResourceRecordSets is allowed on hostedzone/* (still only for %s): set deploy.hosted_zone_id to pin it", c.Domain, err, c.Domain))
		} else {
			warnings = append(warnings, fmt.Sprintf("hosted zone %s could not be read (%v); the policy names it as configured", p.ZoneID, err))
		}
		return p, warnings, nil
	}
	p.ZoneID, p.ZoneName = z.ID, z.Name
	return p, warnings, nil
}
