package policy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/policy"
)

func zoneARNs(d policy.Document) []string {
	for _, s := range d.Statement {
		if slices.Contains(s.Action, "route53:ChangeResourceRecordSets") {
			return s.Resource
		}
	}
	return nil
}

// TestResolveFindsTheZoneAsSwapDoes: with credentials, the account and the
// zone come from AWS (the zone by Swap's lookup, decoys ignored); without,
// they widen to "*" and a warning says how to pin them.
func TestResolveFindsTheZoneAsSwapDoes(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	ctx := context.Background()
	base := awsharness.UniqueName("pol") + ".example"
	r53 := h.Route53(t)
	var zoneID string
	for _, name := range []string{base, "a" + base, "example"} {
		out, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if name == base {
			zoneID = strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
		}
	}
	c := fleettest.Config(t, "www."+base, nil)

	p, warnings, err := policy.Resolve(ctx, c)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Resolve: %v, warnings %v", err, warnings)
	}
	if p.Account != awsmodel.AccountID || p.ZoneID != zoneID || p.ZoneConfigured || p.Region != awsharness.Region {
		t.Fatalf("params %+v, want account %s and zone %s found by name", p, awsmodel.AccountID, zoneID)
	}
	d := policy.Build(p)
	if got := zoneARNs(d); !slices.Equal(got, []string{"arn:aws:route53:::hostedzone/" + zoneID}) {
		t.Fatalf("record change allowed on %v", got)
	}
	if !slices.Contains(d.Actions(), "route53:ListHostedZones") {
		t.Fatal("the zone is found by listing at deploy time, but ListHostedZones is not granted")
	}

	// hosted_zone_id pins the zone: GetHostedZone instead of the listing.
	c.HostedZoneID = zoneID
	p, _, err = policy.Resolve(ctx, c)
	if err != nil || !p.ZoneConfigured || p.ZoneID != zoneID {
		t.Fatalf("with hosted_zone_id: %+v %v", p, err)
	}
	if a := policy.Build(p).Actions(); !slices.Contains(a, "route53:GetHostedZone") || slices.Contains(a, "route53:ListHostedZones") {
		t.Fatalf("with hosted_zone_id: %v", a)
	}

	// No usable credentials: the account and the zone widen, with warnings.
	c.HostedZoneID = ""
	h.Faults.Add(awsharness.Fault{Service: "sts", Operation: "GetCallerIdentity", Kind: awsharness.Error, Rate: 1, Code: "InvalidClientTokenId", Status: 403})
	p, warnings, err = policy.Resolve(ctx, c)
	if err != nil || p.Account != "" || p.ZoneID != "" || len(warnings) != 2 || !strings.Contains(warnings[1], "hosted_zone_id") {
		t.Fatalf("without credentials: %+v %v %q", p, err, warnings)
	}
	if got := zoneARNs(policy.Build(p)); !slices.Equal(got, []string{"arn:aws:route53:::hostedzone/*"}) {
		t.Fatalf("record change allowed on %v, want hostedzone/*", got)
	}

	// No domain: there is no record to scope the change to.
	c.Domain = ""
	if _, _, err := policy.Resolve(ctx, c); err == nil || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("no domain: %v", err)
	}
}
