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

	"github.com/unikernel-blog/blog/magefiles/rollback"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

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
	e := fleettest.NewEnv(t, apex, awsharness.Options{})
	ctx := context.Background()

	// v1: the record is created, pointing at instance 1.
	v1 := fleettest.Bake(t, e.H, e.C, "build1")
	lr1, sr1 := e.MustDeploy()
	e.WantRecordAt(lr1.InstanceID)
	e.WantInstances(lr1.InstanceID)
	if sr1.OldTarget != "" || sr1.Unchanged || len(sr1.Terminated) != 0 {
		t.Fatalf("first swap %+v", sr1)
	}

	// v2 (a changed post: new build id, new image): the record moves to
	// instance 2, and instance 1 is terminated after a drain of the old TTL.
	v2 := fleettest.Bake(t, e.H, e.C, "build2")
	lr2, sr2 := e.MustDeploy()
	if lr2.InstanceID == lr1.InstanceID {
		t.Fatal("v2 reused v1's instance")
	}
	e.WantRecordAt(lr2.InstanceID)
	e.WantInstances(lr2.InstanceID)
	if sr2.OldTarget != e.Target(lr1.InstanceID) || !slices.Equal(sr2.Terminated, []string{lr1.InstanceID}) || sr2.ChangeID == "" {
		t.Fatalf("second swap %+v", sr2)
	}
	if w := e.Clock.Waits(); !slices.Contains(w, 60*time.Second) {
		t.Fatalf("drain waits %v, want the old record's 60s TTL", w)
	}
	if in, _, _ := fleet.DescribeInstance(ctx, e.H.EC2(t), lr2.InstanceID); in.Role != fleet.RoleLive {
		t.Fatalf("instance 2 role %q, want live", in.Role)
	}

	// v2 again: nothing created, nothing changed, and it says so.
	_, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	e.H.Calls.Reset()
	lr3, sr3 := e.MustDeploy()
	for _, op := range []string{"RunInstances", "TerminateInstances", "CreateTags", "RegisterImage", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "ChangeResourceRecordSets"} {
		if n := e.H.Calls.Count("ec2", op) + e.H.Calls.Count("route53", op); n != 0 {
			t.Errorf("unchanged redeploy called %s %d times", op, n)
		}
	}
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

	// v3 fails its health gate: the record is untouched, the candidate gone.
	v3 := fleettest.Bake(t, e.H, e.C, "build3")
	e.Builds.Break("build3", http.StatusServiceUnavailable, "")
	e.C.HealthTimeout = 100 * time.Millisecond
	if _, _, err := e.Deploy(ctx); !errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("deploy of a broken build: %v, want a failed health gate", err)
	}
	e.C.HealthTimeout = 5 * time.Second
	e.WantRecordAt(lr2.InstanceID)
	e.WantInstances(lr2.InstanceID)

	// Rollback: back to v1, relaunched from its AMI (instance 1 is gone).
	rr, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := fleet.DescribeInstance(ctx, e.H.EC2(t), rr.InstanceID)
	if in.BuildID != "build1" || in.ImageID != v1.ImageID || rr.InstanceID == lr1.InstanceID {
		t.Fatalf("rolled back to %+v, want a new instance of build1", in)
	}
	e.WantRecordAt(rr.InstanceID)
	e.WantInstances(rr.InstanceID)

	// Status: record → instance → AMI → image sha256 → build id → commit.
	var out bytes.Buffer
	if err := fleet.Status(ctx, e.FleetOptions(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{e.Target(rr.InstanceID), rr.InstanceID, v1.ImageID, v1.ImageSHA256, "build1", "c0ffeebuild1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	if !regexp.MustCompile(`(?m)^strays\s+none$`).MatchString(out.String()) {
		t.Errorf("status shows strays:\n%s", out.String())
	}

	// Prune, keep_images 1: a plan first, then applied. Kept: the newest
	// (v3) and the live one (v1); v2 and its snapshot go.
	e.C.KeepImages = 1
	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, false); err != nil {
		t.Fatal(err)
	}
	if _, amis, _ := fleettest.Leftovers(t, e.H, e.C.Site); len(amis) != 3 || !strings.Contains(out.String(), "deregister  "+v2.ImageID) {
		t.Fatalf("a plan-only prune changed something or planned wrong: AMIs %v\n%s", amis, out.String())
	}
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatal(err)
	}
	_, amis, snaps = fleettest.Leftovers(t, e.H, e.C.Site)
	wantAMIs, wantSnaps := []string{v1.ImageID, v3.ImageID}, []string{v1.SnapshotID, v3.SnapshotID}
	slices.Sort(wantAMIs)
	slices.Sort(wantSnaps)
	if !slices.Equal(amis, wantAMIs) || !slices.Equal(snaps, wantSnaps) {
		t.Fatalf("after prune AMIs %v snapshots %v, want %v %v", amis, snaps, wantAMIs, wantSnaps)
	}
	e.WantRecordAt(rr.InstanceID)
	e.WantInstances(rr.InstanceID)
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
	// snapshot, and one is still uploading.
	done, uploading := fleettest.OrphanSnapshot(t, e, true), fleettest.OrphanSnapshot(t, e, false)
	// Receipts are caches: status and prune read AWS.
	fleettest.RemoveReceipts(t, e.C, "launch", "swap", "bake")
	var out bytes.Buffer
	if err := fleet.Status(ctx, e.FleetOptions(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 instance(s) not behind the record") || !strings.Contains(out.String(), cand.InstanceID+"  running  candidate  build build2") {
		t.Fatalf("status does not show the stray candidate %s:\n%s", cand.InstanceID, out.String())
	}
	if !strings.Contains(out.String(), "2 not used by any AMI") || !strings.Contains(out.String(), done) || !strings.Contains(out.String(), uploading) {
		t.Fatalf("status does not show the orphan snapshots:\n%s", out.String())
	}
	out.Reset()
	if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "terminate   "+cand.InstanceID) || !strings.Contains(out.String(), "delete      "+done) || strings.Contains(out.String(), uploading) {
		t.Fatalf("prune plan:\n%s", out.String())
	}
	_, _, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if slices.Contains(snaps, done) || !slices.Contains(snaps, uploading) || len(snaps) != 3 {
		t.Fatalf("snapshots after prune %v: want the two AMIs' and the one still uploading (%s)", snaps, uploading)
	}
	e.WantInstances(lr1.InstanceID)
	e.WantRecordAt(lr1.InstanceID)
}

// TestRollbackReusesTheDrainingInstance rolls back while the previous
// build's instance is still draining: it is health-checked and put back
// behind the record, and nothing is launched.
func TestRollbackReusesTheDrainingInstance(t *testing.T) {
	e := fleettest.NewEnv(t, true, awsharness.Options{})
	fleettest.Bake(t, e.H, e.C, "build1")
	lr1, _ := e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build2")
	// v2 goes live; the run stops in the drain, so instance 1 still runs.
	ctx, cancel := context.WithCancel(context.Background())
	e.Clock.OnAfter(func(time.Duration) bool { cancel(); return true })
	if _, _, err := e.Deploy(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("deploy stopped in the drain: %v", err)
	}
	e.Clock.OnAfter(nil)
	lr2, err := launch.ReadReceipt(e.C.BuildDir())
	if err != nil {
		t.Fatal(err)
	}
	e.WantRecordAt(lr2.InstanceID)
	if in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), lr1.InstanceID); in.Role != fleet.RoleDraining {
		t.Fatalf("instance 1 is %+v, want draining", in)
	}

	e.H.Calls.Reset()
	r, err := rollback.Rollback(context.Background(), e.LaunchOptions(), e.SwapOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r.InstanceID != lr1.InstanceID || e.H.Calls.Count("ec2", "RunInstances") != 0 {
		t.Fatalf("rolled back to %s with %d RunInstances; want instance 1 reused", r.InstanceID, e.H.Calls.Count("ec2", "RunInstances"))
	}
	e.WantRecordAt(lr1.InstanceID)
	e.WantInstances(lr1.InstanceID)
}

// TestChangedTTLOnlyUpdatesTheRecord: a new ttl setting with unchanged
// content changes the record's TTL and launches nothing.
func TestChangedTTLOnlyUpdatesTheRecord(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	fleettest.Bake(t, e.H, e.C, "build1")
	lr1, _ := e.MustDeploy()
	e.C.TTL = 300
	e.H.Calls.Reset()
	lr2, sr := e.MustDeploy()
	if lr2.InstanceID != lr1.InstanceID || sr.Unchanged || e.H.Calls.Count("ec2", "RunInstances") != 0 || e.H.Calls.Count("route53", "ChangeResourceRecordSets") != 1 {
		t.Fatalf("ttl change: %+v, RunInstances %d, changes %d", sr, e.H.Calls.Count("ec2", "RunInstances"), e.H.Calls.Count("route53", "ChangeResourceRecordSets"))
	}
	e.WantRecordAt(lr1.InstanceID) // checks TTL 300 too
	e.WantInstances(lr1.InstanceID)
}
