package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/rollback"
)

// another is a second machine deploying the same site: its own checkout
// (receipts), build b baked.
func another(t *testing.T, e *fleettest.Env, b fleettest.Build) deploy.Options {
	t.Helper()
	c := *e.C
	c.Root = t.TempDir()
	if err := os.MkdirAll(c.BuildDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	fleettest.WriteBakeReceipt(t, &c, b)
	o := e.DeployOptions()
	o.Config = &c
	return o
}

// TestConcurrentDeploysServeThroughout starts two deploys of the same site,
// of two builds, together, many times over: the second waits for the
// first's lease, both succeed, a reader gets one of the builds at every
// moment (sampled at every AWS call and every millisecond), and the site
// ends on one of the two, with one address and no lease left.
func TestConcurrentDeploysServeThroughout(t *testing.T) {
	for trial := range 8 {
		t.Run(fmt.Sprint("trial ", trial), func(t *testing.T) {
			e := fleettest.NewEnv(t, trial%2 == 1, awsharness.Options{Seed: uint64(trial + 1)})
			fleettest.Bake(t, e.H, e.C, "build0")
			e.MustDeploy()
			b1 := fleettest.Bake(t, e.H, e.C, "build1")
			b2 := fleettest.Bake(t, e.H, e.C, "build2")
			o1, o2 := another(t, e, b1), another(t, e, b2)

			w := e.Watch("build0", "build1", "build2")
			e.H.Calls.Reset()
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, o := range []deploy.Options{o1, o2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = deploy.Run(context.Background(), o)
				}()
			}
			wg.Wait()
			w.Stop(t)
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("concurrent deploys: %v", err)
			}
			if n := e.H.Calls.Count("ec2", "AssociateAddress"); n < 2 {
				t.Fatalf("the address moved %d times: both deploys must have gone live, one after the other", n)
			}
			build, err := e.Serves()
			if err != nil || build != "build1" && build != "build2" {
				t.Fatalf("the site ends on %q (%v), want build1 or build2", build, err)
			}
			a := e.Address()
			in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), a.InstanceID)
			e.WantLive(a.InstanceID, in.BuildID)
			if _, found, _ := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); found {
				t.Fatal("a lease is left")
			}
			insts, _, _ := fleettest.Leftovers(t, e.H, e.C.Site)
			for _, id := range insts {
				if in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), id); id != a.InstanceID && in.Role != fleet.RoleDraining {
					t.Errorf("instance %s (%s, build %s) is left, neither live nor in its grace", id, in.Role, in.BuildID)
				}
			}
		})
	}
}

// TestADeployWaitsForAHeldLeaseThenProceeds holds the site's lease as
// another run would; a deploy started meanwhile says it waits, for whom,
// touches nothing, and proceeds once the lease is released.
func TestADeployWaitsForAHeldLeaseThenProceeds(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	ctx := context.Background()
	fleettest.Bake(t, e.H, e.C, "build1")
	_, held, err := fleet.AcquireLease(ctx, e.R53, e.ZoneOf(), e.C.Domain, e.C.Site, fleet.LeaseOptions{Op: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	l, hook := test.NewNullLogger()
	o := e.DeployOptions()
	o.Log = logrus.NewEntry(l)
	o.Launch.Log, o.Swap.Log = o.Log, o.Log
	waiting := func() bool {
		for _, en := range hook.AllEntries() {
			if strings.Contains(en.Message, "waiting for the deploy lease of site "+e.C.Site+", held by "+held.Holder().Owner) {
				return true
			}
		}
		return false
	}
	done := make(chan error, 1)
	go func() {
		_, err := deploy.Run(ctx, o)
		done <- err
	}()
	for !waiting() {
		select {
		case err := <-done:
			t.Fatalf("the deploy did not wait for the lease: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if n := e.H.Calls.Count("ec2", "RunInstances") + e.H.Calls.Count("ec2", "CreateSecurityGroup"); n != 0 {
		t.Fatalf("the waiting deploy changed the site (%d calls)", n)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the deploy after the wait: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the deploy did not proceed once the lease was released")
	}
	e.WantLive(e.Address().InstanceID, "build1")
}

// TestRollbackGoesToTheLastLiveBuild: v1 live, v2 fails its gate, v3 live,
// rollback: back at v1, the last build that was live, not v2. Then prune
// with keep_images 1 keeps v3 (the rollback target now) and v1 (live), and
// removes v2 first.
func TestRollbackGoesToTheLastLiveBuild(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	ctx := context.Background()
	v1 := fleettest.Bake(t, e.H, e.C, "build1")
	e.MustDeploy()
	v2 := fleettest.Bake(t, e.H, e.C, "build2")
	e.Builds.Break("build2", http.StatusServiceUnavailable, "")
	e.C.HealthTimeout = 50 * time.Millisecond
	if _, _, err := e.Deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("v2: %v, want a failed gate", err)
	}
	e.C.HealthTimeout = 5 * time.Second
	v3 := fleettest.Bake(t, e.H, e.C, "build3")
	lr3, _ := e.MustDeploy()
	e.WantLive(lr3.InstanceID, "build3")

	// Before the rollback the plan keeps v3 (live) and v1 (the rollback
	// target), never the build that failed.
	e.C.KeepImages = 1
	var out bytes.Buffer
	plan, err := fleet.Prune(ctx, e.FleetOptions(), &out, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(plan.Keep); !slices.Equal(got, sorted(v1.ImageID, v3.ImageID)) || len(plan.Deregister) != 1 || plan.Deregister[0].ID != v2.ImageID {
		t.Fatalf("prune plan before the rollback keeps %v, deregisters %v; want v1 and v3 kept, v2 gone\n%s", got, ids(plan.Deregister), out.String())
	}

	rr, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	e.WantLive(rr.InstanceID, "build1")
	if in, _, _ := fleet.DescribeInstance(ctx, e.H.EC2(t), rr.InstanceID); in.ImageID != v1.ImageID {
		t.Fatalf("rolled back to %s (AMI %s), want v1's AMI %s", rr.InstanceID, in.ImageID, v1.ImageID)
	}

	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatal(err)
	}
	_, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if !slices.Equal(amis, sorted(v1.ImageID, v3.ImageID)) || !slices.Equal(snaps, sorted(v1.SnapshotID, v3.SnapshotID)) {
		t.Fatalf("after prune AMIs %v snapshots %v, want v1 and v3's\n%s", amis, snaps, out.String())
	}
	e.WantLive(rr.InstanceID, "build1")
	// And rolling back again goes to v3.
	rr2, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	e.WantLive(rr2.InstanceID, "build3")
}

func ids(amis []fleet.AMI) []string {
	var out []string
	for _, a := range amis {
		out = append(out, a.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestLostAnswersMakeNoTwins loses the answer of each call that creates
// something (served, then the connection dropped: the SDK, or the code,
// asks again), and of all of them at once, across a bake and deploy of v1
// then v2: each build has one snapshot, one AMI and one instance, the site
// one address and one record, and no lease is left.
func TestLostAnswersMakeNoTwins(t *testing.T) {
	creates := []struct{ svc, op string }{
		{"ec2", "RunInstances"}, {"ebs", "StartSnapshot"}, {"ebs", "CompleteSnapshot"}, {"ec2", "RegisterImage"},
		{"ec2", "AllocateAddress"}, {"ec2", "AssociateAddress"}, {"route53", "ChangeResourceRecordSets"},
	}
	cases := map[string][]struct{ svc, op string }{"all at once": creates}
	for _, c := range creates {
		cases[c.op] = []struct{ svc, op string }{c}
	}
	for name, lost := range cases {
		t.Run(name, func(t *testing.T) {
			e := fleettest.NewEnv(t, name == "all at once", awsharness.Options{})
			for _, c := range lost {
				// Every answer of the operation lost once, as often as it comes, up to 6 times.
				e.H.Faults.Add(awsharness.Fault{Service: c.svc, Operation: c.op, Kind: awsharness.DropAfter, Rate: 0.5, Limit: 6})
				e.H.Faults.Add(awsharness.Fault{Service: c.svc, Operation: c.op, Kind: awsharness.DropAfter, Rate: 1, Limit: 1})
			}
			o := e.DeployOptions()
			o.Bake = &bake.Options{WaitDelay: time.Millisecond, RetryBase: time.Millisecond}
			var lives []string
			for _, build := range []string{"build1", "build2"} {
				fleettest.WriteImage(t, e.C, build)
				r, err := deploy.Run(context.Background(), o)
				if err != nil {
					t.Fatalf("deploying %s: %v", build, err)
				}
				lives = append(lives, r.Launch.InstanceID)
				e.WantLive(r.Launch.InstanceID, build)
			}
			injected := e.H.Faults.Injected()["drop-after"]
			e.H.Faults.Clear()
			if injected < len(lost) {
				t.Fatalf("only %d answers were lost", injected)
			}
			_, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
			if ever := fleettest.InstancesEver(t, e); len(ever) != 2 || len(amis) != 2 || len(snaps) != 2 || len(fleettest.Addresses(e.H, e.C.Site)) != 1 {
				t.Fatalf("instances ever %v, AMIs %v, snapshots %v, addresses %v; want one instance, AMI and snapshot per build and one address",
					ever, amis, snaps, fleettest.Addresses(e.H, e.C.Site))
			}
			e.WantInstances(lives[1])
			var recs []string
			for _, rs := range e.H.Model.Records(e.ZoneOf().ID, e.C.Domain) {
				if rs.Type == "A" || rs.Type == "CNAME" {
					recs = append(recs, rs.Type+" "+strings.Join(rs.Records, ","))
				}
			}
			if len(recs) != 1 {
				t.Fatalf("records at %s: %v, want one", e.C.Domain, recs)
			}
			if _, found, _ := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); found {
				t.Fatal("a lease is left")
			}
			t.Logf("%d answers lost", injected)
		})
	}
}

// TestDestroyLeavesNothingTagged destroys a site with history (builds
// replaced, one that failed its gate, a stray candidate, an orphan
// snapshot): a plan changes nothing; APPLY removes the record the tool
// wrote, the instances, the address, the AMIs, the snapshots, the group and
// the lease, and nothing tagged with the site is left. A record at another
// name is left alone.
func TestDestroyLeavesNothingTagged(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	ctx := context.Background()
	fleettest.Bake(t, e.H, e.C, "build1")
	e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build2")
	e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build3")
	e.Builds.Break("build3", http.StatusServiceUnavailable, "")
	e.C.HealthTimeout = 50 * time.Millisecond
	if _, _, err := e.Deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("v3: %v", err)
	}
	e.Builds.Fix("build3")
	e.C.HealthTimeout = 5 * time.Second
	if _, err := launch.Launch(ctx, e.LaunchOptions()); err != nil { // a stray candidate
		t.Fatal(err)
	}
	fleettest.OrphanSnapshot(t, e, true)
	other := "mail." + strings.TrimSuffix(e.ZoneOf().Name, ".")
	if _, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.ZoneOf().ID), ChangeBatch: &r53types.ChangeBatch{
		Changes: []r53types.Change{{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{Name: aws.String(other), Type: r53types.RRTypeA, TTL: aws.Int64(300),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("192.0.2.25")}}}}}}}); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	plan, err := fleet.Destroy(ctx, e.FleetOptions(), &out, false)
	if err != nil {
		t.Fatal(err)
	}
	insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if len(insts) != 2 || len(amis) != 3 || len(snaps) != 4 || plan.Record == nil || len(plan.Groups) != 1 || len(plan.Addresses) != 1 {
		t.Fatalf("the plan changed something or missed something: instances %v AMIs %v snapshots %v, plan %+v\n%s", insts, amis, snaps, plan, out.String())
	}
	out.Reset()
	if _, err := fleet.Destroy(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "nothing tagged with site "+e.C.Site+" is left") {
		t.Fatalf("destroy did not say it checked:\n%s", out.String())
	}
	// Checked here too, independently: nothing of the site in the emulator.
	insts, amis, snaps = fleettest.Leftovers(t, e.H, e.C.Site)
	if len(insts) != 0 || len(amis) != 0 || len(snaps) != 0 || len(fleettest.Addresses(e.H, e.C.Site)) != 0 {
		t.Fatalf("left: instances %v AMIs %v snapshots %v addresses %v", insts, amis, snaps, fleettest.Addresses(e.H, e.C.Site))
	}
	groups, err := fleet.SiteGroups(ctx, e.H.EC2(t), e.C.Site)
	if err != nil || len(groups) != 0 {
		t.Fatalf("security groups left: %v %v", groups, err)
	}
	for _, rs := range e.H.Model.Records(e.ZoneOf().ID, e.C.Domain) {
		if rs.Type == "A" || rs.Type == "CNAME" {
			t.Fatalf("record left at %s: %+v", e.C.Domain, rs)
		}
	}
	if recs := e.H.Model.Records(e.ZoneOf().ID, fleet.LeaseName(e.C.Domain)); len(recs) != 0 {
		t.Fatalf("the lease is left: %+v", recs)
	}
	if recs := e.H.Model.Records(e.ZoneOf().ID, other); len(recs) != 1 {
		t.Fatalf("destroy touched %s, a record the tool did not write", other)
	}
	// Run again, it finds nothing to do.
	out.Reset()
	if p, err := fleet.Destroy(ctx, e.FleetOptions(), &out, true); err != nil || !p.Empty() {
		t.Fatalf("destroying again: %+v, %v", p, err)
	}
}

// TestDestroyRemovesTheTLSState destroys a site deployed with https (a
// domain and an alias) on which a killed Cert run left its two challenge
// records: the plan names the three TLS parameters and the two records and
// changes nothing; APPLY deletes them with the rest, leaving no parameter
// under /blog/<site>/tls and no _acme-challenge record, and another site's
// parameter alone.
func TestDestroyRemovesTheTLSState(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	ctx := context.Background()
	e.C.Aliases = []string{"alias." + e.C.Domain}
	e.HTTPS()
	if _, err := e.Cert(ctx, "build1"); err != nil {
		t.Fatal(err)
	}
	fleettest.Bake(t, e.H, e.C, "build1")
	e.MustDeploy()
	zone := e.ZoneOf()
	var leftover []r53types.Change
	for _, n := range e.C.Names() {
		leftover = append(leftover, r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{
			Name: aws.String(fleet.ChallengeName(n)), Type: r53types.RRTypeTxt, TTL: aws.Int64(60),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(`"token-of-a-killed-run"`)}}}})
	}
	if _, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone.ID),
		ChangeBatch: &r53types.ChangeBatch{Changes: leftover}}); err != nil {
		t.Fatal(err)
	}
	otherSite := "/blog/another-site/tls/key"
	e.H.Model.SetSSMParameter(otherSite, "SecureString", "not this site's")
	challenges := func() int {
		n := 0
		for _, name := range e.C.Names() {
			n += len(e.H.Model.Records(zone.ID, fleet.ChallengeName(name)))
		}
		return n
	}
	prefix := fleet.TLSParameterPath(e.C.Site) + "/"
	if got := e.H.Model.SSMNames(prefix); len(got) != 3 || challenges() != 2 {
		t.Fatalf("set-up: parameters %v, %d challenge records", got, challenges())
	}

	var out bytes.Buffer
	plan, err := fleet.Destroy(ctx, e.FleetOptions(), &out, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Parameters, fleet.TLSParameterNames(e.C.Site)) || len(plan.Challenges) != 2 {
		t.Fatalf("plan: parameters %v, challenges %+v\n%s", plan.Parameters, plan.Challenges, out.String())
	}
	for _, want := range append(fleet.TLSParameterNames(e.C.Site), fleet.ChallengeName(e.C.Domain), fleet.ChallengeName(e.C.Aliases[0])) {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the plan does not name %s:\n%s", want, out.String())
		}
	}
	if got := e.H.Model.SSMNames(prefix); len(got) != 3 || challenges() != 2 {
		t.Fatalf("the plan deleted something: parameters %v, %d challenge records", got, challenges())
	}

	out.Reset()
	if _, err := fleet.Destroy(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := e.H.Model.SSMNames(prefix); len(got) != 0 {
		t.Errorf("TLS parameters left: %v", got)
	}
	if n := challenges(); n != 0 {
		t.Errorf("%d challenge records left", n)
	}
	if _, ok := e.H.Model.SSMParameter(otherSite); !ok {
		t.Error("destroy deleted another site's parameter")
	}
	if recs := e.H.Model.Records(zone.ID, fleet.LeaseName(e.C.Domain)); len(recs) != 0 {
		t.Fatalf("the lease is left: %+v", recs)
	}
	if e.H.Calls.Count("ssm", "DeleteParameters") != 1 {
		t.Errorf("DeleteParameters called %d times, want once for the three", e.H.Calls.Count("ssm", "DeleteParameters"))
	}
	out.Reset()
	if p, err := fleet.Destroy(ctx, e.FleetOptions(), &out, true); err != nil || !p.Empty() {
		t.Fatalf("destroying again: %+v, %v", p, err)
	}
}

// TestMigrationFromTheDNSSwapVersionKeepsServing deploys onto a site the
// version before the Elastic IP left (the record pointing at the instance
// itself: a CNAME to its public name below the apex, an A record to its
// address at the apex), once with a new build and once with the same one:
// the site is served throughout, the record ends on the site's address,
// and the old instance stays at least the old record's TTL after the
// record changed everywhere, for resolvers that cached it.
func TestMigrationFromTheDNSSwapVersionKeepsServing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apex  bool
		build string
	}{{"subdomain CNAME, new build", false, "build2"}, {"apex A, same build", true, "build1"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := fleettest.NewEnv(t, tc.apex, awsharness.Options{})
			ctx := context.Background()
			v1 := fleettest.Bake(t, e.H, e.C, "build1")
			old := legacyDeploy(t, e, v1, 300)
			if b, err := e.Serves(); err != nil || b != "build1" {
				t.Fatalf("the legacy site serves %q, %v", b, err)
			}
			if tc.build != "build1" {
				fleettest.Bake(t, e.H, e.C, tc.build)
			}
			w := e.Watch("build1", tc.build)
			start := e.Clock.Now()
			lr, sr, err := e.Deploy(ctx)
			w.Stop(t)
			if err != nil {
				t.Fatal(err)
			}
			if lr.InstanceID == old {
				t.Fatal("the address went to the instance the old record points at, which releases the address readers reach it on")
			}
			e.WantLive(lr.InstanceID, tc.build)
			if !slices.Equal(sr.Draining, []string{old}) || sr.RetireAfter.Sub(start) < 300*time.Second-time.Second {
				t.Fatalf("the old instance is kept until %s (%v), want at least the old TTL (300 s) after the change", sr.RetireAfter, sr.Draining)
			}
			e.WantInstances(lr.InstanceID) // its grace waited out (the test clock), then terminated
		})
	}
}

// legacyDeploy makes the site as the DNS-swap version left it: an instance
// of b, tagged live, with the record pointing at it directly; it returns the
// instance.
func legacyDeploy(t *testing.T, e *fleettest.Env, b fleettest.Build, ttl int64) string {
	t.Helper()
	ctx := context.Background()
	x := e.H.EC2(t)
	site := []types.Tag{{Key: aws.String(fleet.TagSite), Value: aws.String(e.C.Site)}}
	sg, err := x.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(fleet.SecurityGroupName(e.C.Site)), Description: aws.String("blog"),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup, Tags: site}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := x.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(b.ImageID), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		SecurityGroupIds: []string{aws.ToString(sg.GroupId)}, InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: append(site,
			types.Tag{Key: aws.String(fleet.TagBuildID), Value: aws.String(b.BuildID)}, types.Tag{Key: aws.String(fleet.TagImageDigest), Value: aws.String(b.ImageDigest)},
			types.Tag{Key: aws.String(fleet.TagRole), Value: aws.String(fleet.RoleLive)})}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	in, err := ec2.NewInstanceRunningWaiter(x, func(o *ec2.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
	}).
		WaitForOutput(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	inst := in.Reservations[0].Instances[0]
	rs := &r53types.ResourceRecordSet{Name: aws.String(e.C.Domain), Type: r53types.RRTypeCname, TTL: aws.Int64(ttl),
		ResourceRecords: []r53types.ResourceRecord{{Value: inst.PublicDnsName}}}
	if e.Apex {
		rs.Type, rs.ResourceRecords = r53types.RRTypeA, []r53types.ResourceRecord{{Value: inst.PublicIpAddress}}
	}
	if _, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.ZoneOf().ID), ChangeBatch: &r53types.ChangeBatch{
		Changes: []r53types.Change{{Action: r53types.ChangeActionUpsert, ResourceRecordSet: rs}}}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestALiveInstanceThatHaltsKeepsTheAddress: the live instance's kernel
// halts. Launched with shutdown behaviour stop, it stops and keeps the
// site's address, so no reader is sent to an address the site no longer
// holds; the next deploy replaces it and the site serves again.
func TestALiveInstanceThatHaltsKeepsTheAddress(t *testing.T) {
	e := fleettest.NewEnv(t, true, awsharness.Options{})
	ctx := context.Background()
	fleettest.Bake(t, e.H, e.C, "build1")
	lr, _ := e.MustDeploy()
	if b := e.H.Model.ShutdownBehavior(lr.InstanceID); b != "stop" {
		t.Fatalf("the live instance was launched with shutdown behaviour %q, want stop", b)
	}
	addr := e.Address()
	if err := e.H.Model.Halt(ctx, lr.InstanceID); err != nil {
		t.Fatal(err)
	}
	if a := e.Address(); a.InstanceID != lr.InstanceID || a.AllocationID != addr.AllocationID {
		t.Fatalf("after the halt the address is %+v, want still the stopped instance's", a)
	}
	if _, err := e.Serves(); err == nil {
		t.Fatal("a stopped instance serves")
	}
	lr2, _ := e.MustDeploy()
	if lr2.InstanceID == lr.InstanceID {
		t.Fatal("the deploy kept the stopped instance")
	}
	e.WantLive(lr2.InstanceID, "build1")
	e.WantInstances(lr2.InstanceID)
}
