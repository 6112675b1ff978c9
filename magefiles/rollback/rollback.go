// Package rollback puts the build before the live one back behind the
// record: the fleet names it, Launch brings up an instance of it behind the
// same health gate as any deploy, and Swap moves the traffic.
package rollback

import (
	"context"
	"fmt"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

// Rollback reads the site's state, launches the rollback target (reusing its
// instance while it still runs) and swaps it in. The launch and swap options
// carry the configuration and their own settings; Target and InstanceID are
// filled in here.
func Rollback(ctx context.Context, lopts launch.Options, sopts swap.Options) (*swap.Receipt, error) {
	c := sopts.Config
	if c == nil || c.Site == "" || c.Domain == "" {
		return nil, fmt.Errorf("rollback: needs deploy.site and deploy.domain")
	}
	st, err := fleet.Read(ctx, fleet.Options{Config: c, Log: sopts.Log, AWSOptions: sopts.AWSOptions})
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	switch {
	case st.Record.Type == "":
		return nil, fmt.Errorf("rollback: %s has no record yet; there is nothing to roll back (mage deploy)", st.Record.Name)
	case st.Live == nil:
		return nil, fmt.Errorf("rollback: %s points at %s, which is none of site %s's instances; run `mage status`", st.Record.Name, st.Record.Target, c.Site)
	case st.Rollback == nil:
		return nil, fmt.Errorf("rollback: site %s has no AMI older than the live %s (build %s); nothing to roll back to", c.Site, st.Live.ImageID, st.Live.BuildID)
	}
	prev := *st.Rollback
	log := fleet.StepLog(sopts.Log, "rollback")
	log.Infof("rolling %s back from build %s (%s) to build %s (%s)", st.Record.Name, st.Live.BuildID, st.Live.ImageID, prev.BuildID, prev.ID)

	lopts.Target = &launch.Target{ImageID: prev.ID, ImageSHA256: prev.ImageSHA256, BuildID: prev.BuildID, Commit: prev.Commit}
	lr, err := launch.Launch(ctx, lopts)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	sopts.InstanceID = lr.InstanceID
	r, err := swap.Swap(ctx, sopts)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	return r, nil
}
