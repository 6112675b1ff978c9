package swap_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

// TestInterruptedDeployConverges cancels a v1 → v2 deploy at every AWS call
// it makes (the call arriving: it may or may not take effect) and in the
// drain, then runs it again. The interrupted run leaves no candidate that
// never went live; the second converges to v2 behind the record, and the
// site's instances, AMIs and snapshots counted by tag show nothing leaked.
func TestInterruptedDeployConverges(t *testing.T) {
	// How many calls a clean v2 deploy makes.
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	fleettest.Bake(t, e.H, e.C, "build1")
	e.MustDeploy()
	fleettest.Bake(t, e.H, e.C, "build2")
	e.H.Calls.Reset()
	e.MustDeploy()
	calls := e.H.Calls.Calls()
	if len(calls) < 10 {
		t.Fatalf("a v2 deploy made only %d calls: %v", len(calls), calls)
	}

	for k := 0; k <= len(calls); k++ {
		where := "in the drain"
		if k < len(calls) {
			where = fmt.Sprintf("at call %d (%s)", k+1, calls[k])
		}
		t.Run(where, func(t *testing.T) {
			e := fleettest.NewEnv(t, false, awsharness.Options{})
			fleettest.Bake(t, e.H, e.C, "build1")
			lr1, _ := e.MustDeploy()
			fleettest.Bake(t, e.H, e.C, "build2")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var n atomic.Int64
			if k < len(calls) {
				e.H.Calls.OnCall(func(awsharness.Call) {
					if n.Add(1) == int64(k+1) {
						cancel()
					}
				})
			} else {
				e.Clock.OnAfter(func(time.Duration) bool { cancel(); return true })
			}
			_, _, err := e.Deploy(ctx)
			if err == nil {
				t.Logf("the deploy finished before the cancellation took hold")
			} else if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted deploy: %v, want cancelled", err)
			}
			e.Clock.OnAfter(nil)

			// Nothing left that never went live.
			insts, _, _ := fleettest.Leftovers(t, e.H, e.C.Site)
			for _, id := range insts {
				in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), id)
				if in.Role == fleet.RoleCandidate {
					t.Errorf("candidate %s (build %s) left running by the interrupted deploy", id, in.BuildID)
				}
			}

			// Run again: it converges.
			lr, _ := e.MustDeploy()
			in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), lr.InstanceID)
			if in.BuildID != "build2" || in.Role != fleet.RoleLive || lr.InstanceID == lr1.InstanceID {
				t.Fatalf("after the rerun %s is %+v, want build2 live", lr.InstanceID, in)
			}
			e.WantRecordAt(lr.InstanceID)
			insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
			if !slices.Equal(insts, []string{lr.InstanceID}) || len(amis) != 2 || len(snaps) != 2 {
				t.Fatalf("leftovers: instances %v (want only %s), AMIs %v, snapshots %v", insts, lr.InstanceID, amis, snaps)
			}
		})
	}
}
