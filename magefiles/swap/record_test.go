package swap_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch/launchtest"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

func createZone(t *testing.T, r *route53.Client, name string) string {
	t.Helper()
	out, err := r.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(awstest.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
}

func TestFindZoneReadsEveryPage(t *testing.T) {
	h := awstest.StartLaunch(t, awstest.Options{})
	r := h.Route53(t)
	base := awstest.UniqueName("z") + ".example"
	// More zones than one page holds (100), so the right one may be on any page.
	for i := range 101 {
		createZone(t, r, fmt.Sprintf("n%d.%s", i, base))
	}
	want := createZone(t, r, "blog."+base)
	createZone(t, r, base)
	h.Calls.Reset()
	z, err := swap.FindZone(context.Background(), r, "www.blog."+base, "")
	if err != nil {
		t.Fatal(err)
	}
	if z.ID != want || z.Name != "blog."+base+"." {
		t.Fatalf("zone %+v, want %s (blog.%s)", z, want, base)
	}
	if n := h.Calls.Count("route53", "ListHostedZones"); n < 2 {
		t.Fatalf("%d ListHostedZones pages read, want every page", n)
	}
}

func TestFindZoneErrors(t *testing.T) {
	h := awstest.StartLaunch(t, awstest.Options{})
	r := h.Route53(t)
	ctx := context.Background()
	base := awstest.UniqueName("z") + ".example"
	other := createZone(t, r, "other-"+base)
	createZone(t, r, base)
	createZone(t, r, base) // a second public zone of the same name

	if _, err := swap.FindZone(ctx, r, "www."+base, ""); err == nil || !strings.Contains(err.Error(), "hosted_zone_id") {
		t.Errorf("two zones of one name: %v, want to be asked for hosted_zone_id", err)
	}
	if _, err := swap.FindZone(ctx, r, "www."+base, other); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("a hosted_zone_id of another domain: %v", err)
	}
	if _, err := swap.FindZone(ctx, r, "www."+awstest.UniqueName("nowhere")+".invalid", ""); err == nil || !strings.Contains(err.Error(), "no public hosted zone") {
		t.Errorf("no zone: %v", err)
	}
	z, err := swap.FindZone(ctx, r, "www.other-"+base, other)
	if err != nil || z.ID != other {
		t.Errorf("by id: %+v, %v", z, err)
	}
}

func TestRecordsSwapCannotManageStopTheDeployBeforeItStarts(t *testing.T) {
	for _, tc := range []struct {
		name string
		rr   r53types.ResourceRecordSet
		want string
	}{
		{"an A record below the apex", r53types.ResourceRecordSet{Type: r53types.RRTypeA, TTL: aws.Int64(60), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("192.0.2.1")}}}, "delete the A record"},
		{"an alias", r53types.ResourceRecordSet{Type: r53types.RRTypeCname, AliasTarget: &r53types.AliasTarget{DNSName: aws.String("d111.cloudfront.net"), HostedZoneId: aws.String("Z2FDTNDATAQYW2")}}, "alias"},
		{"two values", r53types.ResourceRecordSet{Type: r53types.RRTypeCname, TTL: aws.Int64(60), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("a.example")}, {Value: aws.String("b.example")}}}, "2 values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := awstest.StartLaunch(t, awstest.Options{})
			r := h.Route53(t)
			base := awstest.UniqueName("z") + ".example"
			zone := createZone(t, r, base)
			c := launchtest.Config(t, "www."+base, nil)
			tc.rr.Name = aws.String("www." + base + ".")
			if _, err := r.ChangeResourceRecordSets(context.Background(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone), ChangeBatch: &r53types.ChangeBatch{
				Changes: []r53types.Change{{Action: r53types.ChangeActionCreate, ResourceRecordSet: &tc.rr}},
			}}); err != nil {
				t.Fatal(err)
			}
			h.Calls.Reset()
			err := swap.Preflight(context.Background(), swap.Options{Config: c})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("preflight: %v, want %q", err, tc.want)
			}
			for _, call := range h.Calls.Calls() {
				if call.Service != "route53" || !strings.HasPrefix(call.Operation, "List") {
					t.Errorf("preflight made %s", call)
				}
			}
		})
	}
}

func TestSwapNeedsADomain(t *testing.T) {
	h := awstest.StartLaunch(t, awstest.Options{})
	c := launchtest.Config(t, "", nil)
	_, err := swap.Swap(context.Background(), swap.Options{Config: c})
	if err == nil || !strings.Contains(err.Error(), "deploy.domain") {
		t.Fatalf("err = %v, want the fix: set deploy.domain", err)
	}
	if n := len(h.Calls.Calls()); n != 0 {
		t.Fatalf("%d AWS calls before validation failed", n)
	}
}
