package launch_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testca"
	"github.com/unikernel-blog/blog/magefiles/launch"
)

// ingress lists a group's rules as "proto/port/cidr".
func ingress(t *testing.T, x *ec2.Client, id string) []string {
	t.Helper()
	out, err := x.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
	if err != nil || len(out.SecurityGroups) != 1 {
		t.Fatal(out, err)
	}
	var rules []string
	for _, p := range out.SecurityGroups[0].IpPermissions {
		for _, r := range p.IpRanges {
			rules = append(rules, fmt.Sprintf("%s/%d-%d/%s", aws.ToString(p.IpProtocol), aws.ToInt32(p.FromPort), aws.ToInt32(p.ToPort), aws.ToString(r.CidrIp)))
		}
	}
	slices.Sort(rules)
	return slices.Compact(rules)
}

func TestSecurityGroupIsMadeExact(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	fleettest.Bake(t, h, c, "build1")
	x := h.EC2(t)
	ctx := context.Background()
	// The group exists already, with SSH opened by hand and HTTP from one network only.
	sg, err := x.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(fleet.SecurityGroupName(c.Site)), Description: aws.String("by hand")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: []types.IpPermission{
		{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}},
		{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(80), ToPort: aws.Int32(80), IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}},
	}}); err != nil {
		t.Fatal(err)
	}
	log, _ := quietLog()
	o := opts(c, log)
	// https: the candidate serves TLS for the domain, which the gate checks.
	ca := testca.New(t, "test root")
	leaf := ca.Leaf(t, c.Domain)
	builds.ServeTLS(t, func() (*tls.Certificate, error) { return &leaf, nil })
	c.HTTPS, c.HealthURL, c.ACMERoots = true, builds.HTTPSHealthURL(), ca.PEMFile(t)
	r, err := launch.Launch(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.SecurityGroupID != aws.ToString(sg.GroupId) {
		t.Fatalf("launched into %s, want the existing group %s", r.SecurityGroupID, aws.ToString(sg.GroupId))
	}
	if got, want := ingress(t, x, r.SecurityGroupID), []string{"tcp/443-443/0.0.0.0/0", "tcp/80-80/0.0.0.0/0"}; !slices.Equal(got, want) {
		t.Fatalf("ingress %v, want %v: TCP 80 and 443 from anywhere and nothing else", got, want)
	}
}

func TestSecurityGroupInTheSubnetsVPC(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	fleettest.Bake(t, h, c, "build1")
	x := h.EC2(t)
	ctx := context.Background()
	vpc, err := x.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := x.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.1.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := quietLog()
	o := opts(c, log)
	c.SubnetID = aws.ToString(sub.Subnet.SubnetId)
	r, err := launch.Launch(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	out, err := x.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{r.SecurityGroupID}})
	if err != nil || len(out.SecurityGroups) != 1 || aws.ToString(out.SecurityGroups[0].VpcId) != aws.ToString(vpc.Vpc.VpcId) {
		t.Fatalf("security group %+v (%v), want it in %s", out, err, aws.ToString(vpc.Vpc.VpcId))
	}
}

func TestRelaunchAfterTerminationUsesTheNextToken(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	fleettest.Bake(t, h, c, "build1")
	log, _ := quietLog()
	ctx := context.Background()
	r1, err := launch.Launch(ctx, opts(c, log))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.EC2(t).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{r1.InstanceID}}); err != nil {
		t.Fatal(err)
	}
	h.Calls.Reset()
	r2, err := launch.Launch(ctx, opts(c, log))
	if err != nil {
		t.Fatal(err)
	}
	// EC2 answers the first token with the terminated instance; the next starts a new one.
	if r2.InstanceID == r1.InstanceID || h.Calls.Count("ec2", "RunInstances") != 2 {
		t.Fatalf("relaunch gave %s after %d RunInstances; want a new instance after 2", r2.InstanceID, h.Calls.Count("ec2", "RunInstances"))
	}
}
