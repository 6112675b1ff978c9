package fleet

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// The site's TLS state, as the Cert step keeps it: its names are part of
// the model of what a site owns in AWS, so they live here, beside the tags;
// cert writes them, Destroy removes them, the policy grants them.

// TLSParameterPath is where a site's TLS state lives in Parameter Store: one
// path per site, so the deploy role's policy can grant exactly these.
func TLSParameterPath(site string) string { return "/blog/" + site + "/tls" }

// TLSParameterNames are the site's parameters, full names, in this order:
// the ACME account's key, the certificate chain (leaf first), the
// certificate's private key (all PEM).
func TLSParameterNames(site string) []string {
	p := TLSParameterPath(site)
	return []string{p + "/account-key", p + "/chain", p + "/key"}
}

// ChallengeName is the TXT record DNS-01 uses for name.
func ChallengeName(name string) string { return "_acme-challenge." + strings.TrimSuffix(name, ".") }

// SSMAPI is the part of Parameter Store Destroy uses; *ssm.Client has it.
type SSMAPI interface {
	GetParameters(context.Context, *ssm.GetParametersInput, ...func(*ssm.Options)) (*ssm.GetParametersOutput, error)
	DeleteParameters(context.Context, *ssm.DeleteParametersInput, ...func(*ssm.Options)) (*ssm.DeleteParametersOutput, error)
}

// StoredTLSParameters lists which of the site's TLS parameters exist. It
// asks without decryption: the names are all it needs, never a key.
func StoredTLSParameters(ctx context.Context, api SSMAPI, site string) ([]string, error) {
	out, err := api.GetParameters(ctx, &ssm.GetParametersInput{Names: TLSParameterNames(site), WithDecryption: aws.Bool(false)})
	if err != nil {
		return nil, fmt.Errorf("reading which TLS parameters under %s exist: %w; check the ssm:GetParameters permission (`mage policy`)", TLSParameterPath(site), err)
	}
	var names []string
	for _, want := range TLSParameterNames(site) { // in the order above, whatever the answer's
		for _, p := range out.Parameters {
			if aws.ToString(p.Name) == want {
				names = append(names, want)
			}
		}
	}
	return names, nil
}

// ChallengeRecords reads the TXT record sets at _acme-challenge.<name> for
// each name in zone, exactly as Route53 holds them (a DELETE must match):
// what a Cert run that was killed before its clean-up left.
func ChallengeRecords(ctx context.Context, api Route53Reader, z Zone, names []string) ([]types.ResourceRecordSet, error) {
	var sets []types.ResourceRecordSet
	for _, n := range names {
		fqdn := FQDN(ChallengeName(n))
		if !within(fqdn, z.Name) {
			continue // not in the site's zone: the Cert step never wrote it there
		}
		out, err := api.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
			HostedZoneId: aws.String(z.ID), StartRecordName: aws.String(fqdn), StartRecordType: types.RRTypeTxt, MaxItems: aws.Int32(1),
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s TXT in zone %s: %w; check the route53:ListResourceRecordSets permission", fqdn, z.ID, err)
		}
		for _, rr := range out.ResourceRecordSets {
			if FQDN(unescape(aws.ToString(rr.Name))) == fqdn && rr.Type == types.RRTypeTxt {
				sets = append(sets, rr)
			}
		}
	}
	return sets, nil
}
