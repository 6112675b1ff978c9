package swap_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/rollback"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

func TestBlueGreen(t *testing.T) {
	for _, apex := range []bool{false, true} {
		name := "subdomain"
		if apex {
			name = "apex"
		}
		t.Run(name, func(t *testing.T) { blueGreen(t, apex) })
	}
}

// onlyLease reports record changes that touched nothing but the deploy lease.
func onlyLease(t *testing.T, e *fleettest.Env, changes []string) {
	t.Helper()
	for _, c := range changes {
		if !strings.Contains(c, fleet.LeaseName(e.C.Domain)+" TXT") {
			t.Errorf("record change %q; want only the deploy lease's", c)
		}
	}
}

func blueGreen(t *testing.T, apex bool) {
	e := fleettest.NewEnv(t, apex, awsharness.Options{})
	ctx := context.Background()

	// v1: the site's Elastic IP is allocated, the record created pointing at it.
	v1 := fleettest.Bake(t, e.H, e.C, "build1")
	lr1, sr1 := e.MustDeploy()
	e.WantLive(lr1.InstanceID, "build1")
	e.WantInstances(lr1.InstanceID)
	if sr1.Previous != "" || sr1.Unchanged || sr1.ChangeID == "" || sr1.OldRecord != "" || len(sr1.Draining) != 0 {
		t.Fatalf("first swap %+v", sr1)
	}
	addr := e.Address()

	// v2: the address moves; the record is not written again; instance 1
	// stays for the grace, then goes.
	v2 := fleettest.Bake(t, e.H, e.C, "build2")
	before := len(e.H.Model.Changes())
	lr2, sr2 := e.MustDeploy()
	if lr2.InstanceID == lr1.InstanceID {
		t.Fatal("v2 reused v1's instance")
	}
	e.WantLive(lr2.InstanceID, "build2")
	e.WantInstances(lr2.InstanceID)
	if e.Address().AllocationID != addr.AllocationID {
		t.Fatalf("the site's address changed: %+v, was %+v", e.Address(), addr)
	}
	if sr2.Previous != lr1.InstanceID || sr2.ChangeID != "" || !slices.Equal(sr2.Draining, []string{lr1.InstanceID}) || sr2.RetireAfter.IsZero() {
		t.Fatalf("second swap %+v", sr2)
	}
	onlyLease(t, e, fleettest.RecordChanges(e.H)[before:])
	if w := e.Clock.Waits(); !slices.ContainsFunc(w, func(d time.Duration) bool { return d > time.Minute && d <= e.C.Grace }) {
		t.Fatalf("waits %v, want the grace of %s before terminating instance 1", w, e.C.Grace)
	}
	if in, _, _ := fleet.DescribeInstance(ctx, e.H.EC2(t), lr2.InstanceID); in.Role != fleet.RoleLive {
		t.Fatalf("instance 2 role %q, want live", in.Role)
	}
	if a, _ := e.H.Model.Image(v2.ImageID); !hasTag(a.Tags, fleet.TagLiveSince) || !hasTag(a.Tags, fleet.TagGate) {
		t.Errorf("v2's AMI does not record that it went live: %+v", a.Tags)
	}
	if a, _ := e.H.Model.Image(v1.ImageID); !hasTag(a.Tags, fleet.TagLiveUntil) {
		t.Errorf("v1's AMI does not record that it stopped being live: %+v", a.Tags)
	}

	// v2 again: nothing created, nothing changed, and it says so.
	_, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	e.H.Calls.Reset()
	before = len(e.H.Model.Changes())
	lr3, sr3 := e.MustDeploy()
	for _, op := range []string{"RunInstances", "TerminateInstances", "CreateTags", "RegisterImage", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "AllocateAddress", "AssociateAddress"} {
		if n := e.H.Calls.Count("ec2", op); n != 0 {
			t.Errorf("unchanged redeploy called %s %d times", op, n)
		}
	}
	onlyLease(t, e, fleettest.RecordChanges(e.H)[before:])
	if !lr3.AlreadyLive || !sr3.Unchanged || lr3.InstanceID != lr2.InstanceID {
		t.Fatalf("unchanged redeploy: launch %+v swap %+v", lr3, sr3)
	}
	if s := swap.DeploySummary(lr3, sr3); !strings.Contains(s, "nothing created or changed") {
		t.Fatalf("summary %q does not say nothing changed", s)
	}
	_, amis2, snaps2 := fleettest.Leftovers(t, e.H, e.C.Site)
	if !slices.Equal(amis, amis2) || !slices.Equal(snaps, snaps2) {
		t.Fatalf("AMIs %v → %v, snapshots %v → %v", amis, amis2, snaps, snaps2)
	}
	e.WantInstances(lr2.InstanceID)

	// v3 fails its health gate: the address and record are untouched, the
	// candidate gone, its AMI marked.
	v3 := fleettest.Bake(t, e.H, e.C, "build3")
	e.Builds.Break("build3", http.StatusServiceUnavailable, "")
	e.C.HealthTimeout = 100 * time.Millisecond
	if _, _, err := e.Deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("deploy of a broken build: %v, want a failed health gate", err)
	}
	e.C.HealthTimeout = 5 * time.Second
	e.WantLive(lr2.InstanceID, "build2")
	e.WantInstances(lr2.InstanceID)
	if a, _ := e.H.Model.Image(v3.ImageID); !slices.Contains(a.Tags, awsmodel.Tag{Key: fleet.TagGate, Value: fleet.GateFailed}) {
		t.Errorf("v3's AMI is not marked as having failed its gate: %+v", a.Tags)
	}

	// Rollback: back to v1, the build live before v2, relaunched from its
	// AMI (instance 1 is gone); v3 never went live, so it is not the target.
	rr, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := fleet.DescribeInstance(ctx, e.H.EC2(t), rr.InstanceID)
	if in.BuildID != "build1" || in.ImageID != v1.ImageID || rr.InstanceID == lr1.InstanceID {
		t.Fatalf("rolled back to %+v, want a new instance of build1", in)
	}
	e.WantLive(rr.InstanceID, "build1")
	e.WantInstances(rr.InstanceID)

	// Status: record → address → instance → AMI → image sha256 → build id → commit.
	var out bytes.Buffer
	if err := fleet.Status(ctx, e.FleetOptions(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{addr.PublicIP, addr.AllocationID, rr.InstanceID, v1.ImageID, v1.ImageDigest, "build1", "c0ffeebuild1", "[rollback]", "[failed its gate]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`(?m)^lease\s+free$`).MatchString(out.String()) || !regexp.MustCompile(`(?m)^rollback to\s+`+v2.ImageID).MatchString(out.String()) {
		t.Errorf("status does not show the lease free and v2 as the rollback target:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^strays\s+none$`).MatchString(out.String()) {
		t.Errorf("status shows strays:\n%s", out.String())
	}

	// Prune, keep_images 1: a plan first, then applied. Kept: the live one
	// (v1) and the rollback target (v2); v3, which failed its gate, goes first.
	e.C.KeepImages = 1
	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, false); err != nil {
		t.Fatal(err)
	}
	if _, amis, _ := fleettest.Leftovers(t, e.H, e.C.Site); len(amis) != 3 || !strings.Contains(out.String(), "deregister  "+v3.ImageID) {
		t.Fatalf("a plan-only prune changed something or planned wrong: AMIs %v\n%s", amis, out.String())
	}
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatal(err)
	}
	_, amis, snaps = fleettest.Leftovers(t, e.H, e.C.Site)
	wantAMIs, wantSnaps := []string{v1.ImageID, v2.ImageID}, []string{v1.SnapshotID, v2.SnapshotID}
	slices.Sort(wantAMIs)
	slices.Sort(wantSnaps)
	if !slices.Equal(amis, wantAMIs) || !slices.Equal(snaps, wantSnaps) {
		t.Fatalf("after prune AMIs %v snapshots %v, want %v %v", amis, snaps, wantAMIs, wantSnaps)
	}
	e.WantLive(rr.InstanceID, "build1")
	e.WantInstances(rr.InstanceID)
}

func hasTag(tags []awsmodel.Tag, key string) bool {
	return slices.ContainsFunc(tags, func(t awsmodel.Tag) bool { return t.Key == key && t.Value != "" })
}

func TestStatusAndPruneFindStrayCandidates(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	ctx := context.Background()
	fleettest.Bake(t, e.H, e.C, "build1")
	lr1, _ := e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build2")
	// `mage launch` alone: a healthy candidate that never goes live.
	cand, err := launch.Launch(ctx, e.LaunchOptions())
	if err != nil {
		t.Fatal(err)
	}
	// A bake that stopped before registering its AMI left a finished
	// snapshot, and one that was still uploading.
	done, uploading := fleettest.OrphanSnapshot(t, e, true), fleettest.OrphanSnapshot(t, e, false)
	// Receipts are caches: status and prune read AWS.
	fleettest.RemoveReceipts(t, e.C, "launch", "swap", "bake")
	var out bytes.Buffer
	if err := fleet.Status(ctx, e.FleetOptions(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 instance(s) nothing sends readers to") || !strings.Contains(out.String(), cand.InstanceID+"  running  candidate  build build2") {
		t.Fatalf("status does not show the stray candidate %s:\n%s", cand.InstanceID, out.String())
	}
	if !strings.Contains(out.String(), "2 not used by any AMI") || !strings.Contains(out.String(), done) || !strings.Contains(out.String(), uploading) {
		t.Fatalf("status does not show the orphan snapshots:\n%s", out.String())
	}
	// A plan only, without the lease: the pending snapshot may be a bake in
	// progress, and is left.
	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "leave       "+uploading) || !strings.Contains(out.String(), "delete      "+done) {
		t.Fatalf("prune plan:\n%s", out.String())
	}
	// Applied, holding the lease: no bake runs, so the pending one is a bake
	// that died, and goes too.
	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "terminate   "+cand.InstanceID) || !strings.Contains(out.String(), "delete      "+done) || !strings.Contains(out.String(), "delete      "+uploading) {
		t.Fatalf("prune plan:\n%s", out.String())
	}
	_, _, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if slices.Contains(snaps, done) || slices.Contains(snaps, uploading) || len(snaps) != 2 {
		t.Fatalf("snapshots after prune %v: want only the two AMIs'", snaps)
	}
	e.WantInstances(lr1.InstanceID)
	e.WantLive(lr1.InstanceID, "build1")
}

// TestRollbackReusesTheInstanceInItsGrace rolls back while the previous
// build's instance is still in its grace: it is health-checked and the
// address moves back to it, and nothing is launched.
func TestRollbackReusesTheInstanceInItsGrace(t *testing.T) {
	e := fleettest.NewEnv(t, true, awsharness.Options{})
	fleettest.Bake(t, e.H, e.C, "build1")
	lr1, _ := e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build2")
	// v2 goes live; the run stops in the grace, so instance 1 still runs.
	ctx, cancel := context.WithCancel(context.Background())
	e.Clock.OnAfter(func(d time.Duration) bool {
		if d < time.Minute {
			return false // the waits between looks
		}
		cancel()
		return true
	})
	if _, _, err := e.Deploy(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("deploy stopped in the grace: %v", err)
	}
	e.Clock.OnAfter(nil)
	lr2, err := launch.ReadReceipt(e.C.BuildDir())
	if err != nil {
		t.Fatal(err)
	}
	e.WantLive(lr2.InstanceID, "build2")
	if in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), lr1.InstanceID); in.Role != fleet.RoleDraining || in.RetireAfter.IsZero() {
		t.Fatalf("instance 1 is %+v, want draining until its grace ends", in)
	}

	e.H.Calls.Reset()
	r, err := rollback.Rollback(context.Background(), e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r.InstanceID != lr1.InstanceID || e.H.Calls.Count("ec2", "RunInstances") != 0 {
		t.Fatalf("rolled back to %s with %d RunInstances; want instance 1 reused", r.InstanceID, e.H.Calls.Count("ec2", "RunInstances"))
	}
	e.WantLive(lr1.InstanceID, "build1")
	e.WantInstances(lr1.InstanceID)
}

// TestChangedTTLOnlyRewritesTheRecord: a new ttl setting with unchanged
// content rewrites the record and launches and moves nothing.
func TestChangedTTLOnlyRewritesTheRecord(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	v1 := fleettest.Bake(t, e.H, e.C, "build1")
	lr1, _ := e.MustDeploy()
	liveSince := func() string {
		a, _ := e.H.Model.Image(v1.ImageID)
		for _, tg := range a.Tags {
			if tg.Key == fleet.TagLiveSince {
				return tg.Value
			}
		}
		return ""
	}
	since := liveSince()
	e.C.TTL = 300
	e.H.Calls.Reset()
	before := len(e.H.Model.Changes())
	lr2, sr := e.MustDeploy()
	var recordChanges []string
	for _, c := range fleettest.RecordChanges(e.H)[before:] {
		if !strings.Contains(c, fleet.LeaseName(e.C.Domain)) {
			recordChanges = append(recordChanges, c)
		}
	}
	if lr2.InstanceID != lr1.InstanceID || sr.Unchanged || sr.ChangeID == "" || e.H.Calls.Count("ec2", "RunInstances") != 0 || e.H.Calls.Count("ec2", "AssociateAddress") != 0 || len(recordChanges) != 2 {
		t.Fatalf("ttl change: %+v, RunInstances %d, AssociateAddress %d, record changes %v", sr, e.H.Calls.Count("ec2", "RunInstances"), e.H.Calls.Count("ec2", "AssociateAddress"), recordChanges)
	}
	e.WantLive(lr1.InstanceID, "build1") // checks TTL 300 too
	e.WantInstances(lr1.InstanceID)
	if since == "" || liveSince() != since {
		t.Fatalf("build1 live since %q, then %q: the record's TTL changed, not when it went live", since, liveSince())
	}
}
