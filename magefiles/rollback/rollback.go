// Package rollback puts the build that was live most recently back behind
// the site's address: the fleet names it, Launch brings up an instance of it
// (reusing one still in its grace) behind the same health gate as any
// deploy, and Swap moves the address. It holds the deploy lease throughout,
// and then Retire waits out the grace of the build it replaced.
package rollback

import (
	"context"
	"fmt"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

// Rollback reads the site's state holding the deploy lease, launches the
// rollback target and swaps it in. The launch and swap options carry the
// configuration and their own settings; Target and InstanceID are filled
// in here. Lease tunes the deploy lease.
func Rollback(ctx context.Context, lopts launch.Options, sopts swap.Options) (*swap.Receipt, error) {
	c := sopts.Config
	if c == nil || c.Site == "" || c.Domain == "" {
		return nil, fmt.Errorf("rollback: needs deploy.site and deploy.domain")
	}
	fopts := fleet.Options{Config: c, Log: sopts.Log, Clock: sopts.Clock, Lease: sopts.Lease, WaitDelay: sopts.WaitDelay, AWSOptions: sopts.AWSOptions}
	var r *swap.Receipt
	err := fleet.WithLease(ctx, fopts, "rollback", func(ctx context.Context) error {
		st, err := fleet.Read(ctx, fopts)
		if err != nil {
			return err
		}
		switch {
		case st.Live == nil:
			return fmt.Errorf("%s sends readers to none of site %s's instances; nothing to roll back (run `mage status`)", st.Record.Name, c.Site)
		case st.Rollback == nil:
			return fmt.Errorf("site %s has no other build that was live (the live one is build %s, %s); nothing to roll back to", c.Site, st.Live.BuildID, st.Live.ImageID)
		}
		prev := *st.Rollback
		log := fleet.StepLog(sopts.Log, "rollback")
		log.Infof("rolling %s back from build %s (%s) to build %s (%s), live until %s", st.Record.Name, st.Live.BuildID, st.Live.ImageID, prev.BuildID, prev.ID, fleet.TimeTag(prev.LastLive()))
		lopts.Target = &launch.Target{ImageID: prev.ID, ImageDigest: prev.ImageDigest, BuildID: prev.BuildID, Commit: prev.Commit}
		lr, err := launch.Launch(ctx, lopts)
		if err != nil {
			return err
		}
		sopts.InstanceID = lr.InstanceID
		r, err = swap.Swap(ctx, sopts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	if _, err := swap.Retire(ctx, sopts); err != nil {
		return r, fmt.Errorf("rollback: %w", err)
	}
	return r, nil
}
