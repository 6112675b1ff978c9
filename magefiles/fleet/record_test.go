package fleet_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
)

func createZone(t *testing.T, r *route53.Client, name string) string {
	t.Helper()
	out, err := r.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
}

func TestFindZoneReadsEveryPage(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	r := h.Route53(t)
	base := awsharness.UniqueName("z") + ".example"
	// More zones than one page holds (100), so the right one may be on any page.
	for i := range 101 {
		createZone(t, r, fmt.Sprintf("n%d.%s", i, base))
	}
	want := createZone(t, r, "blog."+base)
	createZone(t, r, base)
	h.Calls.Reset()
	z, err := fleet.FindZone(context.Background(), r, "www.blog."+base, "")
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
	h := awsharness.Start(t, awsharness.Options{})
	r := h.Route53(t)
	ctx := context.Background()
	base := awsharness.UniqueName("z") + ".example"
	other := createZone(t, r, "other-"+base)
	createZone(t, r, base)
	createZone(t, r, base) // a second public zone of the same name

	if _, err := fleet.FindZone(ctx, r, "www."+base, ""); err == nil || !strings.Contains(err.Error(), "hosted_zone_id") {
		t.Errorf("two zones of one name: %v, want to be asked for hosted_zone_id", err)
	}
	if _, err := fleet.FindZone(ctx, r, "www."+base, other); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("a hosted_zone_id of another domain: %v", err)
	}
	if _, err := fleet.FindZone(ctx, r, "www."+awsharness.UniqueName("nowhere")+".invalid", ""); err == nil || !strings.Contains(err.Error(), "no public hosted zone") {
		t.Errorf("no zone: %v", err)
	}
	z, err := fleet.FindZone(ctx, r, "www.other-"+base, other)
	if err != nil || z.ID != other {
		t.Errorf("by id: %+v, %v", z, err)
	}
}
