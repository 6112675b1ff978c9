package swap_test

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/launch/launchtest"
)

// TestDeployConvergesThroughFaults deploys v1, v2 and v2 again while EC2 and
// Route53 throttle, fail with 500s and drop connections, before and after
// serving the call. Every deploy converges, and the site never had more
// instances than builds deployed: no retried RunInstances made a twin.
func TestDeployConvergesThroughFaults(t *testing.T) {
	for _, apex := range []bool{false, true} {
		t.Run(map[bool]string{false: "subdomain", true: "apex"}[apex], func(t *testing.T) {
			e := newEnv(t, apex, awstest.Options{Seed: 7})
			// Baked before the faults start: Bake has its own fault tests.
			v1 := launchtest.Bake(t, e.h, e.c, "build1")
			v2 := launchtest.Bake(t, e.h, e.c, "build2")
			launchtest.WriteBakeReceipt(t, e.c, v1)
			// The answers that matter most are lost once for sure: the
			// instance started, the group created, the record changed.
			for _, op := range []string{"RunInstances", "CreateSecurityGroup", "CreateTags", "TerminateInstances"} {
				e.h.Faults.Add(awstest.Fault{Service: "ec2", Operation: op, Kind: awstest.DropAfter, Rate: 1, Limit: 1})
			}
			e.h.Faults.Add(awstest.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awstest.DropAfter, Rate: 1, Limit: 1})
			for _, svc := range []string{"ec2", "route53"} {
				e.h.Faults.Add(
					awstest.Fault{Service: svc, Kind: awstest.Throttle, Rate: 0.1},
					awstest.Fault{Service: svc, Kind: awstest.ServerError, Rate: 0.05},
					awstest.Fault{Service: svc, Kind: awstest.Drop, Rate: 0.05},
					awstest.Fault{Service: svc, Kind: awstest.DropAfter, Rate: 0.05},
				)
			}

			lr1, _ := e.mustDeploy()
			e.wantRecordAt(lr1.InstanceID)

			launchtest.WriteBakeReceipt(t, e.c, v2)
			lr2, _ := e.mustDeploy()
			e.wantRecordAt(lr2.InstanceID)
			lr3, sr3 := e.mustDeploy()
			if !lr3.AlreadyLive || !sr3.Unchanged || lr3.InstanceID != lr2.InstanceID {
				t.Fatalf("unchanged redeploy under faults: %+v %+v", lr3, sr3)
			}

			injected := e.h.Faults.Injected()
			e.h.Faults.Clear()
			if injected["drop-after"] == 0 || injected["throttle"] == 0 {
				t.Fatalf("too few faults injected to mean anything: %v", injected)
			}
			t.Logf("faults injected: %v", injected)
			e.wantInstances(lr2.InstanceID)
			if ever := instancesEver(t, e); len(ever) != 2 {
				t.Fatalf("the site had instances %v, want exactly two (one per build): a retry made a twin", ever)
			}
		})
	}
}

// instancesEver lists every instance of the site, terminated ones included.
func instancesEver(t *testing.T, e *env) []string {
	out, err := e.h.EC2(t).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + launch.TagSite), Values: []string{e.c.Site}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	slices.Sort(ids)
	return ids
}
