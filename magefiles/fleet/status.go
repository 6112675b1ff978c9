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

// State is what of the site exists in AWS, read from the record down.
type State struct {
	Site      string
	Zone      Zone   // zero when no domain is configured
	Record    Record // Type "" when there is no record
	Live      *Instance
	LiveAMI   *AMI
	Rollback  *AMI       // the AMI `mage rollback` would go back to
	Instances []Instance // the site's instances that exist, oldest first
	AMIs      []AMI      // the site's AMIs, oldest first
	Snapshots []Snapshot // the site's snapshots, oldest first
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

// Strays are the site's instances not behind the record: candidates that
// never went live, and instances draining or left by an interrupted run.
// Without a record to judge by, only instances tagged live are not strays.
func (st *State) Strays() []Instance {
	var out []Instance
	for _, in := range st.Instances {
		switch {
		case st.Live != nil && in.ID == st.Live.ID:
		case st.Record.Type == "" && in.Role == RoleLive:
		default:
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
}

// Inspect reads the site's state, from the record down; it changes nothing.
// Without a domain there is no record, and only the resources are listed.
func Inspect(ctx context.Context, x EC2Reader, r Route53Reader, c *config.Config) (*State, error) {
	st := &State{Site: c.Site}
	var err error
	if c.Domain != "" {
		if st.Zone, err = FindZone(ctx, r, c.Domain, c.HostedZoneID); err != nil {
			return nil, err
		}
		if st.Record, err = ReadRecord(ctx, r, st.Zone, c.Domain); err != nil {
			return nil, err
		}
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
	if st.Record.Target != "" {
		for i := range st.Instances {
			in := &st.Instances[i]
			if strings.EqualFold(in.PublicDNSName, st.Record.Target) || in.PublicIP == st.Record.Target {
				st.Live = in
			}
		}
	}
	if st.Live != nil {
		for i := range st.AMIs {
			if st.AMIs[i].ID == st.Live.ImageID {
				st.LiveAMI = &st.AMIs[i]
			}
		}
		if a, ok := RollbackTarget(st.AMIs, st.Live.ImageID, st.Live.ImageSHA256); ok {
			st.Rollback = &a
		}
	}
	return st, nil
}

// RollbackTarget is the AMI before the live one: the newest available AMI
// created before liveImageID that holds another image. amis are oldest first.
func RollbackTarget(amis []AMI, liveImageID, liveSHA string) (AMI, bool) {
	idx := -1
	for i, a := range amis {
		if a.ID == liveImageID {
			idx = i
		}
	}
	if idx < 0 {
		return AMI{}, false
	}
	for i := idx - 1; i >= 0; i-- {
		if a := amis[i]; a.State == "available" && a.ImageSHA256 != liveSHA && a.ImageSHA256 != amis[idx].ImageSHA256 {
			return a, true
		}
	}
	return AMI{}, false
}

// Read connects with the caller's credentials and reads the site's state.
func Read(ctx context.Context, opts Options) (*State, error) {
	s, err := connect(ctx, opts, "status")
	if err != nil {
		return nil, err
	}
	return Inspect(ctx, s.ec2, s.r53, s.cfg)
}

// Status prints what is live — record → instance → AMI → image sha256 →
// build id → commit — and the site's stray resources.
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
	if st.Live == nil {
		if st.Record.Type != "" {
			fmt.Fprintf(tw, "instance\tnone of this site's instances is behind the record\n")
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
		fmt.Fprintf(tw, "image sha256\t%s\n", orNone(in.ImageSHA256))
		fmt.Fprintf(tw, "build id\t%s\n", orNone(in.BuildID))
		fmt.Fprintf(tw, "commit\t%s\n", orNone(in.Commit))
		if st.Rollback != nil {
			fmt.Fprintf(tw, "rollback to\t%s: build %s, commit %s (mage rollback)\n", st.Rollback.ID, st.Rollback.BuildID, st.Rollback.Commit)
		} else {
			fmt.Fprintf(tw, "rollback to\tnothing: no earlier AMI\n")
		}
	}
	fmt.Fprintf(tw, "AMIs\t%d\n", len(st.AMIs))
	for _, a := range st.AMIs {
		mark := ""
		switch {
		case st.LiveAMI != nil && a.ID == st.LiveAMI.ID:
			mark = " [live]"
		case st.Rollback != nil && a.ID == st.Rollback.ID:
			mark = " [rollback]"
		}
		fmt.Fprintf(tw, "\t%s  %s  build %s  image %s  snapshots %s%s\n", a.ID, a.Created.UTC().Format(time.RFC3339), orNone(a.BuildID), Short(a.ImageSHA256), strings.Join(a.SnapshotIDs, ","), mark)
	}
	if orphans := st.Orphans(); len(orphans) > 0 {
		fmt.Fprintf(tw, "snapshots\t%d not used by any AMI (a bake that stopped; mage prune deletes the finished ones)\n", len(orphans))
		for _, sn := range orphans {
			fmt.Fprintf(tw, "\t%s  %s  build %s  started %s\n", sn.ID, sn.State, orNone(sn.BuildID), sn.Started.UTC().Format(time.RFC3339))
		}
	}
	strays := st.Strays()
	if len(strays) == 0 {
		fmt.Fprintf(tw, "strays\tnone\n")
	} else {
		fmt.Fprintf(tw, "strays\t%d instance(s) not behind the record (mage prune terminates them)\n", len(strays))
		for _, in := range strays {
			fmt.Fprintf(tw, "\t%s  %s  %s  build %s  launched %s\n", in.ID, in.State, orNone(in.Role), orNone(in.BuildID), in.LaunchTime.UTC().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
