package swap_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/launch/launchtest"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

// fakeClock answers every wait at once and remembers how long each was.
type fakeClock struct {
	mu      sync.Mutex
	waits   []time.Duration
	onAfter func(time.Duration) (block bool)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	hook := c.onAfter
	c.mu.Unlock()
	if hook != nil && hook(d) {
		return make(chan time.Time) // never fires: the wait ends only by cancellation
	}
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// env is one site deployed into the harness: its zone, its builds, its clock.
type env struct {
	t      *testing.T
	h      *awstest.Harness
	builds *awstest.BuildServer
	c      *config.Config
	clock  *fakeClock
	r53    *route53.Client
	apex   bool
	log    *logrus.Entry
}

func newEnv(t *testing.T, apex bool, opts awstest.Options) *env {
	h := awstest.StartLaunch(t, opts)
	builds := h.StartBuildServer(t, launch.TagBuildID)
	base := awstest.UniqueName("blog") + ".example"
	domain := "www." + base
	if apex {
		domain = base
	}
	e := &env{t: t, h: h, builds: builds, c: launchtest.Config(t, domain, builds), clock: &fakeClock{}, r53: h.Route53(t), apex: apex}
	l, _ := test.NewNullLogger()
	e.log = l.WithField("step", "deploy")
	// The zone, and decoys a careless lookup would take: a shorter suffix
	// (.example), a neighbour, and a private zone of the very name.
	e.zone(base, false)
	e.zone("example", false)
	e.zone("a"+base, false)
	e.zone(domain, true)
	return e
}

func (e *env) zone(name string, private bool) {
	in := &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(awstest.UniqueName("ref"))}
	if private {
		in.HostedZoneConfig = &r53types.HostedZoneConfig{PrivateZone: true}
	}
	if _, err := e.r53.CreateHostedZone(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
}

// fastRetries keeps the SDK's standard retryer and its attempts but waits
// milliseconds between them, not seconds, and never runs out of retry tokens.
var fastRetries = awsconfig.WithRetryer(func() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 8
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return time.Duration(attempt) * 2 * time.Millisecond, nil
		})
		o.RateLimiter = ratelimit.None
	})
})

func (e *env) lopts() launch.Options {
	return launch.Options{Config: e.c, Log: e.log, HealthPoll: 5 * time.Millisecond, WaitDelay: 5 * time.Millisecond,
		AWSOptions: []func(*awsconfig.LoadOptions) error{fastRetries}}
}

func (e *env) sopts() swap.Options {
	return swap.Options{Config: e.c, Log: e.log, Clock: e.clock, WaitDelay: 5 * time.Millisecond,
		AWSOptions: []func(*awsconfig.LoadOptions) error{fastRetries}}
}

// deploy is `mage deploy` after Bake: Launch, then Swap.
func (e *env) deploy(ctx context.Context) (*launch.Receipt, *swap.Receipt, error) {
	lr, err := launch.Launch(ctx, e.lopts())
	if err != nil {
		return nil, nil, err
	}
	sr, err := swap.Swap(ctx, e.sopts())
	return lr, sr, err
}

func (e *env) mustDeploy() (*launch.Receipt, *swap.Receipt) {
	e.t.Helper()
	lr, sr, err := e.deploy(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return lr, sr
}

// record reads the blog's record as a resolver would find it.
func (e *env) record() swap.Record {
	e.t.Helper()
	ctx := context.Background()
	z, err := swap.FindZone(ctx, e.r53, e.c.Domain, "")
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := swap.ReadRecord(ctx, e.r53, z, e.c.Domain)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// target is what the record must hold for an instance.
func (e *env) target(id string) string {
	ip := awstest.PublicIP(id)
	if e.apex {
		return ip
	}
	return awstest.PublicDNSName(ip)
}

func (e *env) wantRecordAt(id string) {
	e.t.Helper()
	r := e.record()
	want := "CNAME"
	if e.apex {
		want = "A"
	}
	if r.Target != e.target(id) || r.Type != want || r.TTL != e.c.TTL {
		e.t.Fatalf("record %+v, want %s → %s (instance %s), TTL %d", r, want, e.target(id), id, e.c.TTL)
	}
}

func (e *env) wantInstances(ids ...string) {
	e.t.Helper()
	insts, _, _ := launchtest.Leftovers(e.t, e.h, e.c.Site)
	slices.Sort(ids)
	if !slices.Equal(insts, ids) {
		e.t.Fatalf("instances running %v, want %v", insts, ids)
	}
}

func TestBlueGreen(t *testing.T) {
	for _, apex := range []bool{false, true} {
		name := "subdomain CNAME"
		if apex {
			name = "apex A"
		}
		t.Run(name, func(t *testing.T) { blueGreen(t, apex) })
	}
}

func blueGreen(t *testing.T, apex bool) {
	e := newEnv(t, apex, awstest.Options{})
	ctx := context.Background()

	// v1: the record is created, pointing at instance 1.
	v1 := launchtest.Bake(t, e.h, e.c, "build1")
	lr1, sr1 := e.mustDeploy()
	e.wantRecordAt(lr1.InstanceID)
	e.wantInstances(lr1.InstanceID)
	if sr1.OldTarget != "" || sr1.Unchanged || len(sr1.Terminated) != 0 {
		t.Fatalf("first swap %+v", sr1)
	}

	// v2 (a changed post: new build id, new image): the record moves to
	// instance 2, and instance 1 is terminated after a drain of the old TTL.
	v2 := launchtest.Bake(t, e.h, e.c, "build2")
	lr2, sr2 := e.mustDeploy()
	if lr2.InstanceID == lr1.InstanceID {
		t.Fatal("v2 reused v1's instance")
	}
	e.wantRecordAt(lr2.InstanceID)
	e.wantInstances(lr2.InstanceID)
	if sr2.OldTarget != e.target(lr1.InstanceID) || !slices.Equal(sr2.Terminated, []string{lr1.InstanceID}) || sr2.ChangeID == "" {
		t.Fatalf("second swap %+v", sr2)
	}
	if w := e.clock.Waits(); !slices.Contains(w, 60*time.Second) {
		t.Fatalf("drain waits %v, want the old record's 60s TTL", w)
	}
	if in, _, _ := launch.DescribeInstance(ctx, e.h.EC2(t), lr2.InstanceID); in.Role != launch.RoleLive {
		t.Fatalf("instance 2 role %q, want live", in.Role)
	}

	// v2 again: nothing created, nothing changed, and it says so.
	_, amis, snaps := launchtest.Leftovers(t, e.h, e.c.Site)
	e.h.Calls.Reset()
	lr3, sr3 := e.mustDeploy()
	for _, op := range []string{"RunInstances", "TerminateInstances", "CreateTags", "RegisterImage", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "ChangeResourceRecordSets"} {
		if n := e.h.Calls.Count("ec2", op) + e.h.Calls.Count("route53", op); n != 0 {
			t.Errorf("unchanged redeploy called %s %d times", op, n)
		}
	}
	if !lr3.AlreadyLive || !sr3.Unchanged || lr3.InstanceID != lr2.InstanceID {
		t.Fatalf("unchanged redeploy: launch %+v swap %+v", lr3, sr3)
	}
	if s := swap.DeploySummary(lr3, sr3); !strings.Contains(s, "nothing created or changed") {
		t.Fatalf("summary %q does not say nothing changed", s)
	}
	_, amis2, snaps2 := launchtest.Leftovers(t, e.h, e.c.Site)
	if !slices.Equal(amis, amis2) || !slices.Equal(snaps, snaps2) {
		t.Fatalf("AMIs %v → %v, snapshots %v → %v", amis, amis2, snaps, snaps2)
	}
	e.wantInstances(lr2.InstanceID)

	// v3 fails its health gate: the record is untouched, the candidate gone.
	v3 := launchtest.Bake(t, e.h, e.c, "build3")
	e.builds.Break("build3", http.StatusServiceUnavailable, "")
	e.c.HealthTimeout = 100 * time.Millisecond
	if _, _, err := e.deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("deploy of a broken build: %v, want a failed health gate", err)
	}
	e.c.HealthTimeout = 5 * time.Second
	e.wantRecordAt(lr2.InstanceID)
	e.wantInstances(lr2.InstanceID)

	// Rollback: back to v1, relaunched from its AMI (instance 1 is gone).
	rr, err := swap.Rollback(ctx, e.sopts(), e.lopts())
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := launch.DescribeInstance(ctx, e.h.EC2(t), rr.InstanceID)
	if in.BuildID != "build1" || in.ImageID != v1.ImageID || rr.InstanceID == lr1.InstanceID {
		t.Fatalf("rolled back to %+v, want a new instance of build1", in)
	}
	e.wantRecordAt(rr.InstanceID)
	e.wantInstances(rr.InstanceID)

	// Status: record → instance → AMI → image sha256 → build id → commit.
	var out bytes.Buffer
	if err := swap.Status(ctx, e.sopts(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{e.target(rr.InstanceID), rr.InstanceID, v1.ImageID, v1.ImageSHA256, "build1", "c0ffeebuild1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	if !regexp.MustCompile(`(?m)^strays\s+none$`).MatchString(out.String()) {
		t.Errorf("status shows strays:\n%s", out.String())
	}

	// Prune, keep_images 1: a plan first, then applied. Kept: the newest
	// (v3) and the live one (v1); v2 and its snapshot go.
	e.c.KeepImages = 1
	out.Reset()
	if _, err := swap.Prune(ctx, e.sopts(), &out, false); err != nil {
		t.Fatal(err)
	}
	if _, amis, _ := launchtest.Leftovers(t, e.h, e.c.Site); len(amis) != 3 || !strings.Contains(out.String(), "deregister  "+v2.ImageID) {
		t.Fatalf("a plan-only prune changed something or planned wrong: AMIs %v\n%s", amis, out.String())
	}
	if _, err := swap.Prune(ctx, e.sopts(), &out, true); err != nil {
		t.Fatal(err)
	}
	_, amis, snaps = launchtest.Leftovers(t, e.h, e.c.Site)
	wantAMIs, wantSnaps := []string{v1.ImageID, v3.ImageID}, []string{v1.SnapshotID, v3.SnapshotID}
	slices.Sort(wantAMIs)
	slices.Sort(wantSnaps)
	if !slices.Equal(amis, wantAMIs) || !slices.Equal(snaps, wantSnaps) {
		t.Fatalf("after prune AMIs %v snapshots %v, want %v %v", amis, snaps, wantAMIs, wantSnaps)
	}
	e.wantRecordAt(rr.InstanceID)
	e.wantInstances(rr.InstanceID)
}

func TestStatusAndPruneFindStrayCandidates(t *testing.T) {
	e := newEnv(t, false, awstest.Options{})
	ctx := context.Background()
	launchtest.Bake(t, e.h, e.c, "build1")
	lr1, _ := e.mustDeploy()
	launchtest.Bake(t, e.h, e.c, "build2")
	// `mage launch` alone: a healthy candidate that never goes live.
	cand, err := launch.Launch(ctx, e.lopts())
	if err != nil {
		t.Fatal(err)
	}
	// A bake that stopped before registering its AMI left a finished
	// snapshot, and one is still uploading.
	done, uploading := orphanSnapshot(t, e, true), orphanSnapshot(t, e, false)
	// Receipts are caches: status and prune read AWS.
	launchtest.RemoveReceipts(t, e.c, "launch", "swap", "bake")
	var out bytes.Buffer
	if err := swap.Status(ctx, e.sopts(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 instance(s) not behind the record") || !strings.Contains(out.String(), cand.InstanceID+"  running  candidate  build build2") {
		t.Fatalf("status does not show the stray candidate %s:\n%s", cand.InstanceID, out.String())
	}
	if !strings.Contains(out.String(), "2 not used by any AMI") || !strings.Contains(out.String(), done) || !strings.Contains(out.String(), uploading) {
		t.Fatalf("status does not show the orphan snapshots:\n%s", out.String())
	}
	out.Reset()
	if _, err := swap.Prune(ctx, e.sopts(), &out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "terminate   "+cand.InstanceID) || !strings.Contains(out.String(), "delete      "+done) || strings.Contains(out.String(), uploading) {
		t.Fatalf("prune plan:\n%s", out.String())
	}
	_, _, snaps := launchtest.Leftovers(t, e.h, e.c.Site)
	if slices.Contains(snaps, done) || !slices.Contains(snaps, uploading) || len(snaps) != 3 {
		t.Fatalf("snapshots after prune %v: want the two AMIs' and the one still uploading (%s)", snaps, uploading)
	}
	e.wantInstances(lr1.InstanceID)
	e.wantRecordAt(lr1.InstanceID)
}

// TestRollbackReusesTheDrainingInstance rolls back while the previous
// build's instance is still draining: it is health-checked and put back
// behind the record, and nothing is launched.
func TestRollbackReusesTheDrainingInstance(t *testing.T) {
	e := newEnv(t, true, awstest.Options{})
	launchtest.Bake(t, e.h, e.c, "build1")
	lr1, _ := e.mustDeploy()
	launchtest.Bake(t, e.h, e.c, "build2")
	// v2 goes live; the run stops in the drain, so instance 1 still runs.
	ctx, cancel := context.WithCancel(context.Background())
	e.clock.onAfter = func(time.Duration) bool { cancel(); return true }
	if _, _, err := e.deploy(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("deploy stopped in the drain: %v", err)
	}
	e.clock.onAfter = nil
	lr2, err := launch.ReadReceipt(e.c.BuildDir())
	if err != nil {
		t.Fatal(err)
	}
	e.wantRecordAt(lr2.InstanceID)
	if in, _, _ := launch.DescribeInstance(context.Background(), e.h.EC2(t), lr1.InstanceID); in.Role != launch.RoleDraining {
		t.Fatalf("instance 1 is %+v, want draining", in)
	}

	e.h.Calls.Reset()
	r, err := swap.Rollback(context.Background(), e.sopts(), e.lopts())
	if err != nil {
		t.Fatal(err)
	}
	if r.InstanceID != lr1.InstanceID || e.h.Calls.Count("ec2", "RunInstances") != 0 {
		t.Fatalf("rolled back to %s with %d RunInstances; want instance 1 reused", r.InstanceID, e.h.Calls.Count("ec2", "RunInstances"))
	}
	e.wantRecordAt(lr1.InstanceID)
	e.wantInstances(lr1.InstanceID)
}

// TestChangedTTLOnlyUpdatesTheRecord: a new ttl setting with unchanged
// content changes the record's TTL and launches nothing.
func TestChangedTTLOnlyUpdatesTheRecord(t *testing.T) {
	e := newEnv(t, false, awstest.Options{})
	launchtest.Bake(t, e.h, e.c, "build1")
	lr1, _ := e.mustDeploy()
	e.c.TTL = 300
	e.h.Calls.Reset()
	lr2, sr := e.mustDeploy()
	if lr2.InstanceID != lr1.InstanceID || sr.Unchanged || e.h.Calls.Count("ec2", "RunInstances") != 0 || e.h.Calls.Count("route53", "ChangeResourceRecordSets") != 1 {
		t.Fatalf("ttl change: %+v, RunInstances %d, changes %d", sr, e.h.Calls.Count("ec2", "RunInstances"), e.h.Calls.Count("route53", "ChangeResourceRecordSets"))
	}
	e.wantRecordAt(lr1.InstanceID) // checks TTL 300 too
	e.wantInstances(lr1.InstanceID)
}

// orphanSnapshot starts a snapshot of the site (and completes it when done)
// with no AMI registered from it.
func orphanSnapshot(t *testing.T, e *env, done bool) string {
	t.Helper()
	ctx := context.Background()
	c := e.h.EBS(t)
	out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(60),
		Tags: []ebstypes.Tag{{Key: aws.String(launch.TagSite), Value: aws.String(e.c.Site)}, {Key: aws.String(launch.TagBuildID), Value: aws.String("build9")}}})
	if err != nil {
		t.Fatal(err)
	}
	if done {
		if _, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(0)}); err != nil {
			t.Fatal(err)
		}
	}
	return aws.ToString(out.SnapshotId)
}
