package cert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	r53provider "github.com/go-acme/lego/v5/providers/dns/route53"
	"github.com/go-acme/lego/v5/registration"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// route53API is what issuing needs of Route53: lego's provider takes the
// client itself, the zone lookup and the sweep of challenge records read.
type route53API interface {
	fleet.Route53Reader
	ChangeResourceRecordSets(context.Context, *route53.ChangeResourceRecordSetsInput, ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
}

// challengeTTL is the challenge record's TTL: short, so a retried
// validation is not answered from a resolver's cache of the last token.
const challengeTTL = 60

// account is the ACME account lego acts for.
type account struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (a *account) GetEmail() string                       { return a.email }
func (a *account) GetRegistration() *acme.ExtendedAccount { return a.reg }
func (a *account) GetPrivateKey() crypto.Signer           { return a.key }

// newAccountKey is an ECDSA P-256 key, as the certificate's.
func newAccountKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// issuer orders one certificate.
type issuer struct {
	directory  string
	email      string
	names      []string
	roots      *x509.CertPool // for the ACME server's TLS
	resolvers  []string
	zones      map[string]fleet.Zone // name → its hosted zone
	r53        *route53.Client
	poll       time.Duration // between looks at the challenge record
	propagate  time.Duration // how long the record may take to be seen
	httpClient *http.Client
	log        *logrus.Entry
	presented  *presented // the challenge values this order wrote
}

// legoMu serialises lego's process-wide settings (its DNS client and
// logger) for the duration of one order.
var legoMu sync.Mutex

// obtain registers (or finds) the account and orders a certificate for the
// names, answering DNS-01 in Route53. lego removes each challenge record
// after its validation, failed or not; sweep catches what it could not.
func (is *issuer) obtain(ctx context.Context, key crypto.Signer) (*certificate.Resource, error) {
	legoMu.Lock()
	defer legoMu.Unlock()
	legolog.SetDefault(slog.New(slog.NewTextHandler(debugWriter{is.log}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if len(is.resolvers) > 0 {
		dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: is.resolvers, Timeout: 5 * time.Second}))
	} else {
		dns01.SetDefaultClient(dns01.NewClient(nil))
	}

	user := &account{email: is.email, key: key}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = is.directory
	cfg.HTTPClient = is.httpClient
	cfg.UserAgent = "unikernel-blog"
	cfg.Certificate.Timeout = 2 * time.Minute
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("reaching the ACME directory %s: %w", is.directory, err)
	}
	// The account key is the account: look it up, register only when the
	// directory has never seen it (a first run, or another directory).
	reg, err := client.Registration.ResolveAccountByKey(ctx)
	if err != nil {
		var pe *acme.ProblemDetails
		if !errors.As(err, &pe) || !strings.HasSuffix(pe.Type, "accountDoesNotExist") {
			return nil, fmt.Errorf("looking up the ACME account at %s: %w", is.directory, err)
		}
		if reg, err = client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
			return nil, fmt.Errorf("registering an ACME account at %s: %w", is.directory, err)
		}
		is.log.Infof("registered an ACME account at %s", is.directory)
	}
	user.reg = reg

	var opts []dns01.ChallengeOption
	if len(is.resolvers) > 0 {
		// Ask only the given servers (the zone's own cannot be reached from
		// a rehearsal or a test).
		opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement())
	} else {
		// Ask the zone's authoritative servers, as the CA will.
		opts = append(opts, dns01.DisableRecursiveNSsPropagationRequirement())
	}
	if err := client.Challenge.SetDNS01Provider(is.provider(), opts...); err != nil {
		return nil, err
	}
	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: is.names, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		return nil, fmt.Errorf("ordering a certificate for %s from %s: %w", strings.Join(is.names, ", "), is.directory, err)
	}
	return res, nil
}

// provider answers each name's challenge in that name's own hosted zone.
func (is *issuer) provider() *zonedProvider {
	p := &zonedProvider{byName: map[string]*r53provider.DNSProvider{}}
	for name, z := range is.zones {
		c := r53provider.NewDefaultConfig()
		c.Client, c.HostedZoneID, c.TTL = is.r53, z.ID, challengeTTL
		c.PollingInterval, c.PropagationTimeout = is.poll, is.propagate
		c.WaitForRecordSetsChanged = true
		d, _ := r53provider.NewDNSProviderConfig(c) // a given client cannot fail
		p.byName[name] = d
	}
	p.timeout, p.poll, p.presented = is.propagate, is.poll, is.presented
	return p
}

// zonedProvider routes lego's Present and CleanUp to the provider of the
// name's zone: an alias may live in another zone than the domain.
type zonedProvider struct {
	byName        map[string]*r53provider.DNSProvider
	timeout, poll time.Duration
	presented     *presented
}

func (p *zonedProvider) get(domain string) (*r53provider.DNSProvider, error) {
	d, ok := p.byName[strings.TrimSuffix(domain, ".")]
	if !ok {
		return nil, fmt.Errorf("no hosted zone known for %s", domain)
	}
	return d, nil
}

func (p *zonedProvider) Present(ctx context.Context, domain, token, keyAuth string) error {
	d, err := p.get(domain)
	if err != nil {
		return err
	}
	if p.presented != nil {
		// Noted before the write: a write whose answer is lost may stand.
		p.presented.add(ChallengeName(domain), challengeValue(ctx, domain, keyAuth))
	}
	return d.Present(ctx, domain, token, keyAuth)
}

func (p *zonedProvider) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	d, err := p.get(domain)
	if err != nil {
		return err
	}
	return d.CleanUp(ctx, domain, token, keyAuth)
}

func (p *zonedProvider) Timeout() (timeout, interval time.Duration) { return p.timeout, p.poll }

// ChallengeName is the TXT record DNS-01 uses for name (fleet.ChallengeName).
func ChallengeName(name string) string { return fleet.ChallengeName(name) }

// challengeValue is the TXT value, as Route53 holds it (quoted), that
// lego's provider writes for keyAuth at domain's challenge name.
func challengeValue(ctx context.Context, domain, keyAuth string) string {
	return `"` + dns01.GetChallengeInfo(ctx, domain, keyAuth).Value + `"`
}

// challengeValues are TXT values by challenge record name (FQDN).
type challengeValues map[string]map[string]bool

func (v challengeValues) add(name, value string) {
	fq := fleet.FQDN(name)
	if v[fq] == nil {
		v[fq] = map[string]bool{}
	}
	v[fq][value] = true
}

func (v challengeValues) union(w challengeValues) challengeValues {
	u := challengeValues{}
	for _, m := range []challengeValues{v, w} {
		for name, vals := range m {
			for val := range vals {
				u.add(name, val)
			}
		}
	}
	return u
}

// presented collects the values an order wrote; lego presents the names'
// challenges from several goroutines.
type presented struct {
	mu sync.Mutex
	v  challengeValues
}

func (p *presented) add(name, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.v == nil {
		p.v = challengeValues{}
	}
	p.v.add(name, value)
}

func (p *presented) values() challengeValues {
	p.mu.Lock()
	defer p.mu.Unlock()
	return challengeValues{}.union(p.v)
}

// challengeSets reads the TXT record set at each name's challenge name
// (fleet.ChallengeRecords, which mage destroy reads them with too).
func challengeSets(ctx context.Context, api route53API, zones map[string]fleet.Zone, each func(z fleet.Zone, fqdn string, rr r53types.ResourceRecordSet)) error {
	byZone := map[fleet.Zone][]string{}
	for name, z := range zones {
		byZone[z] = append(byZone[z], name)
	}
	var errs []error
	for z, names := range byZone {
		sets, err := fleet.ChallengeRecords(ctx, api, z, names)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range sets {
			each(z, fleet.FQDN(aws.ToString(rr.Name)), rr)
		}
	}
	return errors.Join(errs...)
}

// listChallenges is what challenge values stand now.
func listChallenges(ctx context.Context, api route53API, zones map[string]fleet.Zone) (challengeValues, error) {
	v := challengeValues{}
	err := challengeSets(ctx, api, zones, func(_ fleet.Zone, fqdn string, rr r53types.ResourceRecordSet) {
		for _, r := range rr.ResourceRecords {
			v.add(fqdn, aws.ToString(r.Value))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading the challenge records before ordering: %w; check the route53:ListResourceRecordSets permission (`mage policy`)", err)
	}
	return v, nil
}

// sweepTimeout bounds the sweep of challenge records, which runs with a
// fresh context like every undo: a read of each name's TXT record and one
// ChangeResourceRecordSets per set it changes, with no wait for INSYNC
// (nothing after it depends on the deletion being everywhere). That is a
// few round trips, and after Ctrl-C mage leaves no more than
// fleet.CleanupTimeout anyway; what it does not finish the next order's
// sweep (or mage destroy) removes.
const sweepTimeout = fleet.CleanupTimeout

// sweep deletes the challenge values in remove still in the names' zones:
// lego's own clean-up can be cut short (cancelled, killed, a failed call),
// and what a killed run left would stand forever. Any other value (another
// order's, written since remove was drawn up) stays: the set is rewritten
// without it, in one batch that deletes the set exactly as read, which
// Route53 refuses if it changed meanwhile. It runs with a fresh context
// bounded by sweepTimeout, like every undo.
func sweep(ctx context.Context, api route53API, zones map[string]fleet.Zone, remove challengeValues, log *logrus.Entry) error {
	var errs []error
	lerr := challengeSets(ctx, api, zones, func(z fleet.Zone, fqdn string, rr r53types.ResourceRecordSet) {
		var keep []r53types.ResourceRecord
		for _, r := range rr.ResourceRecords {
			if !remove[fqdn][aws.ToString(r.Value)] {
				keep = append(keep, r)
			}
		}
		if len(keep) == len(rr.ResourceRecords) {
			return
		}
		changes := []r53types.Change{{Action: r53types.ChangeActionDelete, ResourceRecordSet: &rr}}
		if len(keep) > 0 {
			rest := rr
			rest.ResourceRecords = keep
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &rest})
		}
		_, err := api.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(z.ID),
			ChangeBatch:  &r53types.ChangeBatch{Comment: aws.String("blog: leftover ACME challenges"), Changes: changes},
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", fqdn, err))
			return
		}
		log.Infof("removed %d leftover challenge value(s) at %s; %d of another order kept", len(rr.ResourceRecords)-len(keep), fqdn, len(keep))
	})
	return errors.Join(append(errs, lerr)...)
}

// acmeHTTPClient speaks to the ACME server trusting roots (the system's and
// acme_roots), with lego's own timeouts.
func acmeHTTPClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		},
	}
}

// debugWriter puts lego's log lines into the step's log at debug level.
type debugWriter struct{ log *logrus.Entry }

func (w debugWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.log.WithField("tool", "lego").Debug(string(line))
	}
	return len(p), nil
}
