package awsharness

import (
	"net/http"
	"strings"
)

// Deny makes the harness refuse the given IAM actions ("ec2:RunInstances")
// as AWS refuses a caller whose policy lacks them: EC2 answers
// UnauthorizedOperation (HTTP 403), DryRun calls included, which is how a
// preflight finds a missing permission; Route53 and STS answer AccessDenied;
// the EBS direct APIs AccessDeniedException. It is a fault rule like any other, so
// Faults.Clear lifts it.
func (h *Harness) Deny(actions ...string) {
	for _, a := range actions {
		service, op, ok := strings.Cut(a, ":")
		if !ok || service == "" || op == "" {
			panic("awsharness.Deny: " + a + " is not service:Operation")
		}
		code := "AccessDeniedException"
		switch service {
		case "ec2":
			code = "UnauthorizedOperation"
		case "route53", "sts":
			code = "AccessDenied"
		}
		h.Faults.Add(Fault{Service: service, Operation: op, Kind: Error, Rate: 1, Code: code, Status: http.StatusForbidden})
	}
}
