package fleet

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// State is what of the site exists in AWS, read from the record down:
// record → the site's Elastic IP → the instance it points at → AMI.
type State struct {
	Site      string
	Zone      Zone       // zero when no domain is configured
	Record    Record     // Type "" when there is no record
	Address   *Address   // the site's Elastic IP; nil before the first deploy
	Extra     []Address  // more addresses tagged with the site (twins of a retried allocation)
	Live      *Instance  // the instance readers are sent to
	LiveAMI   *AMI       //
	Rollback  *AMI       // the AMI `mage rollback` would go back to
	Instances []Instance // the site's instances that exist, oldest first
	AMIs      []AMI      // the site's AMIs, oldest first
	Snapshots []Snapshot // the site's snapshots, oldest first
	Lease     *Holder    // who holds the site's deploy lease; nil when nobody does
	Now       time.Time  // when the state was read
	// Exclusive is set when the state was read holding the deploy lease: no
	// other run creates anything of the site meanwhile, so a snapshot still
	// pending is a bake that died, not one in progress.
	Exclusive bool
}

// Orphans are the site's snapshots no AMI of the site uses: left by a bake
// that stopped between writing the snapshot and registering its AMI.
func (st *State) Orphans() []Snapshot {
	used := map[string]bool{}
	for _, a := range st.AMIs {
		for _, id := range a.SnapshotIDs {
			used[id] = true
		}
	}
	var out []Snapshot
	for _, sn := range st.Snapshots {
		if !used[sn.ID] {
			out = append(out, sn)
		}
	}
	return out
}

// Serving reports whether readers are sent to in: the site's address points
// at it, or (as the version before the address wrote it) the record does.
// Nothing serving is ever terminated.
func (st *State) Serving(in Instance) bool {
	return st.Live != nil && in.ID == st.Live.ID || st.Record.Sends(in)
}

// InGrace reports a replaced instance kept for a quick rollback until its
// grace ends.
func (st *State) InGrace(in Instance) bool {
	return in.Role == RoleDraining && st.Now.Before(in.RetireAfter)
}

// Strays are the site's instances nothing sends readers to and that are not
// in their grace: candidates that never went live, instances whose grace
// ended, and instances left by a run that died.
func (st *State) Strays() []Instance {
	var out []Instance
	for _, in := range st.Instances {
		if !st.Serving(in) && !st.InGrace(in) {
			out = append(out, in)
		}
	}
	return out
}

// EC2Reader is the part of EC2 reading the state needs.
type EC2Reader interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeImagesAPIClient
	ec2.DescribeSnapshotsAPIClient
	AddressAPI
}

// Inspect reads the site's state, from the record down; it changes nothing.
// Without a domain there is no record, and only the resources are listed.
func Inspect(ctx context.Context, x EC2Reader, r Route53Reader, c *config.Config) (*State, error) {
	st := &State{Site: c.Site, Now: time.Now()}
	var err error
	if c.Domain != "" {
		if st.Zone, err = FindZone(ctx, r, c.Domain, c.HostedZoneID); err != nil {
			return nil, err
		}
		if st.Record, err = ReadRecord(ctx, r, st.Zone, c.Domain); err != nil {
			return nil, err
		}
		h, found, err := ReadLease(ctx, r, st.Zone, c.Domain)
		if err != nil {
			return nil, err
		}
		if found {
			st.Lease = &h
		}
	}
	addrs, err := SiteAddresses(ctx, x, c.Site)
	if err != nil {
		return nil, err
	}
	if len(addrs) > 0 {
		recordIP := ""
		if st.Record.Type == "A" {
			recordIP = st.Record.Target
		}
		keep, extra := ChooseAddress(addrs, recordIP)
		st.Address, st.Extra = &keep, extra
	}
	if st.Instances, err = SiteInstances(ctx, x, c.Site); err != nil {
		return nil, err
	}
	if st.AMIs, err = SiteImages(ctx, x, c.Site); err != nil {
		return nil, err
	}
	if st.Snapshots, err = SiteSnapshots(ctx, x, c.Site); err != nil {
		return nil, err
	}
	for i := range st.Instances {
		in := &st.Instances[i]
		switch {
		case st.Address != nil && st.Address.InstanceID == in.ID:
			st.Live = in
		case st.Live == nil && st.Record.Sends(*in):
			st.Live = in // a site the DNS-swap version deployed: the record points at the instance
		}
	}
	if st.Live != nil {
		for i := range st.AMIs {
			if st.AMIs[i].ID == st.Live.ImageID {
				st.LiveAMI = &st.AMIs[i]
			}
		}
	}
	if a, ok := RollbackTarget(st.AMIs, st.Live); ok {
		st.Rollback = &a
	}
	return st, nil
}

// RollbackTarget is the build that was live most recently before the live
// one: of the available AMIs that went live once (their live-since or
// live-until tags), hold another image than the live instance, and did not
// fail their last gate, the one whose time live ended last. A build that
// never went live is never a rollback target. amis are oldest first.
func RollbackTarget(amis []AMI, live *Instance) (AMI, bool) {
	var best *AMI
	for i := range amis {
		a := &amis[i]
		switch {
		case a.State != "available", a.GateFailed, a.LastLive().IsZero():
			continue
		case live != nil && (a.ID == live.ImageID || a.ImageDigest == live.ImageDigest):
			continue
		}
		if best == nil || a.LastLive().After(best.LastLive()) {
			best = a
		}
	}
	if best == nil {
		return AMI{}, false
	}
	return *best, true
}

// Read connects with the caller's credentials and reads the site's state.
func Read(ctx context.Context, opts Options) (*State, error) {
	s, err := connect(ctx, opts, "status")
	if err != nil {
		return nil, err
	}
	return s.inspect(ctx)
}

// inspect is Inspect at the client's time.
func (s *client) inspect(ctx context.Context) (*State, error) {
	st, err := Inspect(ctx, s.ec2, s.r53, s.cfg)
	if err != nil {
		return nil, err
	}
	st.Now = s.clock.Now()
	return st, nil
}

// Status prints what is live — record → address → instance → AMI → image
// digest → build id → commit — and the site's stray resources.
func Status(ctx context.Context, opts Options, w io.Writer) error {
	st, err := Read(ctx, opts)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return st.Print(w)
}

// Print writes the state for people.
func (st *State) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "site\t%s\n", st.Site)
	switch {
	case st.Zone.ID == "":
		fmt.Fprintf(tw, "record\t(no domain configured: set deploy.domain)\n")
	case st.Record.Type == "":
		fmt.Fprintf(tw, "record\t%s: none in zone %s (mage deploy creates it)\n", st.Record.Name, st.Zone.ID)
	default:
		fmt.Fprintf(tw, "record\t%s %s → %s (TTL %ds, zone %s)\n", st.Record.Name, st.Record.Type, st.Record.Target, st.Record.TTL, st.Zone.ID)
	}
	switch {
	case st.Address == nil:
		fmt.Fprintf(tw, "address\tnone yet (the first deploy allocates the site's Elastic IP)\n")
	case st.Address.InstanceID == "":
		fmt.Fprintf(tw, "address\t%s (%s), associated with nothing\n", st.Address.PublicIP, st.Address.AllocationID)
	default:
		fmt.Fprintf(tw, "address\t%s (%s) → %s\n", st.Address.PublicIP, st.Address.AllocationID, st.Address.InstanceID)
	}
	for _, a := range st.Extra {
		fmt.Fprintf(tw, "\t%s (%s): an extra address of the site (the next deploy releases it)\n", a.PublicIP, a.AllocationID)
	}
	if st.Live == nil {
		if st.Record.Type != "" || st.Address != nil {
			fmt.Fprintf(tw, "instance\tnone of this site's instances is behind the address or the record\n")
		}
	} else {
		in := st.Live
		fmt.Fprintf(tw, "instance\t%s (%s, %s, launched %s)\n", in.ID, in.State, orNone(in.Role), in.LaunchTime.UTC().Format(time.RFC3339))
		ami := in.ImageID
		if st.LiveAMI != nil {
			ami += " (" + st.LiveAMI.State + ")"
		} else {
			ami += " (deregistered)"
		}
		fmt.Fprintf(tw, "AMI\t%s\n", ami)
		fmt.Fprintf(tw, "image digest\t%s\n", orNone(in.ImageDigest))
		fmt.Fprintf(tw, "build id\t%s\n", orNone(in.BuildID))
		fmt.Fprintf(tw, "commit\t%s\n", orNone(in.Commit))
	}
	if st.Rollback != nil {
		fmt.Fprintf(tw, "rollback to\t%s: build %s, commit %s, live until %s (mage rollback)\n", st.Rollback.ID, st.Rollback.BuildID, st.Rollback.Commit, TimeTag(st.Rollback.LastLive()))
	} else {
		fmt.Fprintf(tw, "rollback to\tnothing: no other build has been live\n")
	}
	if st.Lease != nil {
		fmt.Fprintf(tw, "lease\theld by %s\n", *st.Lease)
	} else if st.Zone.ID != "" {
		fmt.Fprintf(tw, "lease\tfree\n")
	}
	fmt.Fprintf(tw, "AMIs\t%d\n", len(st.AMIs))
	for _, a := range st.AMIs {
		var marks []string
		switch {
		case st.LiveAMI != nil && a.ID == st.LiveAMI.ID:
			marks = append(marks, "[live]")
		case st.Rollback != nil && a.ID == st.Rollback.ID:
			marks = append(marks, "[rollback]")
		}
		if a.GateFailed {
			marks = append(marks, "[failed its gate]")
		}
		switch {
		case a.LiveUntil.After(a.LiveSince):
			marks = append(marks, "live "+tagOrEmpty(a.LiveSince)+" to "+TimeTag(a.LiveUntil))
		case !a.LiveSince.IsZero():
			marks = append(marks, "live since "+TimeTag(a.LiveSince))
		}
		fmt.Fprintf(tw, "\t%s  %s  build %s  image %s  snapshots %s  %s\n", a.ID, a.Created.UTC().Format(time.RFC3339), orNone(a.BuildID), Short(a.ImageDigest), strings.Join(a.SnapshotIDs, ","), strings.Join(marks, " "))
	}
	if orphans := st.Orphans(); len(orphans) > 0 {
		fmt.Fprintf(tw, "snapshots\t%d not used by any AMI (a bake that stopped; mage prune deletes them)\n", len(orphans))
		for _, sn := range orphans {
			fmt.Fprintf(tw, "\t%s  %s  build %s  started %s\n", sn.ID, sn.State, orNone(sn.BuildID), sn.Started.UTC().Format(time.RFC3339))
		}
	}
	for _, in := range st.Instances {
		if st.InGrace(in) && !st.Serving(in) {
			fmt.Fprintf(tw, "previous\t%s  build %s  kept for a quick rollback until %s\n", in.ID, orNone(in.BuildID), TimeTag(in.RetireAfter))
		}
	}
	strays := st.Strays()
	if len(strays) == 0 {
		fmt.Fprintf(tw, "strays\tnone\n")
	} else {
		fmt.Fprintf(tw, "strays\t%d instance(s) nothing sends readers to (mage prune terminates them)\n", len(strays))
		for _, in := range strays {
			fmt.Fprintf(tw, "\t%s  %s  %s  build %s  launched %s\n", in.ID, in.State, orNone(in.Role), orNone(in.BuildID), in.LaunchTime.UTC().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

func tagOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return TimeTag(t)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
