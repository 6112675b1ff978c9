package swap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// Retire ends the grace of the instances a swap replaced: it waits until the
// last of them is due, then, holding the deploy lease again, terminates the
// ones due that nothing sends readers to (a rollback meanwhile may have put
// one back behind the address). It runs after the swap's lease is released,
// so a rollback or another deploy can run during the grace. If another run
// holds the lease when the grace ends, it leaves them to that run: every run
// that holds the lease terminates what is due. It returns what it
// terminated.
func Retire(ctx context.Context, opts Options) ([]string, error) {
	seq := opts.Timeline.Seq()
	seq.Next("grace")
	defer seq.End()
	if err := validate(opts.Config, "retire"); err != nil {
		return nil, err
	}
	s, err := newSwapper(ctx, opts, "retire")
	if err != nil {
		return nil, err
	}
	insts, err := fleet.SiteInstances(ctx, s.ec2, s.cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("retire: %w", err)
	}
	var due time.Time
	var waiting []string
	for _, in := range insts {
		if in.Role == fleet.RoleDraining && !in.RetireAfter.IsZero() {
			waiting = append(waiting, in.ID)
			due = later(due, in.RetireAfter)
		}
	}
	if len(waiting) == 0 {
		return nil, nil
	}
	if wait := due.Sub(s.clock.Now()); wait > 0 {
		s.log.Infof("%s stay(s) for a quick rollback until %s; waiting %s, then terminating", strings.Join(waiting, ", "), fleet.TimeTag(due), wait.Round(time.Second))
		select {
		case <-s.clock.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("retire: stopped while %s wait(s) out the grace (the next deploy, rollback or prune terminates them): %w", strings.Join(waiting, ", "), ctx.Err())
		}
	}
	seq.Next("retire")
	zone, err := fleet.FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return nil, fmt.Errorf("retire: %w", err)
	}
	lo := opts.Lease
	lo.Op, lo.Wait, lo.Log = "retire", 0, s.log
	lctx, lease, err := fleet.AcquireLease(ctx, s.r53, zone, s.cfg.Domain, s.cfg.Site, lo)
	var held *fleet.LeaseHeldError
	if errors.As(err, &held) {
		s.log.Infof("%s are due, but %s holds the deploy lease: that run terminates them", strings.Join(waiting, ", "), held.Holder)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retire: %w", err)
	}
	defer func() {
		if err := lease.Release(ctx); err != nil {
			s.log.WithError(err).Warn("releasing the deploy lease failed")
		}
	}()
	insts, err = fleet.SiteInstances(lctx, s.ec2, s.cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("retire: %w", err)
	}
	now := s.clock.Now()
	var ids []string
	for _, in := range insts {
		if in.Role == fleet.RoleDraining && !now.Before(in.RetireAfter) {
			ids = append(ids, in.ID)
		}
	}
	done, kept, err := fleet.TerminateIdle(lctx, s.ec2, s.guard(zone), ids, s.log)
	if err != nil {
		return done, fmt.Errorf("retire: %w", err)
	}
	if len(done) > 0 {
		s.log.Infof("grace over: terminated %s", strings.Join(done, ", "))
	}
	if len(kept) > 0 {
		s.log.Infof("kept %s: back behind the address (a rollback)", strings.Join(kept, ", "))
	}
	return done, nil
}
