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
// grace, then runs it again. The interrupted run leaves no candidate that
// never went live and no lease; the site serves v1 or v2 throughout; the
// second run converges to v2 behind the address, and the site's instances,
// AMIs, snapshots and addresses counted by tag show nothing leaked.
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
		where := "in the grace"
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
			var down atomic.Value
			e.H.Calls.OnCall(func(awsharness.Call) {
				// The site is served at every call: between two calls nothing changes.
				if b, err := e.Serves(); err != nil || b != "build1" && b != "build2" {
					down.Store(fmt.Sprintf("build %q, %v", b, err))
				}
				if k < len(calls) && n.Add(1) == int64(k+1) {
					cancel()
				}
			})
			if k == len(calls) {
				e.Clock.OnAfter(func(d time.Duration) bool {
					if d < time.Minute {
						return false
					}
					cancel()
					return true
				})
			}
			_, _, err := e.Deploy(ctx)
			if err == nil {
				t.Logf("the deploy finished before the cancellation took hold")
			} else if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted deploy: %v, want cancelled", err)
			}
			e.Clock.OnAfter(nil)

			// Nothing left that never went live, and no lease.
			insts, _, _ := fleettest.Leftovers(t, e.H, e.C.Site)
			for _, id := range insts {
				in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), id)
				if in.Role == fleet.RoleCandidate {
					t.Errorf("candidate %s (build %s) left running by the interrupted deploy", id, in.BuildID)
				}
			}
			if h, found, err := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); err != nil || found {
				t.Errorf("the interrupted deploy left its lease: %+v, %v", h, err)
			}

			// Run again: it converges.
			lr, _ := e.MustDeploy()
			in, _, _ := fleet.DescribeInstance(context.Background(), e.H.EC2(t), lr.InstanceID)
			if in.BuildID != "build2" || in.Role != fleet.RoleLive || lr.InstanceID == lr1.InstanceID {
				t.Fatalf("after the rerun %s is %+v, want build2 live", lr.InstanceID, in)
			}
			e.WantLive(lr.InstanceID, "build2")
			if d := down.Load(); d != nil {
				t.Errorf("the site was not served at some call: %v", d)
			}
			insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
			if !slices.Equal(insts, []string{lr.InstanceID}) || len(amis) != 2 || len(snaps) != 2 || len(fleettest.Addresses(e.H, e.C.Site)) != 1 {
				t.Fatalf("leftovers: instances %v (want only %s), AMIs %v, snapshots %v, addresses %v", insts, lr.InstanceID, amis, snaps, fleettest.Addresses(e.H, e.C.Site))
			}
		})
	}
}
