package swap_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

func createZone(t *testing.T, r *route53.Client, name string) string {
	t.Helper()
	out, err := r.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/")
}

func TestRecordsSwapCannotManageStopTheDeployBeforeItStarts(t *testing.T) {
	for _, tc := range []struct {
		name string
		rr   r53types.ResourceRecordSet
		want string
	}{
		{"a weighted set", r53types.ResourceRecordSet{Type: r53types.RRTypeA, TTL: aws.Int64(60), SetIdentifier: aws.String("blue"), Weight: aws.Int64(10), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("192.0.2.1")}}}, "routing-policy"},
		{"an alias", r53types.ResourceRecordSet{Type: r53types.RRTypeCname, AliasTarget: &r53types.AliasTarget{DNSName: aws.String("d111.cloudfront.net"), HostedZoneId: aws.String("Z2FDTNDATAQYW2")}}, "alias"},
		{"two values", r53types.ResourceRecordSet{Type: r53types.RRTypeA, TTL: aws.Int64(60), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("192.0.2.1")}, {Value: aws.String("192.0.2.2")}}}, "2 values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := awsharness.Start(t, awsharness.Options{})
			r := h.Route53(t)
			base := awsharness.UniqueName("z") + ".example"
			zone := createZone(t, r, base)
			c := fleettest.Config(t, "www."+base, nil)
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
	h := awsharness.Start(t, awsharness.Options{})
	c := fleettest.Config(t, "", nil)
	_, err := swap.Swap(context.Background(), swap.Options{Config: c})
	if err == nil || !strings.Contains(err.Error(), "deploy.domain") {
		t.Fatalf("err = %v, want the fix: set deploy.domain", err)
	}
	if n := len(h.Calls.Calls()); n != 0 {
		t.Fatalf("%d AWS calls before validation failed", n)
	}
}
