package awsharness

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
)

// Every zone appears exactly once across pages, as Route53 pages them
// (kumo alone loses the zone named by each NextMarker).
func TestListHostedZonesPagesLoseNoZone(t *testing.T) {
	h := Start(t, Options{})
	r := h.Route53(t)
	ctx := context.Background()
	mine := map[string]bool{}
	for range 230 {
		out, err := r.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(UniqueName("page") + ".test"), CallerReference: aws.String(UniqueName("ref"))})
		if err != nil {
			t.Fatal(err)
		}
		mine[aws.ToString(out.HostedZone.Id)] = true
	}
	seen := map[string]int{}
	pages := 0
	p := route53.NewListHostedZonesPaginator(r, &route53.ListHostedZonesInput{MaxItems: aws.Int32(100)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, z := range page.HostedZones {
			seen[aws.ToString(z.Id)]++
		}
	}
	if pages < 3 {
		t.Errorf("%d pages for at least 230 zones", pages)
	}
	for id := range mine {
		if seen[id] != 1 {
			t.Errorf("zone %s listed %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("zone %s listed %d times", id, n)
		}
	}
}
