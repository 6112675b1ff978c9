package awsharness

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// The Route53 record rules of awsmodel/records.go, each as the page it
// cites documents it.

func newZone(t *testing.T, r *route53.Client) (id, name string) {
	t.Helper()
	name = UniqueName("rec") + ".example"
	out, err := r.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/"), name + "."
}

func set(name string, typ r53types.RRType, ttl int64, values ...string) *r53types.ResourceRecordSet {
	rs := &r53types.ResourceRecordSet{Name: aws.String(name), Type: typ, TTL: aws.Int64(ttl)}
	for _, v := range values {
		rs.ResourceRecords = append(rs.ResourceRecords, r53types.ResourceRecord{Value: aws.String(v)})
	}
	return rs
}

func change(r *route53.Client, zone string, changes ...r53types.Change) (*route53.ChangeResourceRecordSetsOutput, error) {
	return r.ChangeResourceRecordSets(context.Background(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone), ChangeBatch: &r53types.ChangeBatch{Changes: changes}})
}

func create(rs *r53types.ResourceRecordSet) r53types.Change {
	return r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: rs}
}

func del(rs *r53types.ResourceRecordSet) r53types.Change {
	return r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: rs}
}

func TestRecordChangesAreTransactionalAndExact(t *testing.T) {
	h := Start(t, Options{})
	r := h.Route53(t)
	zone, apex := newZone(t, r)
	www := "www." + apex

	if _, err := change(r, zone, create(set(www, r53types.RRTypeA, 60, "192.0.2.1"))); err != nil {
		t.Fatal(err)
	}
	// CREATE of what exists fails: what makes a record a lease.
	if _, err := change(r, zone, create(set(www, r53types.RRTypeA, 60, "192.0.2.9"))); apiCode(err) != "InvalidChangeBatch" || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second CREATE: %v, want InvalidChangeBatch (already exists)", err)
	}
	// DELETE must name the values and TTL exactly.
	for _, wrong := range []*r53types.ResourceRecordSet{set(www, r53types.RRTypeA, 60, "192.0.2.2"), set(www, r53types.RRTypeA, 300, "192.0.2.1")} {
		if _, err := change(r, zone, del(wrong)); apiCode(err) != "InvalidChangeBatch" || !strings.Contains(err.Error(), "do not match") {
			t.Fatalf("DELETE with other values: %v, want InvalidChangeBatch", err)
		}
	}
	// A batch is all or nothing: the DELETE is not applied when the CREATE fails.
	if _, err := change(r, zone, del(set(www, r53types.RRTypeA, 60, "192.0.2.1")), create(set(www, r53types.RRTypeCname, 60, "a.example")), create(set(apex, r53types.RRTypeCname, 60, "b.example"))); apiCode(err) != "InvalidChangeBatch" {
		t.Fatalf("a batch with a CNAME at the apex: %v, want InvalidChangeBatch", err)
	}
	if got := h.Model.Records(zone, www); len(got) != 1 || got[0].Type != "A" || !slices.Equal(got[0].Records, []string{"192.0.2.1"}) {
		t.Fatalf("after a failed batch %s holds %+v, want the A record untouched", www, got)
	}
	// The same DELETE and CREATE alone succeed together: a compare-and-swap.
	if _, err := change(r, zone, del(set(www, r53types.RRTypeA, 60, "192.0.2.1")), create(set(www, r53types.RRTypeCname, 60, "a.example"))); err != nil {
		t.Fatal(err)
	}
	// A CNAME excludes every other record of its name.
	if _, err := change(r, zone, create(set(www, r53types.RRTypeTxt, 60, `"x"`))); apiCode(err) != "InvalidChangeBatch" || !strings.Contains(err.Error(), "conflicts") {
		t.Fatalf("TXT beside a CNAME: %v, want InvalidChangeBatch", err)
	}
	// Values as Route53 checks them: TXT quoted, A an IPv4 address.
	if _, err := change(r, zone, create(set("t."+apex, r53types.RRTypeTxt, 60, "unquoted"))); apiCode(err) != "InvalidChangeBatch" {
		t.Fatalf("an unquoted TXT value: %v", err)
	}
	if _, err := change(r, zone, create(set("a."+apex, r53types.RRTypeA, 60, "ec2-1-2-3-4.example"))); apiCode(err) != "InvalidChangeBatch" {
		t.Fatalf("an A value that is no address: %v", err)
	}
	if _, err := change(r, zone, create(set("x.other.example.", r53types.RRTypeA, 60, "192.0.2.1"))); apiCode(err) != "InvalidChangeBatch" {
		t.Fatalf("a name outside the zone: %v", err)
	}
	// An alias has neither TTL nor values; a weight needs a set identifier.
	alias := set("al."+apex, r53types.RRTypeA, 60, "192.0.2.1")
	alias.AliasTarget = &r53types.AliasTarget{DNSName: aws.String("d111111abcdef8.cloudfront.net"), HostedZoneId: aws.String("Z2FDTNDATAQYW2")}
	weighted := set("w."+apex, r53types.RRTypeA, 60, "192.0.2.1")
	weighted.Weight = aws.Int64(10)
	for what, bad := range map[string]*r53types.ResourceRecordSet{"an alias with a TTL and values": alias, "a weight without a set identifier": weighted} {
		if _, err := change(r, zone, create(bad)); apiCode(err) != "InvalidChangeBatch" && apiCode(err) != "InvalidInput" {
			t.Fatalf("%s: %v, want it refused", what, err)
		}
	}
}

func TestRecordChangesArePendingBeforeInsync(t *testing.T) {
	h := Start(t, Options{PendingDescribes: 2})
	r := h.Route53(t)
	zone, apex := newZone(t, r)
	out, err := change(r, zone, create(set("www."+apex, r53types.RRTypeA, 60, "192.0.2.1")))
	if err != nil {
		t.Fatal(err)
	}
	if out.ChangeInfo.Status != r53types.ChangeStatusPending {
		t.Fatalf("a change answered %s, want PENDING", out.ChangeInfo.Status)
	}
	var seen []r53types.ChangeStatus
	for range 3 {
		got, err := r.GetChange(context.Background(), &route53.GetChangeInput{Id: out.ChangeInfo.Id})
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, got.ChangeInfo.Status)
	}
	if !slices.Equal(seen, []r53types.ChangeStatus{"PENDING", "PENDING", "INSYNC"}) {
		t.Fatalf("GetChange saw %v, want PENDING twice then INSYNC", seen)
	}
	// A PENDING change is listed already.
	if got := h.Model.Records(zone, "www."+apex); len(got) != 1 {
		t.Fatalf("records %+v", got)
	}
}

func TestRecordListingIsSortedAndPaged(t *testing.T) {
	h := Start(t, Options{})
	r := h.Route53(t)
	ctx := context.Background()
	zone, apex := newZone(t, r)
	var changes []r53types.Change
	for i := range 7 {
		changes = append(changes, create(set(fmt.Sprintf("n%d.%s", i, apex), r53types.RRTypeA, 60, "192.0.2.1")))
	}
	changes = append(changes, create(set("a.n3."+apex, r53types.RRTypeTxt, 60, `"t"`)), create(set("n3."+apex, r53types.RRTypeTxt, 60, `"t"`)))
	if _, err := change(r, zone, changes...); err != nil {
		t.Fatal(err)
	}
	// Paged by 3: every record set once, in Route53's order (labels
	// reversed, then type), with the zone's own NS and SOA.
	var got []string
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone), MaxItems: aws.Int32(3)}
	pages := 0
	for {
		out, err := r.ListResourceRecordSets(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.ResourceRecordSets) > 3 {
			t.Fatalf("a page of %d with MaxItems 3", len(out.ResourceRecordSets))
		}
		for _, rs := range out.ResourceRecordSets {
			got = append(got, strings.TrimSuffix(aws.ToString(rs.Name), "."+apex)+" "+string(rs.Type))
		}
		if !out.IsTruncated {
			break
		}
		in.StartRecordName, in.StartRecordType = out.NextRecordName, out.NextRecordType
	}
	want := []string{apex + " NS", apex + " SOA", "n0 A", "n1 A", "n2 A", "n3 A", "n3 TXT", "a.n3 TXT", "n4 A", "n5 A", "n6 A"}
	if !slices.Equal(got, want) || pages != 4 {
		t.Fatalf("listed %v in %d pages, want %v in 4", got, pages, want)
	}
	// Starting at a name lists from the first set at or after it.
	out, err := r.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone), StartRecordName: aws.String("n3." + apex), MaxItems: aws.Int32(2)})
	if err != nil || len(out.ResourceRecordSets) != 2 || out.ResourceRecordSets[0].Type != r53types.RRTypeA || aws.ToString(out.NextRecordName) != "a.n3."+apex {
		t.Fatalf("listing from n3: %+v, %v", out, err)
	}
	// A type without a name is refused.
	if _, err := r.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone), StartRecordType: r53types.RRTypeA}); apiCode(err) != "InvalidInput" {
		t.Fatalf("a type without a name: %v, want InvalidInput", err)
	}
}
