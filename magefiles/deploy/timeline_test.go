package deploy_test

import (
	"context"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// withBake is a deploy that bakes build's image itself, as `mage deploy`
// does, beside the security group and the address.
func withBake(t *testing.T, e *fleettest.Env, build string) deploy.Options {
	t.Helper()
	fleettest.WriteImage(t, e.C, build)
	o := e.DeployOptions()
	o.Bake = &bake.Options{WaitDelay: 5 * time.Millisecond, RetryBase: time.Millisecond}
	return o
}

// TestDeployReportsItsTimeline: a first deploy through the real Bake
// reports every phase, the security group and the address beside the bake,
// a critical path whose phases add up to the wall time within 10 %, the
// moment it went live, and the same figures in _build/deploy.json. A second
// deploy replaces the first build and waits out its grace: that is on the
// timeline too.
func TestDeployReportsItsTimeline(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	for _, build := range []string{"build1", "build2"} {
		r, err := deploy.Run(context.Background(), withBake(t, e, build))
		if err != nil {
			t.Fatalf("deploying %s: %v", build, err)
		}
		s := r.Timeline
		t.Logf("%s: %s", build, s.Line())
		byName := map[string]timeline.Phase{}
		for _, p := range s.Phases {
			byName[p.Name] = p
		}
		want := []string{"lease", "bake", "upload", "snapshot", "ami", "orphans", "security group", "address", "launch", "boot", "gate", "cutover", "tidy", "release", "grace"}
		if build == "build1" {
			want = append(want, "record") // the first deploy writes the record
		} else {
			want = append(want, "retire") // the second retires build1 after its grace
		}
		for _, name := range want {
			if _, ok := byName[name]; !ok {
				t.Errorf("%s: no %q phase in %+v", build, name, s.Phases)
			}
		}
		bakePhases := []string{"bake", "upload", "snapshot", "ami", "orphans"}
		for _, name := range []string{"security group", "address"} {
			p := byName[name]
			if p.Critical || !slices.Contains(bakePhases, p.Beside) {
				t.Errorf("%s: %s is %+v; want it beside a phase of the bake, off the critical path", build, name, p)
			}
		}
		for _, name := range []string{"upload", "ami", "launch", "boot", "gate", "cutover"} {
			if !byName[name].Critical {
				t.Errorf("%s: %s is off the critical path", build, name)
			}
		}
		if diff := math.Abs(s.CriticalSeconds - s.Seconds); s.Seconds <= 0 || diff > 0.1*s.Seconds {
			t.Errorf("%s: the critical path adds up to %.3f s of a %.3f s deploy: more than 10 %% apart", build, s.CriticalSeconds, s.Seconds)
		}
		if s.LiveSeconds <= 0 || s.LiveSeconds > s.Seconds || s.LiveSeconds < byName["cutover"].Start {
			t.Errorf("%s: live after %.3f s of %.3f s, cutover from %.3f s", build, s.LiveSeconds, s.Seconds, byName["cutover"].Start)
		}
		// The end of the grace is tagged to the second when the old
		// instance starts draining, at the cutover; the grace phase starts
		// after the tidying that follows it.
		if g := byName["grace"]; build == "build2" && g.Seconds < e.C.Grace.Seconds()-1-(g.Start-s.LiveSeconds) {
			t.Errorf("build2: grace %.1f s, want the configured %s (waited on the test clock)", g.Seconds, e.C.Grace)
		}
		line := s.Line()
		for _, part := range []string{"timeline: live after", "upload", "(beside it:", "security group", "address", "→ [live] →", "critical path"} {
			if !strings.Contains(line, part) {
				t.Errorf("%s: the line %q lacks %q", build, line, part)
			}
		}
		var rc deploy.Receipt
		if ok, err := receipt.Read(e.C.BuildDir(), deploy.ReceiptName, &rc); !ok || err != nil {
			t.Fatalf("%s: no deploy receipt: %v", build, err)
		}
		if !rc.OK || rc.BuildID != build || !reflect.DeepEqual(rc.Timeline, s) {
			t.Errorf("%s: receipt %+v does not hold the deploy's timeline %+v", build, rc, s)
		}
	}
}

// TestAFailureBesideTheBakeUndoesIt: the security group cannot be created
// while Bake uploads: the deploy fails with that error (not the
// cancellation it caused), the bake's partial snapshot is deleted by its
// own undo, nothing is launched, the lease is released, and the failed
// deploy's timeline is in its receipt.
func TestAFailureBesideTheBakeUndoesIt(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	o := withBake(t, e, "build1")
	// Each block upload takes a while; the group's creation fails soon.
	e.H.Faults.Add(awsharness.Fault{Service: "ebs", Operation: "PutSnapshotBlock", Kind: awsharness.Latency, Rate: 1, Delay: 100 * time.Millisecond})
	e.H.Faults.Add(awsharness.Fault{Service: "ec2", Operation: "CreateSecurityGroup", Kind: awsharness.Latency, Rate: 1, Delay: 20 * time.Millisecond})
	e.H.Deny("ec2:CreateSecurityGroup")
	_, err := deploy.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") || !strings.Contains(err.Error(), "creating security group") {
		t.Fatalf("deploy: %v; want the security group's failure", err)
	}
	if strings.Contains(err.Error(), "context canceled") {
		t.Errorf("the error reports the bake's cancellation, which the group's failure caused: %v", err)
	}
	if e.H.Calls.Count("ebs", "StartSnapshot") == 0 {
		t.Fatal("the bake had not started its snapshot: the test shows nothing of its undo")
	}
	insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if len(insts)+len(amis)+len(snaps) != 0 {
		t.Fatalf("left: instances %v, AMIs %v, snapshots %v; want nothing", insts, amis, snaps)
	}
	if _, found, _ := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); found {
		t.Fatal("the lease is left")
	}
	var rc deploy.Receipt
	if ok, _ := receipt.Read(e.C.BuildDir(), deploy.ReceiptName, &rc); !ok || rc.OK || !strings.Contains(rc.Error, "UnauthorizedOperation") || rc.Timeline.LiveSeconds != 0 {
		t.Fatalf("receipt of the failed deploy: %+v", rc)
	}
	// The next deploy, allowed to, goes through.
	e.H.Faults.Clear()
	if _, err := deploy.Run(context.Background(), withBake(t, e, "build1")); err != nil {
		t.Fatal(err)
	}
	e.WantLive(e.Address().InstanceID, "build1")
}

// TestBothFailuresBesideTheBakeAreReported: the bake and the security
// group fail each for its own reason (checks made before any AWS call, so
// neither sees the other's failure first); the deploy names both, and
// launches nothing.
func TestBothFailuresBesideTheBakeAreReported(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	o := withBake(t, e, "build1")
	img, err := image.ReadReceipt(e.C.BuildDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(img.Path); err != nil {
		t.Fatal(err)
	}
	c := *e.C
	c.InstanceType = ""
	o.Config = &c
	_, err = deploy.Run(context.Background(), o)
	if err == nil {
		t.Fatal("the deploy succeeded")
	}
	for _, want := range []string{"bake: the disk image is missing", "launch needs instance_type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not report %q: %v", want, err)
		}
	}
	if n := e.H.Calls.Count("ec2", "RunInstances"); n != 0 {
		t.Errorf("%d RunInstances after the steps beside the bake failed", n)
	}
}
