package awsmodel

// What Launch and Swap need of EC2 RunInstances and DescribeInstances beyond
// kumo. Each gap was checked against kumo v0.33.1 (internal/service/ec2:
// RunInstances reads no ClientToken; XMLInstance has no dnsName and kumo
// never sets a public address):
//
//   - RunInstances ClientToken: AWS answers a repeated token with the
//     instances it already started, in their current state, instead of
//     starting twins ("Ensuring idempotency in Amazon EC2 API requests",
//     EC2 API Reference). The model remembers the instances each token
//     started, so a repeat finds them even when the first answer was lost,
//     and answers with them.
//   - Public addresses: every instance gets a public IPv4 address in
//     198.18.0.0/15 (RFC 2544's benchmarking range, never routed) derived
//     from its id, and the matching ec2-A-B-C-D.compute-1.amazonaws.com name.

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// withPublicAddress gives an instance its public address and name.
func withPublicAddress(in *xmlInstance) {
	in.IPAddress = PublicIP(in.InstanceID)
	in.DNSName = PublicDNSName(in.IPAddress)
}

// PublicIP is the public IPv4 address the launch front gives an instance.
func PublicIP(instanceID string) string {
	s := sha256.Sum256([]byte(instanceID))
	return fmt.Sprintf("198.%d.%d.%d", 18+int(s[0]&1), s[1], 1+int(s[2])%254)
}

// PublicDNSName is EC2's public name for a public IPv4 address in us-east-1.
func PublicDNSName(ip string) string {
	return "ec2-" + strings.ReplaceAll(ip, ".", "-") + ".compute-1.amazonaws.com"
}
