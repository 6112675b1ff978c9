package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

// TestDeployThroughBake runs the chain as `mage deploy` does from the disk
// image on: the real Bake, then Launch and Swap, holding the lease. A
// redeploy of the same image uploads nothing, registers nothing, launches
// nothing and changes no record (only the lease's).
func TestDeployThroughBake(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	e.C.UploadParallel = 4
	ctx := context.Background()
	run := func() (string, bool) {
		t.Helper()
		opts := e.DeployOptions()
		opts.Bake = &bake.Options{WaitDelay: time.Millisecond, RetryBase: time.Millisecond}
		r, err := deploy.Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if r.Launch.ImageID != r.Bake.ImageID {
			t.Fatalf("launched AMI %s, baked %s", r.Launch.ImageID, r.Bake.ImageID)
		}
		return r.Launch.InstanceID, r.Bake.Reused
	}

	fleettest.WriteImage(t, e.C, "build1")
	i1, _ := run()
	e.WantLive(i1, "build1")
	fleettest.WriteImage(t, e.C, "build2")
	i2, _ := run()
	e.WantLive(i2, "build2")
	e.WantInstances(i2)

	e.H.Calls.Reset()
	before := len(e.H.Model.Changes())
	i3, reused := run()
	if !reused || i3 != i2 {
		t.Fatalf("redeploy: reused %v, instance %s (want %s)", reused, i3, i2)
	}
	for _, c := range []struct{ svc, op string }{
		{"ebs", "StartSnapshot"}, {"ebs", "PutSnapshotBlock"}, {"ec2", "RegisterImage"},
		{"ec2", "RunInstances"}, {"ec2", "TerminateInstances"}, {"ec2", "AllocateAddress"}, {"ec2", "AssociateAddress"},
	} {
		if n := e.H.Calls.Count(c.svc, c.op); n != 0 {
			t.Errorf("unchanged redeploy called %s:%s %d times", c.svc, c.op, n)
		}
	}
	for _, c := range fleettest.RecordChanges(e.H)[before:] {
		if !strings.Contains(c, fleet.LeaseName(e.C.Domain)) {
			t.Errorf("unchanged redeploy changed %s", c)
		}
	}
	insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if len(insts) != 1 || len(amis) != 2 || len(snaps) != 2 {
		t.Fatalf("instances %v AMIs %v snapshots %v, want 1, 2, 2", insts, amis, snaps)
	}
}
