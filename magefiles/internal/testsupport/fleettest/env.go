package fleettest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

// FakeClock answers every wait at once and remembers how long each was. Its
// time is the wall clock's moved on by every wait asked of it, so a grace or
// a lease expiry that was waited for has passed.
type FakeClock struct {
	mu      sync.Mutex
	waits   []time.Duration
	offset  time.Duration
	onAfter func(time.Duration) (block bool)
}

// Now is the wall clock plus every wait so far.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	hook := c.onAfter
	c.mu.Unlock()
	if hook != nil && hook(d) {
		return make(chan time.Time) // never fires: the wait ends only by cancellation
	}
	c.mu.Lock()
	c.offset += d
	now := time.Now().Add(c.offset)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// OnAfter sets what a wait does first; a hook that returns true blocks the
// wait until its context ends. nil removes it.
func (c *FakeClock) OnAfter(hook func(time.Duration) (block bool)) {
	c.mu.Lock()
	c.onAfter = hook
	c.mu.Unlock()
}

// Waits are the waits asked for, in order.
func (c *FakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// env is one site deployed into the harness: its zone, its builds, its clock.
// Env is one site deployed into the harness, for the tests of Launch, Swap,
// rollback, status and prune, and the whole-pipeline tests.
type Env struct {
	T      *testing.T
	H      *awsharness.Harness
	Builds *awsharness.BuildServer
	C      *config.Config
	Clock  *FakeClock
	R53    *route53.Client
	Apex   bool
	Log    *logrus.Entry

	zoneOnce sync.Once
	zone     fleet.Zone
}

func NewEnv(t *testing.T, apex bool, opts awsharness.Options) *Env {
	h := awsharness.Start(t, opts)
	builds := h.StartBuildServer(t)
	base := awsharness.UniqueName("blog") + ".example"
	domain := "www." + base
	if apex {
		domain = base
	}
	e := &Env{T: t, H: h, Builds: builds, C: Config(t, domain, builds), Clock: &FakeClock{}, R53: h.Route53(t), Apex: apex}
	l, _ := test.NewNullLogger()
	e.Log = l.WithField("step", "deploy")
	// The zone, and decoys a careless lookup would take: a shorter suffix
	// (.example), a neighbour, and a private zone of the very name.
	e.Zone(base, false)
	e.Zone("example", false)
	e.Zone("a"+base, false)
	e.Zone(domain, true)
	e.ZoneOf()
	return e
}

func (e *Env) Zone(name string, private bool) {
	in := &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(awsharness.UniqueName("ref"))}
	if private {
		in.HostedZoneConfig = &r53types.HostedZoneConfig{PrivateZone: true}
	}
	if _, err := e.R53.CreateHostedZone(context.Background(), in); err != nil {
		e.T.Fatal(err)
	}
}

// FastRetries keeps the SDK's standard retryer and its attempts but waits
// milliseconds between them, not seconds, and never runs out of retry tokens.
var FastRetries = awsconfig.WithRetryer(func() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 8
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return time.Duration(attempt) * 2 * time.Millisecond, nil
		})
		o.RateLimiter = ratelimit.None
	})
})

func (e *Env) LaunchOptions() launch.Options {
	return launch.Options{Config: e.C, Log: e.Log, HealthPoll: 5 * time.Millisecond, WaitDelay: 5 * time.Millisecond, Clock: e.Clock,
		AWSOptions: []func(*awsconfig.LoadOptions) error{FastRetries}}
}

// LeaseOptions poll a held lease every few milliseconds of real time.
func (e *Env) LeaseOptions() fleet.LeaseOptions {
	return fleet.LeaseOptions{Poll: 5 * time.Millisecond}
}

// FleetOptions are Status's, Prune's and Destroy's.
func (e *Env) FleetOptions() fleet.Options {
	return fleet.Options{Config: e.C, Log: e.Log, Clock: e.Clock, Lease: e.LeaseOptions(), WaitDelay: 5 * time.Millisecond,
		AWSOptions: []func(*awsconfig.LoadOptions) error{FastRetries}}
}

func (e *Env) SwapOptions() swap.Options {
	return swap.Options{Config: e.C, Log: e.Log, Clock: e.Clock, WaitDelay: 5 * time.Millisecond, Lease: e.LeaseOptions(),
		AWSOptions: []func(*awsconfig.LoadOptions) error{FastRetries}}
}

// DeployOptions are `mage deploy`'s after Bake: Launch and Swap under the
// lease, then the grace.
func (e *Env) DeployOptions() deploy.Options {
	return deploy.Options{Config: e.C, Log: e.Log, Launch: e.LaunchOptions(), Swap: e.SwapOptions(), Lease: e.LeaseOptions(),
		AWSOptions: []func(*awsconfig.LoadOptions) error{FastRetries}}
}

// Deploy is `mage deploy` after Bake: Launch, then Swap, holding the lease,
// then Retire.
func (e *Env) Deploy(ctx context.Context) (*launch.Receipt, *swap.Receipt, error) {
	r, err := deploy.Run(ctx, e.DeployOptions())
	if r == nil {
		return nil, nil, err
	}
	return r.Launch, r.Swap, err
}

func (e *Env) MustDeploy() (*launch.Receipt, *swap.Receipt) {
	e.T.Helper()
	lr, sr, err := e.Deploy(context.Background())
	if err != nil {
		e.T.Fatal(err)
	}
	return lr, sr
}

// Record reads the blog's record as a resolver would find it.
func (e *Env) Record() fleet.Record {
	e.T.Helper()
	ctx := context.Background()
	r, err := fleet.ReadRecord(ctx, e.R53, e.ZoneOf(), e.C.Domain)
	if err != nil {
		e.T.Fatal(err)
	}
	return r
}

// ZoneOf is the site's hosted zone, looked up once (later calls make no
// AWS call, so a hook on every call may use it).
func (e *Env) ZoneOf() fleet.Zone {
	e.T.Helper()
	e.zoneOnce.Do(func() {
		z, err := fleet.FindZone(context.Background(), e.R53, e.C.Domain, "")
		if err != nil {
			e.T.Fatal(err)
		}
		e.zone = z
	})
	return e.zone
}

// Address is the site's one Elastic IP; the test fails unless there is exactly one.
func (e *Env) Address() awsmodel.Address {
	e.T.Helper()
	addrs := e.H.Model.AddressesTagged(fleet.TagSite, e.C.Site)
	if len(addrs) != 1 {
		e.T.Fatalf("site %s has %d Elastic IPs (%+v), want exactly one", e.C.Site, len(addrs), addrs)
	}
	return addrs[0]
}

// WantLive checks what readers get: the record is the A record to the
// site's one address, with the TTL configured, the address points at
// instance id, and id serves build.
func (e *Env) WantLive(id, build string) {
	e.T.Helper()
	a := e.Address()
	r := e.Record()
	if r.Type != "A" || r.Target != a.PublicIP || r.TTL != e.C.TTL {
		e.T.Fatalf("record %+v, want A → the site's address %s, TTL %d", r, a.PublicIP, e.C.TTL)
	}
	if a.InstanceID != id {
		e.T.Fatalf("address %s → %q, want %s", a.PublicIP, a.InstanceID, id)
	}
	got, err := e.Builds.Visit(context.Background(), e.ZoneOf().ID, e.C.Domain)
	if err != nil || got != build {
		e.T.Fatalf("a reader of %s gets build %q (%v), want %s", e.C.Domain, got, err, build)
	}
}

// Serves is what a reader of the site gets now: the build, or why none.
func (e *Env) Serves() (string, error) {
	return e.Builds.Visit(context.Background(), e.ZoneOf().ID, e.C.Domain)
}

func (e *Env) WantInstances(ids ...string) {
	e.T.Helper()
	insts, _, _ := Leftovers(e.T, e.H, e.C.Site)
	slices.Sort(ids)
	if !slices.Equal(insts, ids) {
		e.T.Fatalf("instances running %v, want %v", insts, ids)
	}
}

// OrphanSnapshot starts a snapshot of the site (and completes it when done)
// with no AMI registered from it.
func OrphanSnapshot(t *testing.T, e *Env, done bool) string {
	t.Helper()
	ctx := context.Background()
	c := e.H.EBS(t)
	out, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(60),
		Tags: []ebstypes.Tag{{Key: aws.String(fleet.TagSite), Value: aws.String(e.C.Site)}, {Key: aws.String(fleet.TagBuildID), Value: aws.String("build9")}}})
	if err != nil {
		t.Fatal(err)
	}
	for done {
		// A new snapshot is "not found" for a moment: retry as Bake does.
		_, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: out.SnapshotId, ChangedBlocksCount: aws.Int32(0)})
		var nf *ebstypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	// EC2 lists a new snapshot only after a moment: wait, as a user would.
	for {
		_, err := e.H.EC2(t).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(out.SnapshotId)}})
		if err == nil {
			break
		}
		if !fleet.HasCode(err, "InvalidSnapshot.NotFound") {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	return aws.ToString(out.SnapshotId)
}

// InstancesEver lists every instance of the site, terminated ones included.
func InstancesEver(t *testing.T, e *Env) []string {
	out, err := e.H.EC2(t).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + fleet.TagSite), Values: []string{e.C.Site}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	slices.Sort(ids)
	return ids
}

// Watcher samples what a reader of the site gets: at every AWS call as it
// arrives (nothing in AWS changes between two calls, so this sees every
// state the site passes through) and every millisecond besides.
type Watcher struct {
	e       *Env
	allowed []string
	stop    chan struct{}
	done    chan struct{}
	active  atomic.Bool

	mu      sync.Mutex
	samples int
	served  map[string]int // build → samples that got it
	errs    []string       // the first few samples that got no build
}

// Watch starts sampling; every sample must serve one of the allowed builds
// (and of those Allow adds before Stop).
func (e *Env) Watch(allowed ...string) *Watcher {
	w := &Watcher{e: e, allowed: allowed, stop: make(chan struct{}), done: make(chan struct{}), served: map[string]int{}}
	w.active.Store(true)
	e.H.Calls.OnCall(func(awsharness.Call) {
		if w.active.Load() {
			w.sample()
		}
	})
	go func() {
		defer close(w.done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample()
			}
		}
	}()
	return w
}

func (w *Watcher) sample() {
	build, err := w.e.Serves()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	switch {
	case err != nil || build == "":
		if len(w.errs) < 5 {
			w.errs = append(w.errs, fmt.Sprintf("build %q (%v)", build, err))
		}
	default:
		w.served[build]++
	}
}

// Allow adds builds a sample may have got: one known only once the run
// has built it (a build id is the site's hash).
func (w *Watcher) Allow(builds ...string) {
	w.mu.Lock()
	w.allowed = append(w.allowed, builds...)
	w.mu.Unlock()
}

// Stop ends the sampling and fails the test if any sample found the site
// not served, or serving another build.
func (w *Watcher) Stop(t testing.TB) {
	t.Helper()
	w.active.Store(false)
	close(w.stop)
	<-w.done
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	var bad []string
	for build, n := range w.served {
		if !slices.Contains(w.allowed, build) {
			bad = append(bad, fmt.Sprintf("build %q (%d samples)", build, n))
		}
	}
	if bad = append(bad, w.errs...); len(bad) > 0 {
		t.Fatalf("of %d samples of what a reader gets, some were not one of %v: %v", w.samples, w.allowed, bad)
	}
	if w.samples < 10 {
		t.Fatalf("only %d samples: too few to mean anything", w.samples)
	}
	t.Logf("%d samples of what a reader gets, each one of %v", w.samples, w.allowed)
}
