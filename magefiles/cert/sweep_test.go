package cert

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
)

// TestSweepKeepsAnotherOrdersChallenge: the sweep after an order removes
// the values that stood when the order began under the lease (a killed
// run's) and the order's own, and keeps a value another order wrote
// meanwhile (a run without the lease: one that lost it while suspended),
// rewriting the set without the others.
func TestSweepKeepsAnotherOrdersChallenge(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	ctx := context.Background()
	r53 := h.Route53(t)
	base := awsharness.UniqueName("sweep") + ".example"
	out, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	z := fleet.Zone{ID: strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/"), Name: fleet.FQDN(base)}
	domain := "blog." + base
	zones := map[string]fleet.Zone{domain: z}
	fqdn := fleet.FQDN(ChallengeName(domain))
	upsert := func(values ...string) {
		t.Helper()
		var rrs []r53types.ResourceRecord
		for _, v := range values {
			rrs = append(rrs, r53types.ResourceRecord{Value: aws.String(v)})
		}
		if _, err := r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(z.ID), ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{
			Action: r53types.ChangeActionUpsert, ResourceRecordSet: &r53types.ResourceRecordSet{Name: aws.String(fqdn), Type: r53types.RRTypeTxt, TTL: aws.Int64(60), ResourceRecords: rrs},
		}}}}); err != nil {
			t.Fatal(err)
		}
	}
	upsert(`"left-by-a-killed-run"`)
	before, err := listChallenges(ctx, r53, zones)
	if err != nil {
		t.Fatal(err)
	}
	mine := &presented{}
	mine.add(ChallengeName(domain), `"this-order"`)
	upsert(`"left-by-a-killed-run"`, `"this-order"`, `"another-live-order"`)

	if err := sweep(ctx, r53, zones, before.union(mine.values()), logrus.NewEntry(logrus.New())); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range h.Model.Records(z.ID, ChallengeName(domain)) {
		left = append(left, s.Records...)
	}
	if !slices.Equal(left, []string{`"another-live-order"`}) {
		t.Fatalf("after the sweep %s holds %v, want only the other order's value", fqdn, left)
	}

	// With only what it may remove left, the set is deleted.
	upsert(`"this-order"`)
	if err := sweep(ctx, r53, zones, mine.values(), logrus.NewEntry(logrus.New())); err != nil {
		t.Fatal(err)
	}
	if sets := h.Model.Records(z.ID, ChallengeName(domain)); len(sets) != 0 {
		t.Fatalf("the order's own record is left: %+v", sets)
	}
}
