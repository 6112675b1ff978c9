package awsharness

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/smithy-go"
)

func code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// TestDenyAnswersAsAWSDoes: a denied EC2 action answers
// UnauthorizedOperation, DryRun included; Route53 AccessDenied; others
// are untouched, and Clear lifts the denial.
func TestDenyAnswersAsAWSDoes(t *testing.T) {
	h := Start(t, Options{})
	ctx := context.Background()
	x, r := h.EC2(t), h.Route53(t)
	dry := &ec2.CreateSecurityGroupInput{DryRun: aws.Bool(true), GroupName: aws.String("g"), Description: aws.String("d")}
	if _, err := x.CreateSecurityGroup(ctx, dry); code(err) != "DryRunOperation" {
		t.Fatalf("allowed dry run: %v", err)
	}
	h.Deny("ec2:CreateSecurityGroup", "route53:ListHostedZones")
	if _, err := x.CreateSecurityGroup(ctx, dry); code(err) != "UnauthorizedOperation" {
		t.Fatalf("denied dry run: %v", err)
	}
	if _, err := r.ListHostedZones(ctx, &route53.ListHostedZonesInput{}); code(err) != "AccessDenied" {
		t.Fatalf("denied route53 call: %v", err)
	}
	if _, err := x.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatalf("an action not denied: %v", err)
	}
	h.Faults.Clear()
	if _, err := x.CreateSecurityGroup(ctx, dry); code(err) != "DryRunOperation" {
		t.Fatalf("after Clear: %v", err)
	}
}
