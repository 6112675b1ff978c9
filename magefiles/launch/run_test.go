package launch

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// fakeEC2 records RunInstances; anything else it is asked panics (the
// embedded interface is nil), so the test shows exactly what run calls.
type fakeEC2 struct {
	ec2API
	runs []*ec2.RunInstancesInput
	// states answers each RunInstances in turn with an instance in that state.
	states []types.InstanceStateName
}

func (f *fakeEC2) RunInstances(_ context.Context, in *ec2.RunInstancesInput, _ ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error) {
	f.runs = append(f.runs, in)
	state := f.states[len(f.runs)-1]
	return &ec2.RunInstancesOutput{Instances: []types.Instance{{
		InstanceId: aws.String("i-" + string(state)), State: &types.InstanceState{Name: state},
	}}}, nil
}

func TestRunInstancesRequest(t *testing.T) {
	f := &fakeEC2{states: []types.InstanceStateName{types.InstanceStateNameTerminated, types.InstanceStateNamePending}}
	log, _ := test.NewNullLogger()
	l := newLauncher(Options{
		Config: &config.Config{Site: "blog.example.com", InstanceType: "t3.micro", SubnetID: "subnet-0123"},
		Log:    logrus.NewEntry(log),
	}, f)
	tgt := Target{ImageID: "ami-1", ImageDigest: "ab12", BuildID: "b1", Commit: "c1"}
	inst, err := l.run(context.Background(), tgt, "sg-1")
	if err != nil {
		t.Fatal(err)
	}
	id := inst.ID
	// The first token answered with a terminated instance (a launch of this
	// build that ended since): the second token starts a new one.
	if id != "i-pending" || len(f.runs) != 2 {
		t.Fatalf("got %s after %d RunInstances, want i-pending after 2", id, len(f.runs))
	}
	t0, t1 := aws.ToString(f.runs[0].ClientToken), aws.ToString(f.runs[1].ClientToken)
	if t0 == t1 || len(t0) > 64 || t0 != ClientToken("blog.example.com", tgt, "t3.micro", "sg-1", "subnet-0123", 0) {
		t.Fatalf("client tokens %q, %q: want distinct, derived from the build, at most 64 characters", t0, t1)
	}
	if ClientToken("blog.example.com", tgt, "t3.micro", "sg-1", "subnet-0123", 0) != t0 {
		t.Fatal("the client token is not deterministic")
	}
	in := f.runs[1]
	if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != types.HttpTokensStateRequired {
		t.Errorf("metadata options %+v, want IMDSv2 required", in.MetadataOptions)
	}
	if aws.ToString(in.ImageId) != "ami-1" || in.InstanceType != "t3.micro" || aws.ToInt32(in.MaxCount) != 1 ||
		in.SubnetId != nil || len(in.SecurityGroupIds) != 0 {
		t.Errorf("request %+v", in)
	}
	// The public address the gate reaches the candidate on is asked for on
	// the one interface, which carries the group and the subnet.
	if len(in.NetworkInterfaces) != 1 {
		t.Fatalf("network interfaces %+v, want one", in.NetworkInterfaces)
	}
	ni := in.NetworkInterfaces[0]
	if aws.ToInt32(ni.DeviceIndex) != 0 || !aws.ToBool(ni.AssociatePublicIpAddress) || !aws.ToBool(ni.DeleteOnTermination) ||
		aws.ToString(ni.SubnetId) != "subnet-0123" || len(ni.Groups) != 1 || ni.Groups[0] != "sg-1" {
		t.Errorf("network interface %+v", ni)
	}
	// A kernel that halts stops the instance, which keeps the site's address.
	if in.InstanceInitiatedShutdownBehavior != types.ShutdownBehaviorStop {
		t.Errorf("shutdown behaviour %q, want stop", in.InstanceInitiatedShutdownBehavior)
	}
	want := map[string]string{fleet.TagSite: "blog.example.com", fleet.TagBuildID: "b1", fleet.TagImageDigest: "ab12", fleet.TagCommit: "c1", fleet.TagRole: fleet.RoleCandidate}
	var instanceTags map[string]string
	for _, spec := range in.TagSpecifications {
		if spec.ResourceType == types.ResourceTypeInstance {
			instanceTags = map[string]string{}
			for _, tg := range spec.Tags {
				instanceTags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
		}
	}
	for k, v := range want {
		if instanceTags[k] != v {
			t.Errorf("instance tag %s = %q, want %q (tags at creation: %v)", k, instanceTags[k], v, instanceTags)
		}
	}
	if l.undo.Len() != 1 {
		t.Fatalf("%d undo steps registered, want the candidate's termination", l.undo.Len())
	}
}
