package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/rollback"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/policy"
	"github.com/unikernel-blog/blog/magefiles/preflight"
)

// TestPolicyGrantsExactlyTheCallsMade runs every flow that calls AWS (the
// preflight, deploys through the real Bake holding the lease, a failed
// health gate, a bake cancelled after registering its AMI, rollback, status,
// prune of strays, old AMIs and orphan snapshots, an existing security group
// with a rule to revoke, a stale lease broken by hand, destroy) and compares the IAM actions recorded with those `mage policy`
// grants, both ways: a call the policy misses would fail in AWS, a grant no
// code makes is privilege to take away. Once with the zone found by name
// and the default VPC, once with deploy.hosted_zone_id and deploy.subnet_id,
// which change the calls made.
func TestPolicyGrantsExactlyTheCallsMade(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		name := "zone by name, default VPC"
		if pinned {
			name = "hosted_zone_id and subnet_id"
		}
		t.Run(name, func(t *testing.T) {
			called, p := recordFlows(t, pinned)
			granted := append(policy.Build(p).Actions(), policy.Unpermissioned()...)
			for _, a := range called {
				if !slices.Contains(granted, a) {
					t.Errorf("the code calls %s, which the policy does not grant: add it to policy.Table", a)
				}
			}
			for _, a := range granted {
				if !slices.Contains(called, a) {
					t.Errorf("the policy grants %s, which no flow called: remove it from policy.Table (or a flow is not exercised)", a)
				}
			}
			t.Logf("%d actions called: %v", len(called), called)
		})
	}
}

// recordFlows runs the flows and returns the distinct actions they called,
// without the test's own set-up calls, and the policy parameters of the site.
func recordFlows(t *testing.T, pinned bool) ([]string, policy.Params) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	e.C.UploadParallel = 4
	// https (the default): the Cert step's calls, and a gate over TLS.
	e.C.Aliases = []string{"alias." + e.C.Domain}
	e.HTTPS()
	ctx := context.Background()
	x := e.H.EC2(t)
	called := map[string]bool{}
	keep := func() {
		for _, a := range e.H.Calls.Actions() {
			called[a] = true
		}
		e.H.Calls.Reset()
	}
	// setup runs test set-up whose calls are not the code's.
	setup := func(f func()) {
		t.Helper()
		keep()
		f()
		e.H.Calls.Reset()
	}
	e.H.Calls.Reset() // the zones fleettest.NewEnv made

	var vpc *string
	if pinned {
		setup(func() {
			z, err := fleet.FindZone(ctx, e.R53, e.C.Domain, "")
			if err != nil {
				t.Fatal(err)
			}
			e.C.HostedZoneID = z.ID
			v, err := x.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := x.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: aws.String("10.1.1.0/24")})
			if err != nil {
				t.Fatal(err)
			}
			vpc, e.C.SubnetID = v.Vpc.VpcId, aws.ToString(sub.Subnet.SubnetId)
		})
	}
	// The site's security group exists, tagged, with SSH opened by hand:
	// Launch revokes it.
	setup(func() {
		sg, err := x.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(fleet.SecurityGroupName(e.C.Site)), Description: aws.String("by hand"), VpcId: vpc,
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup, Tags: []types.Tag{{Key: aws.String(fleet.TagSite), Value: aws.String(e.C.Site)}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: []types.IpPermission{
			{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}},
		}}); err != nil {
			t.Fatal(err)
		}
	})

	pre := func() {
		t.Helper()
		r := preflight.Run(ctx, preflight.Options{Config: e.C,
			LookPath: func(n string) (string, error) { return "/usr/bin/" + n, nil },
			Getenv:   func(string) string { return "" }})
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
	}
	bakeBuild := func(ctx context.Context, build string) (*bake.Receipt, error) {
		fleettest.WriteImage(t, e.C, build) // no AWS call
		return bake.Bake(ctx, bake.Options{Config: e.C, Log: e.Log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond})
	}

	// A new site: preflight, then v1 and v2 deployed (v1 drained and
	// terminated), the first with a new certificate, the second reusing it.
	pre()
	for _, build := range []string{"build1", "build2"} {
		if _, err := e.Cert(ctx, build); err != nil {
			t.Fatal(err)
		}
		if _, err := bakeBuild(ctx, build); err != nil {
			t.Fatal(err)
		}
		e.MustDeploy()
	}
	// Preflight again: with an AMI, a snapshot and an instance, every DryRun probe runs.
	pre()

	// v3 fails its health gate: console output read, the candidate terminated.
	if _, err := bakeBuild(ctx, "build3"); err != nil {
		t.Fatal(err)
	}
	e.Builds.Break("build3", http.StatusServiceUnavailable, "")
	e.C.HealthTimeout = 100 * time.Millisecond
	if _, _, err := e.Deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("deploy of a broken build: %v", err)
	}
	e.C.HealthTimeout = 5 * time.Second
	e.Builds.Fix("build3")

	// A bake cancelled while it waits for its AMI: the AMI is deregistered
	// and the snapshot deleted.
	cctx, cancel := context.WithCancel(ctx)
	var registered, stopped atomic.Bool
	e.H.Calls.OnCall(func(c awsharness.Call) {
		switch {
		case c.Operation == "RegisterImage":
			registered.Store(true)
		case registered.Load() && c.Operation == "DescribeImages" && !stopped.Swap(true):
			cancel()
		}
	})
	if _, err := bakeBuild(cctx, "build4"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled bake: %v", err)
	}
	if e.H.Calls.Count("ec2", "DeregisterImage") == 0 || e.H.Calls.Count("ec2", "DeleteSnapshot") == 0 {
		t.Fatalf("the cancelled bake did not undo its AMI and snapshot: %v", e.H.Calls.Calls())
	}

	// Rollback to v1 (relaunched), status, a stray candidate (v3, healthy
	// now) and an orphan snapshot, then prune keeping one AMI.
	if _, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions()); err != nil {
		t.Fatal(err)
	}
	if _, err := launch.Launch(ctx, e.LaunchOptions()); err != nil {
		t.Fatal(err)
	}
	setup(func() { fleettest.OrphanSnapshot(t, e, true) })
	if err := fleet.Status(ctx, e.FleetOptions(), io.Discard); err != nil {
		t.Fatal(err)
	}
	e.C.KeepImages = 1
	plan, err := fleet.Prune(ctx, e.FleetOptions(), io.Discard, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Terminate) == 0 || len(plan.Deregister) == 0 || len(plan.DeleteSnapshots) == 0 {
		t.Fatalf("prune had too little to do to exercise its calls: %+v", plan)
	}
	// A lease left by a run that died elsewhere, broken by hand.
	setup(func() {
		lctx, lease, err := fleet.AcquireLease(ctx, e.R53, e.ZoneOf(), e.C.Domain, e.C.Site, fleet.LeaseOptions{Op: "deploy"})
		if err != nil || lctx == nil {
			t.Fatal(err)
		}
		_ = lease // never released: its run "died"
	})
	if err := fleet.Unlock(ctx, e.FleetOptions(), io.Discard); err != nil {
		t.Fatal(err)
	}
	// And the site destroyed: the record, the instances, the address, the
	// AMIs, the snapshots, the group.
	if _, err := fleet.Destroy(ctx, e.FleetOptions(), io.Discard, true); err != nil {
		t.Fatal(err)
	}
	keep()

	var out []string
	for a := range called {
		out = append(out, a)
	}
	slices.Sort(out)
	return out, policy.Params{Site: e.C.Site, Domain: e.C.Domain, Region: e.C.Region, ZoneID: e.C.HostedZoneID, ZoneConfigured: pinned, SubnetID: e.C.SubnetID, HTTPS: true, Names: e.C.Names()}
}
