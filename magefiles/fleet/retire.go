package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/sirupsen/logrus"
)

// IdleTerminator is what terminating idle instances needs.
type IdleTerminator interface {
	ec2.DescribeInstancesAPIClient
	AddressAPI
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
}

// Guard is what TerminateIdle checks right before terminating: the site,
// and where its record is (R53 nil when the caller cannot read Route53; a
// zero Zone is found from Domain and ZoneID).
type Guard struct {
	Site   string
	Zone   Zone
	Domain string
	ZoneID string // deploy.hosted_zone_id
	R53    Route53Reader
	Clock  Clock // paces the looks at instances EC2 does not show yet; default real time
}

// TerminateIdle terminates those of ids that nothing sends readers to. Right
// before terminating it reads again the site's Elastic IPs and, when it can,
// the record: an instance an address points at, or that the record points at
// directly (a site the DNS-swap version deployed), is never terminated,
// whatever the caller believed. Instances already gone are skipped. It
// returns what it terminated and what it kept because it serves.
func TerminateIdle(ctx context.Context, api IdleTerminator, g Guard, ids []string, log *logrus.Entry) (terminated, kept []string, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	addrs, err := SiteAddresses(ctx, api, g.Site)
	if err != nil {
		return nil, nil, err
	}
	var rec Record
	if g.R53 != nil && g.Domain != "" {
		zone := g.Zone
		if zone.ID == "" {
			if zone, err = FindZone(ctx, g.R53, g.Domain, g.ZoneID); err != nil {
				return nil, nil, err
			}
		}
		if rec, err = ReadRecord(ctx, g.R53, zone, g.Domain); err != nil {
			return nil, nil, err
		}
	}
	for _, id := range ids {
		in, found, err := FindInstance(ctx, api, id, g.Clock)
		if err != nil {
			return terminated, kept, err
		}
		if !found || !in.Billable() {
			continue
		}
		serving := rec.Sends(in) || slices.ContainsFunc(addrs, func(a Address) bool { return a.InstanceID == id })
		if serving {
			kept = append(kept, id)
			log.Infof("keeping %s: readers are sent to it", id)
			continue
		}
		terminated = append(terminated, id)
	}
	if len(terminated) == 0 {
		return nil, kept, nil
	}
	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: terminated}); err != nil {
		return nil, kept, fmt.Errorf("terminating %s: %w; check the ec2:TerminateInstances permission, or terminate them by hand", strings.Join(terminated, ", "), err)
	}
	return terminated, kept, nil
}
