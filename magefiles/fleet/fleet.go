// Package fleet is what of a site lives in AWS, and what follows from it:
// the tag vocabulary every resource carries, the site's instances, AMIs and
// snapshots and how to list them, the hosted zone and the record, the state
// read from the record down (status, strays, orphans, the rollback target),
// the prune plan, and the one undo mechanism every step that creates
// something uses. Steps use it; it imports no step.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Tags on everything of a site: snapshots, AMIs, instances, volumes, network
// interfaces, the Elastic IP and the security group carry the site;
// snapshots, AMIs and instances the build; the role and the end of the grace
// are the instances' own; when a build went live, stopped being live or
// failed its gate is its AMI's. One filter finds everything of a site.
const (
	TagSite        = "blog:site"         // deploy.site
	TagImageDigest = "blog:image-digest" // the disk image's digest (sparse.Digest): its content address
	TagBuildID     = "blog:build-id"     // the site build the image serves
	TagCommit      = "blog:commit"       // the repository's commit
	TagRole        = "blog:role"         // candidate, live or draining
	// TagRetireAfter is when a draining instance's grace ends (RFC 3339):
	// until then it stays for a quick rollback, after it is terminated.
	TagRetireAfter = "blog:retire-after"
	// TagLiveSince and TagLiveUntil are when the AMI's build last went live
	// and last stopped being live (RFC 3339): rollback goes to the build
	// that was live most recently.
	TagLiveSince = "blog:live-since"
	TagLiveUntil = "blog:live-until"
	// TagGate is GateFailed after the AMI's build failed its health gate,
	// GatePassed once it went live: prune removes failed builds first.
	TagGate = "blog:gate"
)

// Values of TagGate.
const (
	GateFailed = "failed"
	GatePassed = "passed"
)

// Roles an instance goes through. Launch starts a candidate; Swap tags it
// live just before the site's address moves to it, and tags the instances it
// replaces draining, with the end of their grace, until they are terminated.
const (
	RoleCandidate = "candidate"
	RoleLive      = "live"
	RoleDraining  = "draining"
)

// SetRoleInput is the request that tags instances with a role; preflight's
// DryRun probe sends the same one.
func SetRoleInput(role string, ids ...string) *ec2.CreateTagsInput {
	return &ec2.CreateTagsInput{Resources: ids, Tags: []types.Tag{Tag(TagRole, role)}}
}

// DrainInput is the request that tags replaced instances draining, kept
// until their grace ends.
func DrainInput(until time.Time, ids ...string) *ec2.CreateTagsInput {
	return &ec2.CreateTagsInput{Resources: ids, Tags: []types.Tag{Tag(TagRole, RoleDraining), Tag(TagRetireAfter, TimeTag(until))}}
}

// Instance is what the pipeline knows of one of the site's instances.
type Instance struct {
	ID            string
	Site          string
	ImageID       string
	State         string // pending, running, stopping, stopped, shutting-down, terminated
	Role          string
	BuildID       string
	ImageDigest   string
	Commit        string
	PublicDNSName string
	PublicIP      string
	LaunchTime    time.Time
	RetireAfter   time.Time // zero unless draining with a grace
	Groups        []string  // security group ids
}

// Billable reports a state in which the instance exists (and its volume
// costs money): anything not shutting down or terminated.
func (i Instance) Billable() bool {
	switch i.State {
	case "pending", "running", "stopping", "stopped":
		return true
	}
	return false
}

// FromEC2 reads an SDK instance.
func FromEC2(in types.Instance) Instance {
	i := Instance{
		ID:            aws.ToString(in.InstanceId),
		ImageID:       aws.ToString(in.ImageId),
		PublicDNSName: aws.ToString(in.PublicDnsName),
		PublicIP:      aws.ToString(in.PublicIpAddress),
		LaunchTime:    aws.ToTime(in.LaunchTime),
	}
	if in.State != nil {
		i.State = string(in.State.Name)
	}
	tags := tagValues(in.Tags)
	i.Site, i.Role, i.BuildID, i.ImageDigest, i.Commit = tags[TagSite], tags[TagRole], tags[TagBuildID], tags[TagImageDigest], tags[TagCommit]
	i.RetireAfter = parseTime(tags[TagRetireAfter])
	for _, g := range in.SecurityGroups {
		i.Groups = append(i.Groups, aws.ToString(g.GroupId))
	}
	return i
}

// parseTime reads an RFC 3339 tag value; zero when absent or unreadable.
func parseTime(v string) time.Time {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// TimeTag is a time as the tags hold it.
func TimeTag(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// SiteInstances lists the site's instances that still exist (any state but
// shutting-down and terminated), oldest first, narrowed by extra filters.
func SiteInstances(ctx context.Context, api ec2.DescribeInstancesAPIClient, site string, extra ...types.Filter) ([]Instance, error) {
	filters := append([]types.Filter{
		{Name: aws.String("tag:" + TagSite), Values: []string{site}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}, extra...)
	var out []Instance
	p := ec2.NewDescribeInstancesPaginator(api, &ec2.DescribeInstancesInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the instances of site %s: %w; check the ec2:DescribeInstances permission and the region", site, err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				if i := FromEC2(in); i.Billable() {
					out = append(out, i)
				}
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].LaunchTime.Equal(out[b].LaunchTime) {
			return out[a].LaunchTime.Before(out[b].LaunchTime)
		}
		return out[a].ID < out[b].ID
	})
	return out, nil
}

// DescribeInstance reads one instance; found is false when EC2 does not know it.
func DescribeInstance(ctx context.Context, api ec2.DescribeInstancesAPIClient, id string) (inst Instance, found bool, err error) {
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if HasCode(err, "InvalidInstanceID.NotFound") {
		return Instance{}, false, nil
	}
	if err != nil {
		return Instance{}, false, fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) == id {
				return FromEC2(in), true, nil
			}
		}
	}
	return Instance{}, false, nil
}

// FindInstance is DescribeInstance for an instance that may have just been
// started: "not found" is asked again at the NewlyListed pace before it is
// believed (EC2's eventual consistency).
func FindInstance(ctx context.Context, api ec2.DescribeInstancesAPIClient, id string, clock Clock) (Instance, bool, error) {
	var in Instance
	var found bool
	err := NewlyListed.AtOnce().Wait(ctx, clock, func(ctx context.Context) (bool, error) {
		var err error
		in, found, err = DescribeInstance(ctx, api, id)
		return found, err
	})
	if errors.Is(err, ErrWaitTimeout) {
		return Instance{}, false, nil
	}
	return in, found, err
}

// AMI is one of the site's images.
type AMI struct {
	ID          string
	Name        string
	State       string
	Created     time.Time
	SnapshotIDs []string
	ImageDigest string
	BuildID     string
	Commit      string
	Site        string
	LiveSince   time.Time // when the build last went live; zero if never
	LiveUntil   time.Time // when it last stopped being live
	GateFailed  bool      // its last health gate failed and it never went live since
}

// LastLive is when the AMI's build was last live: until LiveUntil, or
// LiveSince when it never stopped (a live build, or one whose end went
// unrecorded); zero when it never was.
func (a AMI) LastLive() time.Time {
	if a.LiveUntil.After(a.LiveSince) {
		return a.LiveUntil
	}
	return a.LiveSince
}

// FromEC2Image reads an SDK image.
func FromEC2Image(img types.Image) AMI {
	a := AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), State: string(img.State)}
	if t, err := time.Parse(time.RFC3339, aws.ToString(img.CreationDate)); err == nil {
		a.Created = t
	}
	for _, m := range img.BlockDeviceMappings {
		if m.Ebs != nil && aws.ToString(m.Ebs.SnapshotId) != "" {
			a.SnapshotIDs = append(a.SnapshotIDs, aws.ToString(m.Ebs.SnapshotId))
		}
	}
	tags := tagValues(img.Tags)
	a.Site, a.BuildID, a.ImageDigest, a.Commit = tags[TagSite], tags[TagBuildID], tags[TagImageDigest], tags[TagCommit]
	a.LiveSince, a.LiveUntil = parseTime(tags[TagLiveSince]), parseTime(tags[TagLiveUntil])
	a.GateFailed = tags[TagGate] == GateFailed
	return a
}

// SiteImages lists the site's own AMIs, oldest first, narrowed by extra filters.
func SiteImages(ctx context.Context, api ec2.DescribeImagesAPIClient, site string, extra ...types.Filter) ([]AMI, error) {
	filters := append([]types.Filter{{Name: aws.String("tag:" + TagSite), Values: []string{site}}}, extra...)
	var out []AMI
	p := ec2.NewDescribeImagesPaginator(api, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the AMIs of site %s: %w; check the ec2:DescribeImages permission and the region", site, err)
		}
		for _, img := range page.Images {
			out = append(out, FromEC2Image(img))
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].Created.Equal(out[b].Created) {
			return out[a].Created.Before(out[b].Created)
		}
		return out[a].ID < out[b].ID
	})
	return out, nil
}

// Tag is one EC2 tag.
func Tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }

// SecurityGroupName is the site's security group: one per site (and VPC),
// found by this name and created when missing.
func SecurityGroupName(site string) string { return "blog-" + site }

// OrUnknown is s, or "unknown" for a tag whose value was not known.
func OrUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Short cuts a sha256 for log lines and names.
func Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Snapshot is one of the site's EBS snapshots.
type Snapshot struct {
	ID      string
	State   string // pending, completed, error
	Started time.Time
	BuildID string
}

// SiteSnapshots lists the site's own snapshots, oldest first.
func SiteSnapshots(ctx context.Context, api ec2.DescribeSnapshotsAPIClient, site string) ([]Snapshot, error) {
	var out []Snapshot
	p := ec2.NewDescribeSnapshotsPaginator(api, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{{Name: aws.String("tag:" + TagSite), Values: []string{site}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the snapshots of site %s: %w; check the ec2:DescribeSnapshots permission and the region", site, err)
		}
		for _, sn := range page.Snapshots {
			out = append(out, Snapshot{ID: aws.ToString(sn.SnapshotId), State: string(sn.State), Started: aws.ToTime(sn.StartTime),
				BuildID: tagValues(sn.Tags)[TagBuildID]})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out, nil
}

// tagValues maps an EC2 resource's tags by key.
func tagValues(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}
