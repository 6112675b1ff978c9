package swap

import (
	"context"
	"fmt"
	"time"

	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// Rollback points the record back at the build before the live one. The
// previous build is read from AWS (the newest AMI older than the live
// one's, see RollbackTarget); its instance is reused while it still runs
// (draining) and relaunched from its AMI otherwise, behind the same health
// gate as any launch, then swapped in like a deploy. lopts configures the
// launch (its Config and Log are taken from opts).
func Rollback(ctx context.Context, opts Options, lopts launch.Options) (*Receipt, error) {
	start := time.Now()
	if err := validate(opts.Config, "rollback", true); err != nil {
		return nil, err
	}
	s, err := newSwapper(ctx, opts, "rollback")
	if err != nil {
		return nil, err
	}
	st, err := s.inspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	switch {
	case st.Record.Type == "":
		return nil, fmt.Errorf("rollback: %s has no record yet; there is nothing to roll back (mage deploy)", st.Record.Name)
	case st.Live == nil:
		return nil, fmt.Errorf("rollback: %s points at %s, which is none of site %s's instances; run `mage status`", st.Record.Name, st.Record.Target, s.cfg.Site)
	case st.Rollback == nil:
		return nil, fmt.Errorf("rollback: site %s has no AMI older than the live %s (build %s); nothing to roll back to", s.cfg.Site, st.Live.ImageID, st.Live.BuildID)
	}
	prev := *st.Rollback
	s.log.Infof("rolling %s back from build %s (%s) to build %s (%s)", st.Record.Name, st.Live.BuildID, st.Live.ImageID, prev.BuildID, prev.ID)

	lopts.Config, lopts.NoReceipt = opts.Config, true
	if lopts.AWSOptions == nil {
		lopts.AWSOptions = opts.AWSOptions
	}
	if lopts.Log == nil {
		lopts.Log = s.log
	}
	lopts.Target = &launch.Target{ImageID: prev.ID, ImageSHA256: prev.ImageSHA256, BuildID: prev.BuildID, Commit: prev.Commit}
	lr, err := launch.Launch(ctx, lopts)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	r, err := s.swap(ctx, lr.InstanceID)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	r.Seconds = time.Since(start).Seconds()
	if !opts.NoReceipt {
		if err := receipt.Write(opts.Config.BuildDir(), ReceiptName, r); err != nil {
			return nil, fmt.Errorf("rollback: %s points at %s but writing the receipt failed: %w", r.Record, r.NewTarget, err)
		}
	}
	return r, nil
}
