package cert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// ssmAPI is the part of Parameter Store the step uses; *ssm.Client has it.
type ssmAPI interface {
	GetParameters(context.Context, *ssm.GetParametersInput, ...func(*ssm.Options)) (*ssm.GetParametersOutput, error)
	PutParameter(context.Context, *ssm.PutParameterInput, ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
}

// ParameterPath is where a site's TLS state lives in Parameter Store
// (fleet owns the names: Destroy removes them, the policy grants them).
func ParameterPath(site string) string { return fleet.TLSParameterPath(site) }

// ParameterNames are the site's parameters, full names: the account key,
// the chain, the key (fleet.TLSParameterNames).
func ParameterNames(site string) []string { return fleet.TLSParameterNames(site) }

// maxParameter is the Standard tier's value limit (free; Advanced costs):
// an ECDSA chain of leaf and intermediate is about 2.5 KB.
const maxParameter = 4096

// stored is what Parameter Store holds for the site.
type stored struct {
	AccountKey crypto.Signer // nil: no account yet
	Chain      []byte        // PEM, leaf first; nil: no certificate yet
	Key        []byte        // PEM
}

// load reads the site's parameters in one call; missing ones stay empty.
func load(ctx context.Context, api ssmAPI, site string) (stored, error) {
	names := ParameterNames(site)
	out, err := api.GetParameters(ctx, &ssm.GetParametersInput{Names: names, WithDecryption: aws.Bool(true)})
	if err != nil {
		return stored{}, fmt.Errorf("reading the certificate's parameters under %s from SSM Parameter Store: %w; check the ssm:GetParameters permission (`mage policy`)", ParameterPath(site), err)
	}
	var s stored
	for _, p := range out.Parameters {
		v := []byte(aws.ToString(p.Value))
		switch aws.ToString(p.Name) {
		case names[0]:
			k, err := parseKey(v)
			if err != nil {
				return stored{}, fmt.Errorf("the ACME account key in %s does not parse (%v); delete the parameter (aws ssm delete-parameter --name %s) and a new account is registered", aws.ToString(p.Name), err, aws.ToString(p.Name))
			}
			s.AccountKey = k
		case names[1]:
			s.Chain = v
		case names[2]:
			s.Key = v
		}
	}
	return s, nil
}

// put writes one parameter as a SecureString under the account's
// AWS-managed key (alias/aws/ssm: free, and no key policy to set up).
// overwrite false makes it a create: ParameterAlreadyExists when another
// run got there first.
func put(ctx context.Context, api ssmAPI, name string, value []byte, overwrite bool) error {
	if len(value) > maxParameter {
		return fmt.Errorf("%s would hold %d bytes, over the %d of a Standard-tier parameter", name, len(value), maxParameter)
	}
	_, err := api.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(string(value)), Type: ssmtypes.ParameterTypeSecureString,
		Overwrite: aws.Bool(overwrite), Tier: ssmtypes.ParameterTierStandard,
		Description: aws.String("TLS state of the blog, written by `mage cert`"),
	})
	if err != nil && !fleet.HasCode(err, "ParameterAlreadyExists") {
		return fmt.Errorf("writing %s to SSM Parameter Store: %w; check the ssm:PutParameter permission (`mage policy`)", name, err)
	}
	return err
}

func parseKey(p []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		if ec, err2 := x509.ParseECPrivateKey(b.Bytes); err2 == nil {
			return ec, nil
		}
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T is not a signing key", k)
	}
	return s, nil
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Current is a stored certificate, parsed and checked against its key.
type Current struct {
	Leaf          *x509.Certificate
	Intermediates []*x509.Certificate
	Chain, Key    []byte
}

// parseCurrent reads a chain and its key; an error says why they are unusable.
func parseCurrent(chain, key []byte) (*Current, error) {
	certs, err := config.ParseCertificates(chain)
	if err != nil {
		return nil, fmt.Errorf("the stored chain holds a certificate that does not parse: %v", err)
	}
	c := &Current{Chain: chain, Key: key}
	if len(certs) > 0 {
		c.Leaf, c.Intermediates = certs[0], certs[1:]
	}
	if c.Leaf == nil {
		return nil, errors.New("the stored chain holds no certificate")
	}
	k, err := parseKey(key)
	if err != nil {
		return nil, fmt.Errorf("the stored private key does not parse: %v", err)
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || !pub.Equal(c.Leaf.PublicKey) {
		return nil, errors.New("the stored private key is not the certificate's (a write was interrupted)")
	}
	return c, nil
}

// problem says why the certificate does not serve names at now, trusted by
// roots, with at least renewBefore left; "" when it does.
func (c *Current) problem(names []string, roots *x509.CertPool, now time.Time, renewBefore time.Duration) string {
	for _, n := range names {
		if err := c.Leaf.VerifyHostname(n); err != nil {
			return fmt.Sprintf("it does not cover %s", n)
		}
	}
	inter := x509.NewCertPool()
	for _, i := range c.Intermediates {
		inter.AddCert(i)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
		return fmt.Sprintf("it does not verify (%v; issued by another ACME directory?)", err)
	}
	if left := c.Leaf.NotAfter.Sub(now); left < renewBefore {
		return fmt.Sprintf("%s left, under the %s renewal threshold", left.Round(time.Hour), renewBefore)
	}
	return ""
}
