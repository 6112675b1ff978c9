package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// Route53Reader is the part of Route53 finding the zone and reading the
// record needs; *route53.Client has it.
type Route53Reader interface {
	route53.ListHostedZonesAPIClient
	route53.ListResourceRecordSetsAPIClient
	GetHostedZone(context.Context, *route53.GetHostedZoneInput, ...func(*route53.Options)) (*route53.GetHostedZoneOutput, error)
}

// Zone is the hosted zone holding the domain.
type Zone struct {
	ID   string // without the /hostedzone/ prefix
	Name string // fully qualified, with the trailing dot
}

// FQDN lower-cases a name and ends it with a dot, as Route53 answers names.
func FQDN(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// within reports whether domain is zone or a name under it.
func within(domain, zone string) bool {
	return domain == zone || strings.HasSuffix(domain, "."+zone)
}

// FindZone finds the public hosted zone for domain: zoneID when given
// (checked to hold domain), else the zone whose name is the longest suffix
// of domain among every public zone of the account, all pages read. Not the
// first answer of a by-name listing: that is a neighbour as often as a parent.
func FindZone(ctx context.Context, api Route53Reader, domain, zoneID string) (Zone, error) {
	domain = FQDN(domain)
	if zoneID != "" {
		out, err := api.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(zoneID)})
		if err != nil {
			return Zone{}, fmt.Errorf("reading hosted zone %s: %w; check deploy.hosted_zone_id and the route53:GetHostedZone permission", zoneID, err)
		}
		z := zoneOf(*out.HostedZone)
		if !within(domain, z.Name) {
			return Zone{}, fmt.Errorf("hosted zone %s is %s, which does not hold %s; fix deploy.hosted_zone_id or deploy.domain", zoneID, z.Name, domain)
		}
		return z, nil
	}
	var best []Zone
	p := route53.NewListHostedZonesPaginator(api, &route53.ListHostedZonesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return Zone{}, fmt.Errorf("listing hosted zones: %w; check the route53:ListHostedZones permission, or set deploy.hosted_zone_id", err)
		}
		for _, hz := range page.HostedZones {
			if hz.Config != nil && hz.Config.PrivateZone {
				continue
			}
			z := zoneOf(hz)
			switch {
			case !within(domain, z.Name):
			case len(best) == 0 || len(z.Name) > len(best[0].Name):
				best = []Zone{z}
			case len(z.Name) == len(best[0].Name):
				best = append(best, z)
			}
		}
	}
	switch len(best) {
	case 0:
		return Zone{}, fmt.Errorf("no public hosted zone holds %s; create one (aws route53 create-hosted-zone) and delegate the domain to it, or set deploy.hosted_zone_id", domain)
	case 1:
		return best[0], nil
	}
	var ids []string
	for _, z := range best {
		ids = append(ids, z.ID)
	}
	return Zone{}, fmt.Errorf("%d public hosted zones are called %s (%s); set deploy.hosted_zone_id to the one the domain is delegated to", len(best), best[0].Name, strings.Join(ids, ", "))
}

func zoneOf(hz types.HostedZone) Zone {
	return Zone{ID: strings.TrimPrefix(aws.ToString(hz.Id), "/hostedzone/"), Name: FQDN(aws.ToString(hz.Name))}
}

// Record is the blog's DNS record as it stands.
type Record struct {
	Name   string // fully qualified
	Type   string // A or CNAME; "" when there is none
	Target string // the CNAME's name (no trailing dot) or the A's address
	Value  string // the value exactly as Route53 holds it, for a DELETE that must match
	TTL    int64
}

// OnAddress reports whether the record is the A record to ip the tool
// writes, with the TTL wanted.
func (r Record) OnAddress(ip string, ttl int64) bool {
	return r.Type == string(types.RRTypeA) && r.Target == ip && r.TTL == ttl
}

// Sends reports whether the record sends readers to instance in directly:
// what the version before the Elastic IP wrote (an A record to the
// instance's address, a CNAME to its public name).
func (r Record) Sends(in Instance) bool {
	return r.Target != "" && (strings.EqualFold(r.Target, in.PublicDNSName) || in.PublicIP != "" && r.Target == in.PublicIP)
}

// ReadRecord reads the A or CNAME record at name. A record the tool cannot
// manage (an alias, a weighted or routed set, several addresses) is an error
// naming the fix, read before anything changes. A plain CNAME is what the
// DNS-swap version wrote below the apex: Swap replaces it with an A record.
func ReadRecord(ctx context.Context, api Route53Reader, z Zone, name string) (Record, error) {
	name = FQDN(name)
	rec := Record{Name: name}
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.ID), StartRecordName: aws.String(name), MaxItems: aws.Int32(20)}
	for {
		out, err := api.ListResourceRecordSets(ctx, in)
		if err != nil {
			return Record{}, fmt.Errorf("reading the records of %s in zone %s: %w; check the route53:ListResourceRecordSets permission", name, z.ID, err)
		}
		past := false
		for _, rr := range out.ResourceRecordSets {
			if FQDN(unescape(aws.ToString(rr.Name))) != name {
				past = true // listing starts at name: another name means name's records are all read
				continue
			}
			if rr.Type != types.RRTypeA && rr.Type != types.RRTypeCname {
				continue
			}
			switch {
			case rr.AliasTarget != nil:
				return Record{}, fmt.Errorf("%s is an alias %s record (to %s); the tool manages a plain A record there: delete the alias first", name, rr.Type, aws.ToString(rr.AliasTarget.DNSName))
			case rr.SetIdentifier != nil:
				return Record{}, fmt.Errorf("%s is a routing-policy %s record (set %s); the tool manages one plain A record there: delete the set first", name, rr.Type, aws.ToString(rr.SetIdentifier))
			case len(rr.ResourceRecords) != 1:
				return Record{}, fmt.Errorf("%s %s has %d values; the tool manages a record with one: delete the record first", name, rr.Type, len(rr.ResourceRecords))
			}
			rec.Type = string(rr.Type)
			rec.Value = aws.ToString(rr.ResourceRecords[0].Value)
			rec.Target = strings.TrimSuffix(rec.Value, ".")
			rec.TTL = aws.ToInt64(rr.TTL)
		}
		if !out.IsTruncated || past {
			return rec, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = out.NextRecordName, out.NextRecordType, out.NextRecordIdentifier
	}
}

// RecordSet is the record set exactly as it stands, for a DELETE that must
// match it.
func (r Record) RecordSet() *types.ResourceRecordSet {
	return &types.ResourceRecordSet{
		Name: aws.String(r.Name), Type: types.RRType(r.Type), TTL: aws.Int64(r.TTL),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(r.Value)}},
	}
}

// AddressRecordSet is the record the tool writes: name → the site's address.
func AddressRecordSet(name, ip string, ttl int64) *types.ResourceRecordSet {
	return &types.ResourceRecordSet{
		Name: aws.String(FQDN(name)), Type: types.RRTypeA, TTL: aws.Int64(ttl),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(ip)}},
	}
}

// Route53Writer is what changing records and waiting for them needs.
type Route53Writer interface {
	Route53Reader
	route53.GetChangeAPIClient
	ChangeResourceRecordSets(context.Context, *route53.ChangeResourceRecordSetsInput, ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
}

// WaitInsync waits until Route53 reports change id INSYNC, at the
// ChangeInsync pace on clock (nil: real time); every, when set, looks that
// often instead (tests against the emulator).
func WaitInsync(ctx context.Context, api route53.GetChangeAPIClient, id string, clock Clock, every time.Duration) error {
	pace := ChangeInsync.Scaled(every)
	err := pace.Wait(ctx, clock, func(ctx context.Context) (bool, error) {
		out, err := api.GetChange(ctx, &route53.GetChangeInput{Id: aws.String(id)})
		if err != nil {
			return false, fmt.Errorf("reading change %s: %w; check the route53:GetChange permission", id, err)
		}
		return out.ChangeInfo != nil && out.ChangeInfo.Status == types.ChangeStatusInsync, nil
	})
	if errors.Is(err, ErrWaitTimeout) {
		return fmt.Errorf("change %s is not INSYNC after %s (Route53 documents 60 seconds); check the AWS Health dashboard: %w", id, pace.Max, err)
	}
	return err
}

// unescape turns Route53's \052 escapes back into characters (\052 is *).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ChangeRecordSets is ChangeResourceRecordSets, asked again at the
// PriorRequest pace while Route53 answers PriorRequestNotComplete: "the
// request was rejected because Route 53 was still processing a prior
// request" of the same hosted zone (Route 53 Developer Guide, "Throttling
// for Amazon Route 53 API requests"; AWS re:Post, "API throttling errors in
// Amazon Route 53"), which the SDK does not retry. clock nil is real time.
func ChangeRecordSets(ctx context.Context, api Route53Writer, in *route53.ChangeResourceRecordSetsInput, clock Clock) (*route53.ChangeResourceRecordSetsOutput, error) {
	var out *route53.ChangeResourceRecordSetsOutput
	var last error
	err := PriorRequest.AtOnce().Wait(ctx, clock, func(ctx context.Context) (bool, error) {
		out, last = api.ChangeResourceRecordSets(ctx, in)
		if HasCode(last, "PriorRequestNotComplete") {
			return false, nil
		}
		return true, last
	})
	if errors.Is(err, ErrWaitTimeout) {
		return nil, last // Route53's own refusal says more than the timeout
	}
	return out, err
}
