package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Every wait on AWS goes through Pace.Wait: it looks at once (or after
// First, when the answer that started the wait already said "not yet"),
// then every Every, on the caller's Clock, until the look says done, fails,
// ctx ends or Max has passed. Ticks are kept from the start, not from the end
// of each look, so a slow answer does not stretch the interval: a wait
// loses on average half an interval after the thing it waits for happens,
// which is why the intervals below are a second or two where the SDK's
// waiters poll every 15 s (instances, snapshots, images) and 30 s (Route53).
//
// The intervals come from two kinds of figure, cited at each:
//   - what AWS documents of how long the thing takes (often nothing: then
//     the interval is what the request rate allows, and Max is generous);
//   - the request rate limits, per account and region, that every run of
//     every tool of the account shares: EC2's token buckets ("Request
//     throttling for the Amazon EC2 API", EC2 Developer Guide,
//     https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html:
//     Describe* 100 tokens refilled at 20/s; DescribeInstances,
//     DescribeSnapshots and DescribeSecurityGroups without filter or
//     pagination 50 at 10/s; mutating actions 50 at 5/s; CreateTags 100 at
//     10/s; RunInstances 5 at 2/s), Route53's five requests a second per
//     account (AWS re:Post, "API throttling errors in Amazon Route 53",
//     https://repost.aws/knowledge-center/route-53-avoid-throttling-errors;
//     "Throttling for Amazon Route 53 API requests" now gives 10/s with a
//     burst of 50, and the older, stricter figure is the one kept), and the
//     EBS direct APIs' quotas ("Quotas for Amazon EBS", EBS User Guide,
//     https://docs.aws.amazon.com/ebs/latest/userguide/ebs-resource-quotas.html:
//     CompleteSnapshot 10/s per account, not adjustable; StartSnapshot 10/s;
//     PutSnapshotBlock 1,000/s per snapshot). A look a second is a tenth
//     of the smallest EC2 bucket's refill; a look every two seconds a tenth
//     of Route53's five.

// Pace is how a wait looks at what it waits for.
type Pace struct {
	First time.Duration // before the first look; 0 looks at once
	Every time.Duration // from one look's start to the next's
	Max   time.Duration // the whole wait, on the clock; 0 looks once
}

const (
	// ec2LookEvery paces looks at EC2 (DescribeSnapshots, DescribeImages,
	// DescribeInstances, DescribeAddresses): one request a second is a tenth
	// of the refill of the smallest bucket such a look can draw from (10/s,
	// "Unfiltered and unpaginated non-mutating actions"), so the three or so
	// waits a deploy may run at once, and the account's other tools, stay
	// far from RequestLimitExceeded; a wait loses half a second on average.
	ec2LookEvery = time.Second
	// route53LookEvery paces looks at Route53 (GetChange, the lease record):
	// one request every two seconds is a tenth of the five a second Route53
	// allows an account; INSYNC "generally" comes "within 60 seconds" (Route
	// 53 Developer Guide, "Changes generally propagate to all Route 53 name
	// servers within 60 seconds"), so a wait loses a second on average, not
	// the 15 s the SDK's 30 s waiter loses.
	route53LookEvery = 2 * time.Second
)

var (
	// SnapshotCompleted is the wait from CompleteSnapshot to "completed".
	// CompleteSnapshot answers with the snapshot's status, and a snapshot
	// whose blocks were verified may be completed already (EBS direct APIs
	// reference, CompleteSnapshot, response element Status: "completed |
	// pending | error"), so the first look is at once unless that answer said
	// pending, and no wait at all when it said completed. AWS gives no
	// figure for the processing; awslabs/coldsnap, AWS's own uploader, looks
	// every 2 s (src/wait.rs, WaitParams::default). Twenty minutes means
	// stuck, not slow.
	SnapshotCompleted = Pace{Every: ec2LookEvery, Max: 20 * time.Minute}
	// ImageAvailable is the wait from RegisterImage to "available". Its
	// answer holds only the id, so the first look is at once; an EBS-backed
	// AMI from a completed snapshot "may be in a pending state, but after a
	// few moments, it transitions to an available state" (AWS Toolkit for
	// Visual Studio User Guide, "Create an AMI from an Amazon EC2
	// instance"). DescribeImages draws from the 20/s bucket.
	ImageAvailable = Pace{Every: ec2LookEvery, Max: 15 * time.Minute}
	// InstanceRunning is the wait from RunInstances, which answers with the
	// instance "pending" (EC2 API Reference, RunInstances: "When you launch
	// an instance, it enters the pending state. After the instance is ready
	// for you, it enters the running state"), to "running" with its public
	// address: so the first look is a second later, not at once. AWS gives
	// no figure for pending → running (its tutorial: "a few minutes" until
	// an instance can be connected to); ten minutes means capacity or a
	// broken AMI.
	InstanceRunning = Pace{First: ec2LookEvery, Every: ec2LookEvery, Max: 10 * time.Minute}
	// InstancesTerminated is destroy's wait for terminated instances, which
	// EC2 shows "shutting-down" first (EC2 User Guide, "Amazon EC2
	// instance state changes"); nothing waits behind it but the security
	// group's deletion, so a look every two seconds.
	InstancesTerminated = Pace{First: 2 * ec2LookEvery, Every: 2 * ec2LookEvery, Max: 10 * time.Minute}
	// NewlyListed is the look again for a resource just created (an
	// instance, an AMI, an address, a snapshot) that EC2 does not show yet:
	// "if you run a command to modify or describe the resource that you just
	// created, its ID might not have propagated throughout the system"
	// ("Eventual consistency in the Amazon EC2 API", EC2 Developer Guide,
	// https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html,
	// which advises retrying "starting with a couple of seconds"). A look a
	// second for fifteen seconds, then "not found" is believed.
	NewlyListed = Pace{First: ec2LookEvery, Every: ec2LookEvery, Max: 15 * time.Second}
	// SnapshotInUse is the wait for a snapshot that an AMI being
	// deregistered still holds (InvalidSnapshot.InUse), seconds on EC2.
	SnapshotInUse = Pace{First: ec2LookEvery, Every: ec2LookEvery, Max: 30 * time.Second}
	// GroupInUse is the wait for a security group that terminated
	// instances' network interfaces still hold (DependencyViolation), which
	// EC2 may count for minutes after the instance ends; a look every five
	// seconds, as DeleteSecurityGroup is a mutating action (5/s refill).
	GroupInUse = Pace{First: 5 * time.Second, Every: 5 * time.Second, Max: 5 * time.Minute}
	// ChangeInsync is the wait from ChangeResourceRecordSets, which answers
	// PENDING ("This is the initial status of all change batch requests",
	// Route 53 API Reference, GetChange), to INSYNC: the first look two
	// seconds later. Ten minutes is far past the documented 60 seconds.
	ChangeInsync = Pace{First: route53LookEvery, Every: route53LookEvery, Max: 10 * time.Minute}
	// PriorRequest is the retry of a change Route53 refused because "Route
	// 53 was still processing a prior request" of the zone
	// (PriorRequestNotComplete, AWS re:Post, "API throttling errors in Amazon
	// Route 53"): the prior change is one of this site's, INSYNC in seconds.
	PriorRequest = Pace{First: route53LookEvery, Every: route53LookEvery, Max: time.Minute}
	// LeaseHeld is the look at a deploy lease another run holds, one
	// ListResourceRecordSets each, for up to deploy.lease_wait: the holder
	// releases it the moment its deploy ends, so a look every two seconds
	// starts the next deploy within a second of that, on average.
	LeaseHeld = Pace{Every: route53LookEvery}
)

// ErrWaitTimeout is wrapped by Wait's error when Max passed first.
var ErrWaitTimeout = errors.New("gave up waiting")

// Wait calls look at once, or after First, then every Every on clock (nil:
// real time), until look reports done or an error, ctx ends, or Max has
// passed since the call (a last look is made at Max; Max 0 looks once). It returns look's
// error, ctx's, or one wrapping ErrWaitTimeout.
func (p Pace) Wait(ctx context.Context, clock Clock, look func(ctx context.Context) (done bool, err error)) error {
	if p.Every <= 0 {
		return fmt.Errorf("fleet: a pace with no interval (%+v)", p)
	}
	clock = OrRealClock(clock)
	start := clock.Now()
	deadline := start.Add(p.Max)
	next := start.Add(p.First)
	for {
		if wait := next.Sub(clock.Now()); wait > 0 {
			select {
			case <-clock.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := look(ctx)
		if err != nil || done {
			return err
		}
		now := clock.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("%w after %s", ErrWaitTimeout, p.Max)
		}
		next = next.Add(p.Every)
		if next.Before(now) {
			next = now // a look that took longer than Every: the next at once, not a burst of missed ones
		}
		if next.After(deadline) {
			next = deadline
		}
	}
}

// Scaled is the same pace looking every `every` instead: as many looks,
// First and Max in the same proportion. Tests against the emulator look
// every few milliseconds; 0 leaves the pace as it is.
func (p Pace) Scaled(every time.Duration) Pace {
	if every <= 0 || p.Every <= 0 {
		return p
	}
	scale := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) * float64(every) / float64(p.Every))
	}
	return Pace{First: scale(p.First), Every: every, Max: scale(p.Max)}
}

// Within is the pace with Max set to max: a wait whose bound is a setting
// (deploy.health_timeout, deploy.lease_wait).
func (p Pace) Within(max time.Duration) Pace {
	p.Max = max
	return p
}

// AtOnce is the pace looking first at once: the answer that started the
// wait did not say "not yet" (an instance adopted from an earlier run).
func (p Pace) AtOnce() Pace {
	p.First = 0
	return p
}
