package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Plan is what Prune removes: computed from the state alone, printed, and
// applied only when asked.
type Plan struct {
	Keep       []AMI             // newest first, with why in KeepWhy
	KeepWhy    map[string]string // AMI id → reason
	Deregister []AMI             // AMIs to deregister, builds that failed their gate first; their snapshots are deleted after
	Terminate  []Instance        // stray instances
	// DeleteSnapshots are orphans: snapshots of the site no AMI uses. One
	// still pending is left unless the state was read holding the deploy
	// lease (State.Exclusive): it may be a bake in progress.
	DeleteSnapshots []Snapshot
	Pending         []Snapshot // orphans left as possibly in progress
}

// Empty reports a plan with nothing to do.
func (p Plan) Empty() bool {
	return len(p.Deregister) == 0 && len(p.Terminate) == 0 && len(p.DeleteSnapshots) == 0
}

// MakePlan keeps the live AMI, the rollback target, the AMI of any instance
// that stays and, besides those, the newest keep AMIs of builds that did
// not fail their gate (keep_images counts only these others, as README's
// "keep_images" says: keep 1 with a rollback target keeps three);
// deregisters the rest (builds that failed their gate first, and their
// snapshots with them); terminates the stray instances. It is pure.
func MakePlan(st *State, keep int) Plan {
	p := Plan{KeepWhy: map[string]string{}}
	p.Terminate = st.Strays()
	stays := map[string]bool{}
	for _, in := range st.Instances {
		if !slices.ContainsFunc(p.Terminate, func(t Instance) bool { return t.ID == in.ID }) {
			stays[in.ImageID] = true
		}
	}
	for _, sn := range st.Orphans() {
		if sn.State == "pending" && !st.Exclusive {
			p.Pending = append(p.Pending, sn)
			continue
		}
		p.DeleteSnapshots = append(p.DeleteSnapshots, sn)
	}
	newest := slices.Clone(st.AMIs)
	slices.Reverse(newest)
	kept := 0
	var failed, old []AMI
	for _, a := range newest {
		why := ""
		switch {
		case st.LiveAMI != nil && a.ID == st.LiveAMI.ID:
			why = "live"
		case st.Rollback != nil && a.ID == st.Rollback.ID:
			why = "rollback target"
		case stays[a.ID]:
			why = "an instance that stays runs it"
		case a.GateFailed:
		case kept < keep:
			why = fmt.Sprintf("among the newest %d others that passed their gate (keep_images)", keep)
			kept++
		}
		switch {
		case why != "":
			p.Keep = append(p.Keep, a)
			p.KeepWhy[a.ID] = why
		case a.GateFailed:
			failed = append(failed, a)
		default:
			old = append(old, a)
		}
	}
	p.Deregister = append(failed, old...)
	return p
}

// Print writes the plan for people.
func (p Plan) Print(w io.Writer) {
	for _, a := range p.Keep {
		fmt.Fprintf(w, "keep        %s  build %s  (%s)\n", a.ID, orNone(a.BuildID), p.KeepWhy[a.ID])
	}
	for _, a := range p.Deregister {
		why := ""
		if a.GateFailed {
			why = "  (failed its health gate)"
		}
		fmt.Fprintf(w, "deregister  %s  build %s  created %s; delete snapshot(s) %s%s\n", a.ID, orNone(a.BuildID), a.Created.UTC().Format(time.RFC3339), strings.Join(a.SnapshotIDs, ", "), why)
	}
	for _, in := range p.Terminate {
		fmt.Fprintf(w, "terminate   %s  %s  %s  build %s  (nothing sends readers to it)\n", in.ID, in.State, orNone(in.Role), orNone(in.BuildID))
	}
	for _, sn := range p.DeleteSnapshots {
		fmt.Fprintf(w, "delete      %s  %s  build %s  (no AMI uses it)\n", sn.ID, sn.State, orNone(sn.BuildID))
	}
	for _, sn := range p.Pending {
		fmt.Fprintf(w, "leave       %s  pending  build %s  (no AMI uses it, but a bake may be writing it; APPLY=1 deletes it, holding the deploy lease)\n", sn.ID, orNone(sn.BuildID))
	}
	if p.Empty() {
		fmt.Fprintln(w, "nothing to prune")
	}
}

// Prune prints the plan and, when apply is set, carries it out holding the
// site's deploy lease (so no deploy runs meanwhile, and the plan applied is
// read under it): stray instances first (each verified right before that
// nothing sends readers to it), then AMIs, then their snapshots.
func Prune(ctx context.Context, opts Options, w io.Writer, apply bool) (*Plan, error) {
	if opts.Config != nil && opts.Config.KeepImages < 1 {
		return nil, errors.New("prune: keep_images must be at least 1")
	}
	s, err := connect(ctx, opts, "prune")
	if err != nil {
		return nil, err
	}
	if !apply {
		st, err := s.inspect(ctx)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		p := MakePlan(st, opts.Config.KeepImages)
		p.Print(w)
		if !p.Empty() {
			fmt.Fprintln(w, "(a plan only: run again with APPLY=1 to carry it out)")
		}
		return &p, nil
	}
	var p Plan
	err = s.withLease(ctx, opts, "prune", func(ctx context.Context, zone Zone) error {
		st, err := s.inspect(ctx)
		if err != nil {
			return err
		}
		st.Exclusive = true
		p = MakePlan(st, opts.Config.KeepImages)
		p.Print(w)
		if p.Empty() {
			return nil
		}
		return s.apply(ctx, p, zone)
	})
	if err != nil {
		return &p, fmt.Errorf("prune: %w", err)
	}
	return &p, nil
}

func (s *client) apply(ctx context.Context, p Plan, zone Zone) error {
	var errs []error
	if len(p.Terminate) > 0 {
		var ids []string
		for _, in := range p.Terminate {
			ids = append(ids, in.ID)
		}
		done, kept, err := TerminateIdle(ctx, s.ec2, Guard{Site: s.cfg.Site, Zone: zone, Domain: s.cfg.Domain, ZoneID: s.cfg.HostedZoneID, R53: s.r53, Clock: s.clock}, ids, s.log)
		if err != nil {
			errs = append(errs, err)
		}
		if len(done) > 0 {
			s.log.Infof("terminated %s", strings.Join(done, ", "))
		}
		if len(kept) > 0 {
			s.log.Warnf("kept %s: readers are sent to them after all", strings.Join(kept, ", "))
		}
	}
	for _, a := range p.Deregister {
		_, err := s.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(a.ID)})
		if err != nil && !HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable") {
			errs = append(errs, fmt.Errorf("deregistering %s: %w", a.ID, err))
			continue
		}
		s.log.Infof("deregistered %s (build %s)", a.ID, a.BuildID)
		for _, snap := range a.SnapshotIDs {
			if err := s.deleteSnapshot(ctx, snap); err != nil {
				errs = append(errs, fmt.Errorf("deleting snapshot %s of %s: %w", snap, a.ID, err))
				continue
			}
			s.log.Infof("deleted snapshot %s", snap)
		}
	}
	for _, sn := range p.DeleteSnapshots {
		if err := s.deleteSnapshot(ctx, sn.ID); err != nil {
			errs = append(errs, fmt.Errorf("deleting orphan snapshot %s: %w", sn.ID, err))
			continue
		}
		s.log.Infof("deleted orphan snapshot %s", sn.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w; run `mage prune` again (it plans from what is left)", err)
	}
	return nil
}

// deleteSnapshot deletes a snapshot, waiting out the moment after
// DeregisterImage during which EC2 may still count it as the AMI's.
func (s *client) deleteSnapshot(ctx context.Context, id string) error {
	var last error
	err := SnapshotInUse.AtOnce().Wait(ctx, s.clock, func(ctx context.Context) (bool, error) {
		_, last = s.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		switch {
		case last == nil, HasCode(last, "InvalidSnapshot.NotFound"):
			return true, nil
		case HasCode(last, "InvalidSnapshot.InUse"):
			return false, nil
		}
		return false, last
	})
	if errors.Is(err, ErrWaitTimeout) {
		return last
	}
	return err
}
