package fleet

import (
	"context"
	"fmt"
	"strings"

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
	TTL    int64
}

// RecordType is the type Swap manages at name: the zone apex cannot hold a
// CNAME (RFC 1034 §3.6.2: a CNAME excludes the SOA and NS records an apex
// must have), so it gets an A record to the instance's address.
func RecordType(name string, z Zone) types.RRType {
	if name == z.Name {
		return types.RRTypeA
	}
	return types.RRTypeCname
}

// ReadRecord reads the A or CNAME record at name. A record Swap cannot
// manage (an alias, a weighted or routed set, several addresses, the other
// type of the two) is an error naming the fix, read before anything changes.
func ReadRecord(ctx context.Context, api Route53Reader, z Zone, name string) (Record, error) {
	name = FQDN(name)
	want := RecordType(name, z)
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
				return Record{}, fmt.Errorf("%s is an alias %s record (to %s); Swap manages a plain %s record there: delete the alias first", name, rr.Type, aws.ToString(rr.AliasTarget.DNSName), want)
			case rr.SetIdentifier != nil:
				return Record{}, fmt.Errorf("%s is a routing-policy %s record (set %s); Swap manages one plain %s record there: delete the set first", name, rr.Type, aws.ToString(rr.SetIdentifier), want)
			case rr.Type != want:
				return Record{}, fmt.Errorf("%s has a %s record; Swap manages a %s record there (CNAME below the apex, A at the apex): delete the %s record first", name, rr.Type, want, rr.Type)
			case len(rr.ResourceRecords) != 1:
				return Record{}, fmt.Errorf("%s %s has %d values; Swap manages a record with one: delete the record first", name, rr.Type, len(rr.ResourceRecords))
			}
			rec.Type = string(rr.Type)
			rec.Target = strings.TrimSuffix(aws.ToString(rr.ResourceRecords[0].Value), ".")
			rec.TTL = aws.ToInt64(rr.TTL)
		}
		if !out.IsTruncated || past {
			return rec, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = out.NextRecordName, out.NextRecordType, out.NextRecordIdentifier
	}
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
