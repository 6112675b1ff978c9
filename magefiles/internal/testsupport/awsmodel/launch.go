package awsmodel

// What Launch and Swap need of EC2 RunInstances beyond kumo, checked against
// kumo v0.33.1 (internal/service/ec2: RunInstances reads no ClientToken):
//
//   - RunInstances ClientToken: AWS answers a repeated token with the
//     instances it already started, in their current state, instead of
//     starting twins ("Ensuring idempotency in Amazon EC2 API requests",
//     https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html).
//     The model remembers the instances each token started, so a repeat finds
//     them even when the first answer was lost, and answers with them.
//
// Public addresses follow eip.go's rules; new instances consistency.go's.
