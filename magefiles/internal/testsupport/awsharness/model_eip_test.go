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

// The Elastic IP, public address and consistency rules of awsmodel (eip.go,
// consistency.go), each as the page it cites documents it.

// completedSnapshot is a one-block snapshot EC2 shows completed.
func completedSnapshot(t *testing.T, h *Harness, site string) string {
	t.Helper()
	snap, _ := snapshotWithBlock(t, h, site)
	w := ec2.NewSnapshotCompletedWaiter(h.EC2(t), func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
		next := o.Retryable
		o.Retryable = func(ctx context.Context, in *ec2.DescribeSnapshotsInput, out *ec2.DescribeSnapshotsOutput, err error) (bool, error) {
			if apiCode(err) == "InvalidSnapshot.NotFound" {
				return true, nil // not listed yet
			}
			return next(ctx, in, out, err)
		}
	})
	if err := w.Wait(context.Background(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	return snap
}

// anAMI registers an available AMI of a one-block snapshot.
func anAMI(t *testing.T, h *Harness, site string) string {
	t.Helper()
	ctx := context.Background()
	snap := completedSnapshot(t, h, site)
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
		next := o.Retryable
		o.Retryable = func(ctx context.Context, in *ec2.DescribeImagesInput, out *ec2.DescribeImagesOutput, err error) (bool, error) {
			if apiCode(err) == "InvalidAMIID.NotFound" {
				return true, nil // not listed yet
			}
			return next(ctx, in, out, err)
		}
	}).Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(reg.ImageId)}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(reg.ImageId)
}

// running starts an instance and waits until it runs.
func running(t *testing.T, h *Harness, in *ec2.RunInstancesInput) types.Instance {
	t.Helper()
	ctx := context.Background()
	e := h.EC2(t)
	out, err := e.RunInstances(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	if out.Instances[0].State.Name != types.InstanceStateNamePending || out.Instances[0].PublicIpAddress != nil {
		t.Fatalf("RunInstances answered %s with address %v, want pending and no address yet", out.Instances[0].State.Name, aws.ToString(out.Instances[0].PublicIpAddress))
	}
	got, err := ec2.NewInstanceRunningWaiter(e, func(o *ec2.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
	}).
		WaitForOutput(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return got.Reservations[0].Instances[0]
}

func publicIP(t *testing.T, h *Harness, id string) string {
	t.Helper()
	out, err := h.EC2(t).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Reservations[0].Instances[0].PublicIpAddress)
}

func TestPublicAddressesOnlyWhereAskedOrMapped(t *testing.T) {
	h := Start(t, Options{InvisibleDescribes: -1})
	ctx := context.Background()
	e := h.EC2(t)
	ami := anAMI(t, h, UniqueName("pub"))
	vpc, err := e.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.2.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := e.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.2.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	subnet := aws.ToString(sub.Subnet.SubnetId)
	base := func() *ec2.RunInstancesInput {
		return &ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}
	}
	// A subnet that maps no public address gives none...
	in := base()
	in.SubnetId = aws.String(subnet)
	if ip := aws.ToString(running(t, h, in).PublicIpAddress); ip != "" {
		t.Fatalf("an instance in a subnet that maps no address has %s", ip)
	}
	// ...unless one is asked for at launch.
	in = base()
	in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), SubnetId: aws.String(subnet), AssociatePublicIpAddress: aws.Bool(true)}}
	if ip := aws.ToString(running(t, h, in).PublicIpAddress); ip == "" {
		t.Fatal("an instance that asked for a public address has none")
	}
	// The default subnet maps one.
	if ip := aws.ToString(running(t, h, base()).PublicIpAddress); ip == "" {
		t.Fatal("an instance in the default subnet has no public address")
	}
	// A network interface takes the groups and the subnet: both at once is refused.
	in.SecurityGroupIds = []string{"sg-1"}
	if _, err := e.RunInstances(ctx, in); apiCode(err) != "InvalidParameterCombination" {
		t.Fatalf("groups beside a network interface: %v, want InvalidParameterCombination", err)
	}
}

func TestElasticIPs(t *testing.T) {
	h := Start(t, Options{InvisibleDescribes: -1})
	ctx := context.Background()
	e := h.EC2(t)
	site := UniqueName("eip")
	ami := anAMI(t, h, site)
	in := func() *ec2.RunInstancesInput {
		return &ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorStop}
	}
	a, b := running(t, h, in()), running(t, h, in())
	aID, bID := aws.ToString(a.InstanceId), aws.ToString(b.InstanceId)
	aIP := aws.ToString(a.PublicIpAddress)

	alloc := &ec2.AllocateAddressInput{Domain: types.DomainTypeVpc, TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeElasticIp, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}}}
	eip, err := e.AllocateAddress(ctx, alloc)
	if err != nil {
		t.Fatal(err)
	}
	// No client token: the same request again is another address.
	twin, err := e.AllocateAddress(ctx, alloc)
	if err != nil || aws.ToString(twin.AllocationId) == aws.ToString(eip.AllocationId) {
		t.Fatalf("a repeated AllocateAddress: %+v, %v; want a second address", twin, err)
	}
	if got := h.Model.AddressesTagged("site", site); len(got) != 2 {
		t.Fatalf("addresses tagged %v", got)
	}
	// At most five per region.
	for range awsmodel.MaxAddresses - 2 {
		if _, err := e.AllocateAddress(ctx, alloc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.AllocateAddress(ctx, alloc); apiCode(err) != "AddressLimitExceeded" {
		t.Fatalf("a sixth address: %v, want AddressLimitExceeded", err)
	}

	// Associated, the address replaces the instance's own public address.
	assoc := &ec2.AssociateAddressInput{AllocationId: eip.AllocationId, InstanceId: aws.String(aID)}
	if _, err := e.AssociateAddress(ctx, assoc); err != nil {
		t.Fatal(err)
	}
	if got := publicIP(t, h, aID); got != aws.ToString(eip.PublicIp) {
		t.Fatalf("instance a answers on %s, want the Elastic IP %s", got, aws.ToString(eip.PublicIp))
	}
	// Associating again is idempotent.
	if _, err := e.AssociateAddress(ctx, assoc); err != nil {
		t.Fatal(err)
	}
	// Moving it elsewhere fails unless reassociation is allowed.
	for _, allow := range []*bool{nil, aws.Bool(false)} {
		if _, err := e.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: eip.AllocationId, InstanceId: aws.String(bID), AllowReassociation: allow}); apiCode(err) != "Resource.AlreadyAssociated" {
			t.Fatalf("reassociation with AllowReassociation %v: %v, want Resource.AlreadyAssociated", allow, err)
		}
	}
	moved, err := e.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: eip.AllocationId, InstanceId: aws.String(bID), AllowReassociation: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	// The instance it left gets a new public address, not its old one.
	if got := publicIP(t, h, aID); got == "" || got == aIP || got == aws.ToString(eip.PublicIp) {
		t.Fatalf("instance a answers on %q after the address left (it had %s)", got, aIP)
	}
	out, err := e.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []types.Filter{{Name: aws.String("tag:site"), Values: []string{site}}, {Name: aws.String("instance-id"), Values: []string{bID}}}})
	if err != nil || len(out.Addresses) != 1 || aws.ToString(out.Addresses[0].AllocationId) != aws.ToString(eip.AllocationId) {
		t.Fatalf("DescribeAddresses by instance: %+v, %v", out, err)
	}
	// Released while associated: refused.
	if _, err := e.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: eip.AllocationId}); apiCode(err) != "InvalidIPAddress.InUse" {
		t.Fatalf("releasing an address in use: %v, want InvalidIPAddress.InUse", err)
	}
	// A halted instance with shutdown behaviour stop keeps the address.
	if err := h.Model.Halt(ctx, bID); err != nil {
		t.Fatal(err)
	}
	if a, ok := h.Model.AddressOf(aws.ToString(eip.PublicIp)); !ok || a.InstanceID != bID {
		t.Fatalf("after b stopped the address is %+v, want still b's", a)
	}
	// Disassociating is idempotent; an association never made is not found.
	for range 2 {
		if _, err := e.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: moved.AssociationId}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String("eipassoc-0000000000000000")}); apiCode(err) != "InvalidAssociationID.NotFound" {
		t.Fatalf("an unknown association: %v", err)
	}
	if _, err := e.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: eip.AllocationId}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{aws.ToString(eip.AllocationId)}}); apiCode(err) != "InvalidAllocationID.NotFound" {
		t.Fatalf("a released address: %v", err)
	}
	// A terminated instance's address stays allocated, unassociated.
	if _, err := e.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: twin.AllocationId, InstanceId: aws.String(aID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aID}}); err != nil {
		t.Fatal(err)
	}
	if a, ok := h.Model.AddressOf(aws.ToString(twin.PublicIp)); !ok || a.InstanceID != "" {
		t.Fatalf("after a was terminated its address is %+v, want allocated and unassociated", a)
	}
}

func TestEventualConsistency(t *testing.T) {
	h := Start(t, Options{InvisibleDescribes: 1, PendingDescribes: 1})
	ctx := context.Background()
	e := h.EC2(t)
	site := UniqueName("lag")
	ami := anAMI(t, h, site)
	out, err := e.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	// The first look by id does not find it; the next finds it pending; then running.
	if _, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("a new instance at once: %v, want InvalidInstanceID.NotFound", err)
	}
	var states []types.InstanceStateName
	for range 2 {
		got, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, got.Reservations[0].Instances[0].State.Name)
	}
	if states[0] != types.InstanceStateNamePending || states[1] != types.InstanceStateNameRunning {
		t.Fatalf("states %v, want pending then running", states)
	}

	// A new address is missing from the first listing.
	alloc, err := e.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeElasticIp, Tags: []types.Tag{{Key: aws.String("site"), Value: aws.String(site)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var counts []int
	for range 2 {
		got, err := e.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []types.Filter{{Name: aws.String("tag:site"), Values: []string{site}}}})
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, len(got.Addresses))
	}
	if counts[0] != 0 || counts[1] != 1 {
		t.Fatalf("listings of a new address found %v, want 0 then 1 (%s)", counts, aws.ToString(alloc.AllocationId))
	}

	// A new AMI is missing from the first listing by name.
	snap := completedSnapshot(t, h, site)
	if _, err := e.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(site + "-2"), RootDeviceName: aws.String("/dev/xvda"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(snap)}}}}); err != nil {
		t.Fatal(err)
	}
	// A listing that would not show it anyway does not bring it closer.
	other := &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("name"), Values: []string{site + "-other"}}}}
	if _, err := e.DescribeImages(ctx, other); err != nil {
		t.Fatal(err)
	}
	byName := &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("name"), Values: []string{site + "-2"}}}}
	first, err1 := e.DescribeImages(ctx, byName)
	second, err2 := e.DescribeImages(ctx, byName)
	if err1 != nil || err2 != nil || len(first.Images) != 0 || len(second.Images) != 1 {
		t.Fatalf("listings of a new AMI: %d then %d (%v %v), want 0 then 1", len(first.Images), len(second.Images), err1, err2)
	}
}

func TestConsoleOutputLatestOnlyOnNitro(t *testing.T) {
	h := Start(t, Options{InvisibleDescribes: -1})
	ctx := context.Background()
	e := h.EC2(t)
	ami := anAMI(t, h, UniqueName("console"))
	xen := running(t, h, &ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: types.InstanceTypeT2Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	id := aws.ToString(xen.InstanceId)
	h.Model.SetConsoleOutput(id, "xen boot\n")
	if _, err := e.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id), Latest: aws.Bool(true)}); apiCode(err) != "UnsupportedOperation" {
		t.Fatalf("Latest on a Xen type: %v, want UnsupportedOperation", err)
	}
	if out, err := e.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id)}); err != nil || aws.ToString(out.Output) == "" {
		t.Fatalf("buffered output of a Xen type: %+v, %v", out, err)
	}
	if _, err := e.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String("i-0123456789abcdef0")}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("the console of an unknown instance: %v, want InvalidInstanceID.NotFound", err)
	}
	// A dry run naming what does not exist fails as the call would.
	if _, err := e.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}, DryRun: aws.Bool(true)}); apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("a dry run of an unknown instance: %v, want InvalidInstanceID.NotFound", err)
	}
}
