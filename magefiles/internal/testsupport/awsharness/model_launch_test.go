package awsharness

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
)

func TestLaunchFrontClientTokenAndAddresses(t *testing.T) {
	h := Start(t, Options{PendingDescribes: -1, InvisibleDescribes: -1}) // consistency_test.go has the windows
	ctx := context.Background()
	site := UniqueName("front")
	snap, _ := snapshotWithBlock(t, h, site)
	e := h.EC2(t)
	reg, err := e.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String(site), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(snap)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ec2.NewImageAvailableWaiter(e, func(o *ec2.ImageAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
	}).
		Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(reg.ImageId)}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	in := &ec2.RunInstancesInput{
		ImageId: reg.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ClientToken: aws.String(UniqueName("tok")),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}},
	}
	// The first answer is lost after the instance started; the SDK's retry
	// (same token) gets that instance, and so does a later repeat.
	h.Faults.Add(Fault{Service: "ec2", Operation: "RunInstances", Kind: DropAfter, Rate: 1, Limit: 1})
	first, err := e.RunInstances(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.RunInstances(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(first.Instances[0].InstanceId)
	if aws.ToString(again.Instances[0].InstanceId) != id || h.Calls.Count("ec2", "RunInstances") != 3 {
		t.Fatalf("instances %s and %s after %d calls; want one instance", id, aws.ToString(again.Instances[0].InstanceId), h.Calls.Count("ec2", "RunInstances"))
	}
	if ids, _ := h.Model.InstancesTagged(ctx, "site", site); len(ids) != 1 {
		t.Fatalf("instances %v, want one", ids)
	}
	// Launched into the default subnet, which maps public addresses: it has one.
	out, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	got := out.Reservations[0].Instances[0]
	if ip := aws.ToString(got.PublicIpAddress); ip != awsmodel.PublicIP(id) || aws.ToString(got.PublicDnsName) != awsmodel.PublicDNSName(ip) {
		t.Fatalf("public address %q / %q, want %s / %s", ip, aws.ToString(got.PublicDnsName), awsmodel.PublicIP(id), awsmodel.PublicDNSName(awsmodel.PublicIP(id)))
	}

	// A repeat after termination answers the terminated instance, as EC2 does.
	if _, err := e.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	dead, err := e.RunInstances(ctx, in)
	if err != nil || aws.ToString(dead.Instances[0].InstanceId) != id || dead.Instances[0].State.Name != types.InstanceStateNameTerminated {
		t.Fatalf("repeat after termination: %+v, %v", dead, err)
	}
}

// A RunInstances repeated with its client token answers the instance as it
// is now, as DescribeInstances shows it: still pending within the model's
// pending window (EC2 User Guide, "Amazon EC2 instance state changes"),
// running after.
func TestRepeatedRunInstancesAnswersTheStateNow(t *testing.T) {
	h := Start(t, Options{PendingDescribes: 2, InvisibleDescribes: -1})
	ctx := context.Background()
	site := UniqueName("repeat")
	snap, _ := snapshotWithBlock(t, h, site)
	e := h.EC2(t)
	for { // the completed snapshot is pending for two looks
		out, err := e.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Snapshots[0].State == types.SnapshotStateCompleted {
			break
		}
	}
	reg, err := e.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String(site), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(snap)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		out, err := e.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(reg.ImageId)}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Images[0].State == types.ImageStateAvailable {
			break
		}
	}
	in := &ec2.RunInstancesInput{ImageId: reg.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ClientToken: aws.String(UniqueName("tok"))}
	state := func() types.InstanceStateName {
		out, err := e.RunInstances(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return out.Instances[0].State.Name
	}
	if s := state(); s != types.InstanceStateNamePending {
		t.Fatalf("RunInstances answered %s, want pending", s)
	}
	if s := state(); s != types.InstanceStateNamePending {
		t.Fatalf("the repeat within the pending window answered %s, want pending", s)
	}
	first, _ := e.RunInstances(ctx, in)
	id := aws.ToString(first.Instances[0].InstanceId)
	for range 2 {
		if _, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}); err != nil {
			t.Fatal(err)
		}
	}
	if s := state(); s != types.InstanceStateNameRunning {
		t.Fatalf("the repeat after the window answered %s, want running", s)
	}
}
