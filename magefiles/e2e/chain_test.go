package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

// TestDeployThroughBake runs the chain as `mage deploy` does from the disk
// image on: the real Bake, then Launch and Swap. A redeploy of the same
// image uploads nothing, registers nothing, launches nothing and changes no
// record.
func TestDeployThroughBake(t *testing.T) {
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	e.C.UploadParallel = 4
	ctx := context.Background()
	deploy := func() (string, bool) {
		t.Helper()
		br, err := bake.Bake(ctx, bake.Options{Config: e.C, Log: e.Log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lr, _ := e.MustDeploy()
		if lr.ImageID != br.ImageID {
			t.Fatalf("launched AMI %s, baked %s", lr.ImageID, br.ImageID)
		}
		return lr.InstanceID, br.Reused
	}

	fleettest.WriteImage(t, e.C, "build1")
	i1, _ := deploy()
	e.WantRecordAt(i1)
	fleettest.WriteImage(t, e.C, "build2")
	i2, _ := deploy()
	e.WantRecordAt(i2)
	e.WantInstances(i2)

	e.H.Calls.Reset()
	i3, reused := deploy()
	if !reused || i3 != i2 {
		t.Fatalf("redeploy: reused %v, instance %s (want %s)", reused, i3, i2)
	}
	for _, c := range []struct{ svc, op string }{
		{"ebs", "StartSnapshot"}, {"ebs", "PutSnapshotBlock"}, {"ec2", "RegisterImage"},
		{"ec2", "RunInstances"}, {"ec2", "TerminateInstances"}, {"route53", "ChangeResourceRecordSets"},
	} {
		if n := e.H.Calls.Count(c.svc, c.op); n != 0 {
			t.Errorf("unchanged redeploy called %s:%s %d times", c.svc, c.op, n)
		}
	}
	insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if len(insts) != 1 || len(amis) != 2 || len(snaps) != 2 {
		t.Fatalf("instances %v AMIs %v snapshots %v, want 1, 2, 2", insts, amis, snaps)
	}
}
