package fleet_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

type leaseEnv struct {
	h      *awsharness.Harness
	r53    *route53.Client
	zone   fleet.Zone
	domain string
	log    *logrus.Entry
	hook   *test.Hook
}

func newLeaseEnv(t *testing.T) *leaseEnv {
	h := awsharness.Start(t, awsharness.Options{})
	r := h.Route53(t)
	base := awsharness.UniqueName("lease") + ".example"
	id := createZone(t, r, base)
	l, hook := test.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return &leaseEnv{h: h, r53: r, zone: fleet.Zone{ID: id, Name: base + "."}, domain: "www." + base, log: logrus.NewEntry(l), hook: hook}
}

func (e *leaseEnv) opts(op string, wait time.Duration) fleet.LeaseOptions {
	return fleet.LeaseOptions{Op: op, Wait: wait, Poll: 2 * time.Millisecond, Log: e.log}
}

// plant writes a lease record as another run would have, by hand.
func (e *leaseEnv) plant(t *testing.T, fields ...string) {
	t.Helper()
	var quoted []string
	for _, f := range fields {
		quoted = append(quoted, strconv.Quote(f))
	}
	_, err := e.r53.ChangeResourceRecordSets(context.Background(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(e.zone.ID), ChangeBatch: &r53types.ChangeBatch{
		Changes: []r53types.Change{{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{
			Name: aws.String(fleet.LeaseName(e.domain)), Type: r53types.RRTypeTxt, TTL: aws.Int64(60),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(strings.Join(quoted, " "))}}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *leaseEnv) logged(s string) bool {
	for _, en := range e.hook.AllEntries() {
		if strings.Contains(en.Message, s) {
			return true
		}
	}
	return false
}

func TestOneLeaseAtATime(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	_, first, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0))
	if err != nil {
		t.Fatal(err)
	}
	h, found, err := fleet.ReadLease(ctx, e.r53, e.zone, e.domain)
	if err != nil || !found || h.Owner != first.Holder().Owner || h.Op != "deploy" || !h.Expires.After(time.Now()) {
		t.Fatalf("the lease record says %+v (%v, %v)", h, found, err)
	}
	// Held: a second run waits up to its bound, with progress, then fails
	// naming the holder, when it expires and the fix.
	start := time.Now()
	_, _, err = fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("rollback", 30*time.Millisecond))
	var held *fleet.LeaseHeldError
	if !errors.As(err, &held) || held.Holder.Owner != h.Owner || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("a second lease: %v after %s; want a LeaseHeldError naming %s after waiting", err, time.Since(start), h.Owner)
	}
	for _, want := range []string{h.Owner, "deploy on ", "expires", "mage unlock", "lease_wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if !e.logged("waiting for the deploy lease of site site, held by " + h.Owner) {
		t.Error("the wait was not logged with the holder")
	}
	// Released: the next run takes it at once.
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	_, next, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("prune", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := fleet.ReadLease(ctx, e.r53, e.zone, e.domain); found {
		t.Fatal("a released lease is still there")
	}
}

func TestARunWaitsForTheLeaseThenTakesIt(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	_, first, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var second *fleet.Lease
	var secondErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, second, secondErr = fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 10*time.Second))
	}()
	for !e.logged("waiting for the deploy lease") {
		time.Sleep(time.Millisecond)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if secondErr != nil {
		t.Fatalf("the waiting run: %v", secondErr)
	}
	if h, _, _ := fleet.ReadLease(ctx, e.r53, e.zone, e.domain); h.Owner != second.Holder().Owner {
		t.Fatalf("the lease is %s's, want the second run's", h.Owner)
	}
	second.Release(ctx)
}

func TestAnExpiredLeaseIsTakenOver(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	past := fleet.TimeTag(time.Now().Add(-time.Minute))
	e.plant(t, "owner=ci-runner/42/dead", "op=deploy", "host=ci-runner", "start="+past, "expires="+past, "pid=42")
	_, l, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0))
	if err != nil {
		t.Fatalf("an expired lease was not taken over: %v", err)
	}
	defer l.Release(ctx)
	if !e.logged("taking over the deploy lease of ci-runner/42/dead") {
		t.Error("the takeover was not logged")
	}
}

func TestALeaseWhoseProcessIsGoneIsTakenOver(t *testing.T) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, nerr := os.Readlink("/proc/self/ns/pid")
	if err != nil || nerr != nil {
		t.Skip("no /proc: a holder's process cannot be checked here, and its lease runs to its expiry")
	}
	e := newLeaseEnv(t)
	ctx := context.Background()
	// A holder on this machine, in this PID namespace, whose PID now names
	// another process (start time differs): gone, though not expired.
	future := fleet.TimeTag(time.Now().Add(time.Hour))
	e.plant(t, "owner=here/1/gone", "op=deploy", "host=here", "start="+future, "expires="+future,
		"boot="+strings.TrimSpace(string(boot))+"/"+ns, "pid="+strconv.Itoa(os.Getpid()), "pidstart=1")
	_, l, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0))
	if err != nil {
		t.Fatalf("the lease of a process that is gone was not taken over: %v", err)
	}
	defer l.Release(ctx)
	if !e.logged("its process on this machine is gone") {
		t.Error("the takeover was not logged with its reason")
	}
	// A holder elsewhere, not expired, is waited for.
	l.Release(ctx)
	e.plant(t, "owner=elsewhere/7/x", "op=deploy", "host=elsewhere", "start="+future, "expires="+future, "boot=another-machine", "pid=7", "pidstart=9")
	if _, _, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0)); err == nil {
		t.Fatal("a live holder elsewhere lost its lease")
	}
}

func TestABrokenLeaseStopsItsRun(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	o := e.opts("deploy", 0)
	o.Renew = 2 * time.Millisecond
	runCtx, l, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", o)
	if err != nil {
		t.Fatal(err)
	}
	// Renewals keep it.
	time.Sleep(20 * time.Millisecond)
	if runCtx.Err() != nil {
		t.Fatalf("the run's context ended while the lease was renewed: %v", context.Cause(runCtx))
	}
	// `mage unlock` breaks it; the run notices at its next renewal and stops.
	h, found, err := fleet.BreakLease(ctx, e.r53, e.zone, e.domain)
	if err != nil || !found || h.Owner != l.Holder().Owner {
		t.Fatalf("BreakLease: %+v %v %v", h, found, err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after its lease was broken")
	}
	if !errors.Is(context.Cause(runCtx), fleet.ErrLeaseLost) {
		t.Fatalf("the run ended with %v, want ErrLeaseLost", context.Cause(runCtx))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("releasing a lost lease: %v", err)
	}
}

// A lease write whose answer is lost is found to be the run's own: no
// second holder, no lease left behind.
func TestLostLeaseAnswersHoldOnce(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	lose := func() {
		e.h.Faults.Clear()
		e.h.Faults.Add(awsharness.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsharness.DropAfter, Rate: 1, Limit: 1})
	}
	lose()
	_, l, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", e.opts("deploy", 0))
	if err != nil {
		t.Fatalf("a lost CREATE answer: %v", err)
	}
	lose()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("a lost DELETE answer: %v", err)
	}
	if _, found, _ := fleet.ReadLease(ctx, e.r53, e.zone, e.domain); found {
		t.Fatal("the lease is still there")
	}
	if n := e.h.Faults.Injected()["drop-after"]; n != 2 {
		t.Fatalf("%d answers lost, want 2", n)
	}
}

// Route53 refuses a change while an earlier change of the zone is still
// being processed (PriorRequestNotComplete), which the SDK does not retry:
// the lease waits it out.
func TestPriorRequestNotCompleteIsWaitedOut(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	e.h.Faults.Add(awsharness.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsharness.Error, Code: "PriorRequestNotComplete", Status: 400, Rate: 1, Limit: 2})
	o := e.opts("deploy", 0)
	o.Clock = instant{}
	_, l, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", o)
	if err != nil {
		t.Fatalf("PriorRequestNotComplete twice: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.h.Faults.Injected()["error"]; n != 2 {
		t.Fatalf("%d refusals, want 2", n)
	}
}

// instant is a clock whose short waits (retries) end at once and whose
// long ones (renewals) never do.
type instant struct{}

func (instant) Now() time.Time { return time.Now() }
func (instant) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if d < time.Minute {
		ch <- time.Now()
	}
	return ch
}

// TestAWaitForTheLeaseReportsEveryMinute: a run waiting 3½ minutes for a
// lease another machine holds logs the holder once when it starts waiting,
// then at info about once a minute whom it waits for (owner, host, op,
// since) and how long is left, every other look at debug only; then fails
// naming the holder.
func TestAWaitForTheLeaseReportsEveryMinute(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	clock := &fleettest.FakeClock{} // every wait answered at once, its time moved on by it
	since := time.Now().Add(-5 * time.Minute)
	e.plant(t, "owner=ci-runner/7/busy", "op=deploy", "host=ci-runner", "start="+fleet.TimeTag(since), "expires="+fleet.TimeTag(time.Now().Add(time.Hour)), "pid=7")
	o := e.opts("destroy", 3*time.Minute+30*time.Second)
	o.Poll, o.Clock = fleet.LeaseHeld.Every, clock
	_, _, err := fleet.AcquireLease(ctx, e.r53, e.zone, e.domain, "site", o)
	var held *fleet.LeaseHeldError
	if !errors.As(err, &held) || held.Holder.Owner != "ci-runner/7/busy" {
		t.Fatalf("waiting for a held lease: %v, want a LeaseHeldError naming ci-runner/7/busy", err)
	}
	var first, progress, debug int
	var lines []string
	for _, en := range e.hook.AllEntries() {
		switch {
		case en.Level == logrus.InfoLevel && strings.HasPrefix(en.Message, "waiting for the deploy lease of site site, held by ci-runner/7/busy"):
			first++
		case en.Level == logrus.InfoLevel && strings.HasPrefix(en.Message, "still waiting for the deploy lease held by "):
			progress++
			lines = append(lines, en.Message)
			want := "still waiting for the deploy lease held by ci-runner/7/busy on ci-runner (deploy, since " + fleet.TimeTag(since) + "), "
			if !strings.HasPrefix(en.Message, want) || !strings.HasSuffix(en.Message, " left") {
				t.Errorf("progress line %q, want it to start %q and say what is left", en.Message, want)
			}
		case en.Level == logrus.DebugLevel && strings.HasPrefix(en.Message, "still waiting"):
			debug++
		}
	}
	// Looks every 2 s for 210 s: the first at info, one at info at about
	// 60, 120 and 180 s, the rest at debug.
	if first != 1 || progress != 3 || debug < 90 {
		t.Fatalf("%d first lines, %d progress lines at info (want 1 and 3), %d at debug:\n%s", first, progress, debug, strings.Join(lines, "\n"))
	}
	// About a minute apart: at least 60 s, at most one look (2 s) more.
	prev := 3*time.Minute + 30*time.Second
	for i, line := range lines {
		fields := strings.Fields(line)
		left, err := time.ParseDuration(fields[len(fields)-2])
		if err != nil {
			t.Fatalf("progress line %q: %v", line, err)
		}
		if gap := prev - left; gap < time.Minute-time.Second || gap > time.Minute+3*time.Second {
			t.Errorf("progress line %d came %s after the one before (%q), want about a minute", i, gap, line)
		}
		prev = left
	}
}
