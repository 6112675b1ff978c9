package swap_test

import (
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

// TestDeployConvergesThroughFaults deploys v1, v2 and v2 again while EC2 and
// Route53 throttle, fail with 500s and drop connections, before and after
// serving the call. Every deploy converges, and the site never had more
// instances than builds deployed nor more than one address: no retried
// RunInstances or AllocateAddress made a twin.
func TestDeployConvergesThroughFaults(t *testing.T) {
	for _, apex := range []bool{false, true} {
		t.Run(map[bool]string{false: "subdomain", true: "apex"}[apex], func(t *testing.T) {
			e := fleettest.NewEnv(t, apex, awsharness.Options{Seed: 7})
			// Baked before the faults start: Bake has its own fault tests.
			v1 := fleettest.Bake(t, e.H, e.C, "build1")
			v2 := fleettest.Bake(t, e.H, e.C, "build2")
			fleettest.WriteBakeReceipt(t, e.C, v1)
			// The answers that matter most are lost once for sure: the
			// instance started, the group created, the record changed.
			for _, op := range []string{"RunInstances", "CreateSecurityGroup", "CreateTags", "TerminateInstances", "AllocateAddress", "AssociateAddress"} {
				e.H.Faults.Add(awsharness.Fault{Service: "ec2", Operation: op, Kind: awsharness.DropAfter, Rate: 1, Limit: 1})
			}
			e.H.Faults.Add(awsharness.Fault{Service: "route53", Operation: "ChangeResourceRecordSets", Kind: awsharness.DropAfter, Rate: 1, Limit: 1})
			for _, svc := range []string{"ec2", "route53"} {
				e.H.Faults.Add(
					awsharness.Fault{Service: svc, Kind: awsharness.Throttle, Rate: 0.1},
					awsharness.Fault{Service: svc, Kind: awsharness.ServerError, Rate: 0.05},
					awsharness.Fault{Service: svc, Kind: awsharness.Drop, Rate: 0.05},
					awsharness.Fault{Service: svc, Kind: awsharness.DropAfter, Rate: 0.05},
				)
			}

			lr1, _ := e.MustDeploy()
			e.WantLive(lr1.InstanceID, "build1")

			fleettest.WriteBakeReceipt(t, e.C, v2)
			lr2, _ := e.MustDeploy()
			e.WantLive(lr2.InstanceID, "build2")
			lr3, sr3 := e.MustDeploy()
			if !lr3.AlreadyLive || !sr3.Unchanged || lr3.InstanceID != lr2.InstanceID {
				t.Fatalf("unchanged redeploy under faults: %+v %+v", lr3, sr3)
			}

			injected := e.H.Faults.Injected()
			e.H.Faults.Clear()
			if injected["drop-after"] == 0 || injected["throttle"] == 0 {
				t.Fatalf("too few faults injected to mean anything: %v", injected)
			}
			t.Logf("faults injected: %v", injected)
			e.WantInstances(lr2.InstanceID)
			if ever := fleettest.InstancesEver(t, e); len(ever) != 2 {
				t.Fatalf("the site had instances %v, want exactly two (one per build): a retry made a twin", ever)
			}
			if addrs := fleettest.Addresses(e.H, e.C.Site); len(addrs) != 1 {
				t.Fatalf("the site has addresses %v, want one", addrs)
			}
		})
	}
}
