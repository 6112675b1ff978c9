package launch

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// anywhere is the only source the blog's ports are open to.
const anywhere = "0.0.0.0/0"

// securityGroup makes sure the site's group exists and lets in TCP on the
// wanted ports from anywhere and nothing else, and returns its id. It is
// idempotent: found by name, created if missing (a concurrent or retried
// create that lost its answer shows up as InvalidGroup.Duplicate and is
// found again), rules added when missing and revoked when extra.
func (l *launcher) securityGroup(ctx context.Context) (string, error) {
	name := fleet.SecurityGroupName(l.cfg.Site)
	vpc := ""
	if l.subnet != "" {
		out, err := l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{l.subnet}})
		if err != nil || len(out.Subnets) == 0 {
			return "", fmt.Errorf("launch: looking up subnet %s: %v; check subnet_id and the region", l.subnet, err)
		}
		vpc = aws.ToString(out.Subnets[0].VpcId)
	}
	sg, err := FindSecurityGroup(ctx, l.ec2, l.cfg.Site, vpc)
	if err != nil {
		return "", err
	}
	if sg == nil {
		out, err := l.ec2.CreateSecurityGroup(ctx, CreateSecurityGroupInput(l.cfg.Site, vpc))
		switch {
		case fleet.HasCode(err, "InvalidGroup.Duplicate"):
			if sg, err = FindSecurityGroup(ctx, l.ec2, l.cfg.Site, vpc); err != nil {
				return "", err
			}
			if sg == nil {
				return "", fmt.Errorf("launch: security group %s exists (InvalidGroup.Duplicate) but cannot be found; check ec2:DescribeSecurityGroups", name)
			}
		case err != nil:
			return "", fmt.Errorf("launch: creating security group %s: %w; check the ec2:CreateSecurityGroup permission", name, err)
		default:
			l.log.Infof("created security group %s (%s)", name, aws.ToString(out.GroupId))
			sg = &types.SecurityGroup{GroupId: out.GroupId, GroupName: aws.String(name)}
		}
	}
	id := aws.ToString(sg.GroupId)
	return id, l.ensureRules(ctx, id, sg.IpPermissions)
}

// CreateSecurityGroupInput is the request that creates the site's group (in
// vpc; "" is the default VPC); preflight's DryRun probe sends the same one.
func CreateSecurityGroupInput(site, vpc string) *ec2.CreateSecurityGroupInput {
	name := fleet.SecurityGroupName(site)
	in := &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(name),
		Description: aws.String("blog " + site + ": HTTP in, nothing else (managed by mage launch)"),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeSecurityGroup,
			Tags:         []types.Tag{fleet.Tag("Name", name), fleet.Tag(fleet.TagSite, site)},
		}},
	}
	if vpc != "" {
		in.VpcId = aws.String(vpc)
	}
	return in
}

// FindSecurityGroup returns the site's group (in vpc, when given), nil when
// there is none. The name is checked here too: a filter an API ignores must
// not hand back another group.
func FindSecurityGroup(ctx context.Context, api ec2.DescribeSecurityGroupsAPIClient, site, vpc string) (*types.SecurityGroup, error) {
	name := fleet.SecurityGroupName(site)
	filters := []types.Filter{{Name: aws.String("group-name"), Values: []string{name}}}
	if vpc != "" {
		filters = append(filters, types.Filter{Name: aws.String("vpc-id"), Values: []string{vpc}})
	}
	var found []types.SecurityGroup
	p := ec2.NewDescribeSecurityGroupsPaginator(api, &ec2.DescribeSecurityGroupsInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("launch: looking for security group %s: %w; check the ec2:DescribeSecurityGroups permission", name, err)
		}
		for _, g := range page.SecurityGroups {
			if aws.ToString(g.GroupName) == name && (vpc == "" || aws.ToString(g.VpcId) == vpc) {
				found = append(found, g)
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return &found[0], nil
	}
	var where []string
	for _, g := range found {
		where = append(where, aws.ToString(g.GroupId)+" in "+aws.ToString(g.VpcId))
	}
	return nil, fmt.Errorf("launch: %d security groups are called %s (%s); set deploy.subnet_id to choose the VPC, or delete the extra ones", len(found), name, strings.Join(where, ", "))
}

// ensureRules authorizes the missing ports and revokes every other ingress rule.
func (l *launcher) ensureRules(ctx context.Context, id string, have []types.IpPermission) error {
	var extra []types.IpPermission
	present := map[int32]bool{}
	for _, p := range have {
		port := aws.ToInt32(p.FromPort)
		ok := aws.ToString(p.IpProtocol) == "tcp" && port == aws.ToInt32(p.ToPort) && slices.Contains(l.ports, port) &&
			len(p.Ipv6Ranges) == 0 && len(p.PrefixListIds) == 0 && len(p.UserIdGroupPairs) == 0
		var keep, drop []types.IpRange
		for _, r := range p.IpRanges {
			if ok && aws.ToString(r.CidrIp) == anywhere {
				keep = append(keep, r)
			} else {
				drop = append(drop, r)
			}
		}
		if len(keep) > 0 {
			present[port] = true
		}
		if !ok && (len(p.Ipv6Ranges) > 0 || len(p.PrefixListIds) > 0 || len(p.UserIdGroupPairs) > 0) {
			extra = append(extra, p)
			continue
		}
		if len(drop) > 0 {
			x := p
			x.IpRanges, x.Ipv6Ranges, x.PrefixListIds, x.UserIdGroupPairs = drop, nil, nil, nil
			extra = append(extra, x)
		}
	}
	if len(extra) > 0 {
		l.log.Warnf("security group %s has %d ingress rule(s) beyond TCP %v from anywhere; revoking them", id, len(extra), l.ports)
		if _, err := l.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: extra}); err != nil && !fleet.HasCode(err, "InvalidPermission.NotFound") {
			return fmt.Errorf("launch: revoking extra ingress rules of security group %s: %w", id, err)
		}
	}
	var missing []types.IpPermission
	for _, port := range l.ports {
		if !present[port] {
			missing = append(missing, types.IpPermission{
				IpProtocol: aws.String("tcp"), FromPort: aws.Int32(port), ToPort: aws.Int32(port),
				IpRanges: []types.IpRange{{CidrIp: aws.String(anywhere), Description: aws.String(fmt.Sprintf("blog: TCP %d from anywhere", port))}},
			})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err := l.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: missing})
	if err != nil && !fleet.HasCode(err, "InvalidPermission.Duplicate") {
		return fmt.Errorf("launch: opening TCP %v in security group %s: %w; check the ec2:AuthorizeSecurityGroupIngress permission", l.ports, id, err)
	}
	return nil
}
