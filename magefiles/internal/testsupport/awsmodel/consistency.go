package awsmodel

// EC2's eventual consistency, which kumo v0.33.1 does not have (a resource it
// creates is listed by the very next call):
//
//   - A new instance, AMI or Elastic IP is missing from the next lagLooks
//     Describe calls that would list it, and asked for by id it does not
//     exist yet (InvalidInstanceID.NotFound, InvalidAMIID.NotFound,
//     InvalidAllocationID.NotFound). "Eventual consistency in the Amazon EC2
//     API": "if you run a command to modify or describe the resource that you
//     just created, its ID might not have propagated throughout the system,
//     and you will get an error responding that the resource does not exist",
//     https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
//   - A new instance is pending for the model's pending count of Describe
//     calls once visible, and RunInstances answers it pending: EC2 User
//     Guide, "Amazon EC2 instance state changes".
//   - A new EBS snapshot is unknown to PutSnapshotBlock and CompleteSnapshot
//     ("The snapshot ... does not exist", ResourceNotFoundException) for its
//     first snapshotLag calls, as awslabs/coldsnap saw for up to 56 seconds
//     and the EBS team advised retrying for about two minutes
//     (https://github.com/awslabs/coldsnap/issues/43,
//     https://github.com/awslabs/coldsnap/pull/56).
//
// Counts of calls, not durations: tests run in milliseconds, and a count
// makes the window the same however loaded the machine is.

// lag counts, per new resource, how many more looks miss it.
type lag struct{ left map[string]int }

func (l *lag) hide(id string, looks int) {
	if looks > 0 {
		l.left[id] = looks
	}
}

// visible reports whether a look finds id, and spends one look if not.
// The caller holds the model's lock.
func (l *lag) visible(id string) bool {
	n, ok := l.left[id]
	if !ok {
		return true
	}
	if n--; n <= 0 {
		delete(l.left, id)
	} else {
		l.left[id] = n
	}
	return false
}
