// Package cert is the Cert step: the site's TLS certificate, from an ACME
// CA (Let's Encrypt by default) with the DNS-01 challenge answered in the
// site's Route53 zones, kept in SSM Parameter Store between runs, and handed
// on to the steps that put it into the kernel or the image.
//
// The recipe (Issue): with https off, pass the site's build on and remove
// any certificate files; otherwise find each name's hosted zone, read the
// account key, chain and key from Parameter Store, and order a certificate
// (ECDSA P-256, names domain then aliases) only when the stored one does not
// cover the names, does not verify, or has fewer than 30 days left. A failed
// order with a stored certificate that still has at least 7 days left is a
// warning; otherwise the step fails, before anything is launched. An order
// is made holding the site's deploy lease, the parameters read again under
// it (see ensure). Challenge records are removed after every order, failed
// or not. The chain and key
// go to _build/cert/ (owner-only) and the receipt _build/cert.json names
// them with their digest, so a renewal is a new image.
package cert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "cert"

const (
	// RenewBefore is when a certificate is renewed: Let's Encrypt's own
	// advice (a third of a 90-day life), and it leaves three weeks of
	// weekly scheduled runs to get through a failing CA.
	RenewBefore = 30 * 24 * time.Hour
	// GraceMin is the least a certificate must have left for a failed
	// renewal to be a warning: a week, one scheduled run.
	GraceMin = 7 * 24 * time.Hour
)

// Receipt records the certificate the image goes out with: _build/cert.json.
// It holds paths and digests, never key material.
type Receipt struct {
	BuildID string `json:"build_id"` // the site build, carried on from site.json
	Commit  string `json:"commit"`
	SiteDir string `json:"site_dir"`

	HTTPS      bool     `json:"https"`
	Domain     string   `json:"domain,omitempty"`
	Aliases    []string `json:"aliases,omitempty"`
	HSTSMaxAge int64    `json:"hsts_max_age,omitempty"`
	ChainFile  string   `json:"chain_file,omitempty"` // PEM, leaf first
	KeyFile    string   `json:"key_file,omitempty"`   // PEM, mode 0600
	// SHA256 is the digest of chain and key together: what the kernel or
	// image depends on.
	SHA256   string    `json:"sha256,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Issued   bool      `json:"issued"`            // ordered by this run
	Warning  string    `json:"warning,omitempty"` // a failed renewal this run carried on through
}

// TLS is what a server needs of the receipt, nil with https off.
func (r *Receipt) TLS() *TLS {
	if r == nil || !r.HTTPS {
		return nil
	}
	return &TLS{Domain: r.Domain, Aliases: r.Aliases, HSTSMaxAge: r.HSTSMaxAge, ChainFile: r.ChainFile, KeyFile: r.KeyFile, SHA256: r.SHA256}
}

// TLS is the certificate and how to serve it, as later receipts carry it.
type TLS struct {
	Domain     string   `json:"domain"`
	Aliases    []string `json:"aliases,omitempty"`
	HSTSMaxAge int64    `json:"hsts_max_age"`
	ChainFile  string   `json:"chain_file"`
	KeyFile    string   `json:"key_file"`
	SHA256     string   `json:"sha256"`
}

// ReadReceipt loads _build/cert.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "cert", "no certificate step run", "run `mage cert`")
}

// StampedBuildID is the build id _site carries (the Site step's stamp), for
// the steps after this one that check the site on disk.
func StampedBuildID(siteDir string) string { return site.StampedBuildID(siteDir) }

// Options configure the step. Config is required.
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	// Now is the clock certificates are judged by; default time.Now.
	Now func() time.Time
	// Poll and Propagation bound the wait for the challenge record to be
	// visible: defaults fleet.ChangeInsync's interval (2 s) and 2 min
	// (Route53 propagates within 60 s).
	Poll, Propagation time.Duration
	// Publish is set for a deploy. A local build (mage image, mage run)
	// without AWS credentials gets a throwaway self-signed certificate
	// instead of failing; a deploy always gets the CA's.
	Publish    bool
	AWSOptions []func(*awsconfig.LoadOptions) error
	// Certified is what Certificate returned beside the Site step; nil
	// makes Issue find the certificate itself.
	Certified *Receipt
	// Lease tunes the site's deploy lease, which an order is made under
	// (its Op and Wait are set here).
	Lease fleet.LeaseOptions
}

// Dir is where the chain and key are written for the later steps.
func Dir(buildDir string) string { return filepath.Join(buildDir, "cert") }

// Issue makes sure a valid certificate for the site's names is at hand and
// writes _build/cert.json. Options.Certified, when set, is the certificate
// Certificate found beside the Site step: Issue then only passes the site's
// build on with it.
func Issue(ctx context.Context, o Options) (*Receipt, error) {
	c := o.Config
	if c == nil {
		return nil, errors.New("cert: no configuration given")
	}
	built, err := site.ReadReceipt(c.BuildDir())
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	r := o.Certified
	if r == nil {
		if r, err = Certificate(ctx, o); err != nil {
			return nil, err
		}
	}
	rc := *r
	rc.BuildID, rc.Commit, rc.SiteDir = built.BuildID, built.Commit, c.SiteDir()
	if err := receipt.Write(c.BuildDir(), ReceiptName, &rc); err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	return &rc, nil
}

// Certificate is the part of the step that needs nothing of the site: the
// certificate at hand for the names (the stored one, a new order, or for a
// local build without credentials a self-signed one), written to
// _build/cert/, and the receipt without the site's build. `mage deploy`
// runs it beside the Site step, as the two share nothing; Issue completes it.
func Certificate(ctx context.Context, o Options) (*Receipt, error) {
	c := o.Config
	if c == nil {
		return nil, errors.New("cert: no configuration given")
	}
	log := fleet.StepLog(o.Log, "cert")
	r := &Receipt{HTTPS: c.HTTPS}
	if !c.HTTPS {
		// No certificate may linger in _build once HTTPS is off.
		if err := os.RemoveAll(Dir(c.BuildDir())); err != nil {
			return nil, fmt.Errorf("cert: removing %s: %w", Dir(c.BuildDir()), err)
		}
		log.Info("https is off: no certificate, the site is served over plain HTTP")
		return r, nil
	}
	if err := c.Require("cert", "domain"); err != nil {
		return nil, err
	}
	roots, err := config.TrustedRoots(c)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	st := &step{o: o, c: c, log: log, roots: roots, now: now}
	awsCfg, err := awscfg.LoadWithCredentials(ctx, c, "cert", o.AWSOptions...)
	var cur *Current
	switch {
	case err != nil && o.Publish:
		return nil, fmt.Errorf("%w; the certificate (https: true, the default) needs AWS: for a local rehearsal without it set https: false (%s=false)", err, config.EnvVar("https"))
	case err != nil:
		log.WithError(err).Warnf("no AWS credentials: a throwaway self-signed certificate for %s serves this local build (browsers will warn); a deploy gets the CA's", strings.Join(c.Names(), ", "))
		if cur, err = selfSigned(c.Names(), now()); err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
	default:
		st.ssm, st.r53 = ssm.NewFromConfig(awsCfg), route53.NewFromConfig(awsCfg)
		if cur, err = st.ensure(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := st.writeFiles(cur, r); err != nil {
		return nil, err
	}
	return r, nil
}

type step struct {
	o     Options
	c     *config.Config
	log   *logrus.Entry
	roots *x509.CertPool
	now   func() time.Time
	ssm   ssmAPI
	r53   *route53.Client
}

// ensure returns the certificate to serve: the stored one when it will do,
// else a new one (or, when ordering fails, a stored one with a week left).
//
// Reading needs no lease. Everything an order changes in AWS (the account
// key, the challenge records and their sweep, the key and chain) is done
// holding the site's deploy lease, taken only when an order is due and
// released before the later steps take it again: so two runs never order
// at once, and never interleave their writes of key and chain. Under the
// lease the parameters are read again: the run that held it before may
// have just stored what this one needs, and then nothing is ordered.
func (s *step) ensure(ctx context.Context, r *Receipt) (*Current, error) {
	names := s.c.Names()
	r.Domain, r.Aliases, r.HSTSMaxAge = s.c.Domain, s.c.Aliases, s.c.HSTSMaxAge
	have, cur, why, err := s.stored(ctx)
	if err != nil {
		return nil, err
	}
	if why == "" {
		s.reuse(cur)
		return cur, nil
	}
	s.log.Infof("a certificate for %s is needed (%s): ordering it holding the site's deploy lease", strings.Join(names, ", "), why)
	var fresh *Current
	orderErr := fleet.WithLease(ctx, fleet.Options{Config: s.c, Log: s.o.Log, Lease: s.o.Lease, AWSOptions: s.o.AWSOptions}, "cert", func(ctx context.Context) error {
		again, cur2, why2, err := s.stored(ctx)
		if err != nil {
			return err
		}
		if cur2 != nil {
			cur = cur2 // a week's grace is judged on the newest stored
		}
		if have, why = again, why2; why == "" {
			s.log.Info("another run stored a certificate meanwhile")
			s.reuse(cur)
			fresh = cur
			return nil
		}
		s.log.Infof("ordering a certificate for %s from %s: %s", strings.Join(names, ", "), s.c.ACMEDirectory, why)
		if fresh, err = s.order(ctx, have.AccountKey); err != nil {
			return err
		}
		r.Issued = true
		return nil
	})
	if orderErr == nil {
		return fresh, nil
	}
	// A failed order: carry on with a stored certificate that still serves
	// the names for a week (the next scheduled run tries again), else stop.
	if cur != nil && cur.problem(names, s.roots, s.now(), GraceMin) == "" {
		left := cur.Leaf.NotAfter.Sub(s.now()).Round(time.Hour)
		r.Warning = fmt.Sprintf("renewing the certificate failed (%v); the current one has %s left and is used meanwhile", orderErr, left)
		s.log.Warnf("%s; fix the cause before it runs out: %s", r.Warning, fixFor(s.c))
		return cur, nil
	}
	return nil, fmt.Errorf("cert: %w; no stored certificate has %s left to fall back on (%s), so nothing is launched; %s", orderErr, GraceMin, why, fixFor(s.c))
}

// stored reads the site's parameters and judges the certificate: cur is
// nil unless chain and key parse and belong together (a key of one order
// with the chain of another never serves: it reads as no certificate), and
// why is "" when cur serves the names for longer than RenewBefore.
func (s *step) stored(ctx context.Context) (have stored, cur *Current, why string, err error) {
	if have, err = load(ctx, s.ssm, s.c.Site); err != nil {
		return stored{}, nil, "", fmt.Errorf("cert: %w", err)
	}
	why = "none is stored yet"
	if have.Chain != nil || have.Key != nil {
		if cur, err = parseCurrent(have.Chain, have.Key); err != nil {
			return have, nil, err.Error(), nil
		}
		why = cur.problem(s.c.Names(), s.roots, s.now(), RenewBefore)
	}
	return have, cur, why, nil
}

func (s *step) reuse(cur *Current) {
	s.log.WithFields(logrus.Fields{"serial": serial(cur), "not_after": cur.Leaf.NotAfter.Format(time.RFC3339)}).
		Infof("certificate for %s valid until %s; no order needed", strings.Join(s.c.Names(), ", "), cur.Leaf.NotAfter.Format("2006-01-02"))
}

// fixFor names the usual causes of a failed order.
func fixFor(c *config.Config) string {
	return fmt.Sprintf("check that the ACME directory %s is reachable (acme_directory; acme_roots for a private CA), "+
		"that the hosted zone of each name (%s) is the one the domain is delegated to and the deploy role may change its _acme-challenge TXT records (`mage policy`), "+
		"and the CA's rate limits (Let's Encrypt: 5 certificates per week for the same names; rehearse with acme_directory: %s)",
		c.ACMEDirectory, strings.Join(c.Names(), ", "), config.LetsEncryptStaging)
}

// order makes the account key if there is none, then orders, then stores
// the result. Challenge records are swept whatever happens.
func (s *step) order(ctx context.Context, accountKey crypto.Signer) (cur *Current, err error) {
	// Every name's challenge goes into the domain's zone, the one zone the
	// deploy role may write to (`mage policy`).
	z, err := fleet.FindZone(ctx, s.r53, s.c.Domain, s.c.HostedZoneID)
	if err != nil {
		return nil, fmt.Errorf("finding the hosted zone of %s: %w", s.c.Domain, err)
	}
	zones := map[string]fleet.Zone{}
	for _, n := range s.c.Names() {
		if fq := fleet.FQDN(n); fq != z.Name && !strings.HasSuffix(fq, "."+z.Name) {
			return nil, fmt.Errorf("alias %s is not in %s, the hosted zone of %s; the certificate's challenges are answered in that zone only: use aliases under %s, or drop %s from deploy.aliases", n, z.Name, s.c.Domain, z.Name, n)
		}
		zones[n] = z
	}
	if accountKey == nil {
		k, err := newAccountKey()
		if err != nil {
			return nil, err
		}
		pemKey, err := encodeKey(k)
		if err != nil {
			return nil, err
		}
		name := ParameterNames(s.c.Site)[0]
		switch err := put(ctx, s.ssm, name, pemKey, false); {
		case fleet.HasCode(err, "ParameterAlreadyExists"):
			// Another run made one meanwhile: use that account.
			have, err := load(ctx, s.ssm, s.c.Site)
			if err != nil || have.AccountKey == nil {
				return nil, fmt.Errorf("%s exists but could not be read back: %v", name, err)
			}
			k = have.AccountKey
		case err != nil:
			return nil, err
		}
		accountKey = k
	}
	// What challenge values stand before this order are leftovers of runs
	// that no longer order: every order is made holding the lease, which
	// this run holds now. The sweep after the order removes those and this
	// run's own, and nothing that appeared meanwhile: a run that lost its
	// lease (suspended past its expiry) and still orders keeps its record.
	before, err := listChallenges(ctx, s.r53, zones)
	if err != nil {
		return nil, err
	}
	mine := &presented{}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepTimeout)
		defer cancel()
		if serr := sweep(cctx, s.r53, zones, before.union(mine.values()), s.log); serr != nil {
			s.log.WithError(serr).Warn("removing leftover ACME challenge records failed; they are harmless TXT records: delete them in the Route53 console, or the next order removes them")
		}
	}()
	poll, prop := s.o.Poll, s.o.Propagation
	if poll <= 0 {
		// lego waits for the challenge record's change to be INSYNC
		// (GetChange), then for the zone's servers to show it, looking at
		// this interval: the pace of every Route53 wait here.
		poll = fleet.ChangeInsync.Every
	}
	if prop <= 0 {
		prop = 2 * time.Minute
	}
	is := &issuer{
		directory: s.c.ACMEDirectory, email: s.c.ACMEEmail, names: s.c.Names(), roots: s.roots,
		resolvers: s.c.ACMEResolvers, zones: zones, r53: s.r53, poll: poll, propagate: prop,
		httpClient: acmeHTTPClient(s.roots), log: s.log, presented: mine,
	}
	res, err := is.obtain(ctx, accountKey)
	if err != nil {
		return nil, err
	}
	cur, err = parseCurrent(res.Certificate, res.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate is unusable: %w", err)
	}
	if p := cur.problem(s.c.Names(), s.roots, s.now(), 0); p != "" {
		return nil, fmt.Errorf("the CA issued a certificate that cannot be served: %s; for a private CA, add its root to acme_roots", p)
	}
	// The key first: a run stopped between the two writes leaves a chain
	// whose key does not match, which the next run reads as "none stored".
	names := ParameterNames(s.c.Site)
	if err := put(ctx, s.ssm, names[2], cur.Key, true); err != nil {
		return nil, err
	}
	if err := put(ctx, s.ssm, names[1], cur.Chain, true); err != nil {
		return nil, err
	}
	s.log.WithFields(logrus.Fields{"serial": serial(cur), "not_after": cur.Leaf.NotAfter.Format(time.RFC3339)}).
		Infof("issued a certificate for %s, valid until %s; stored under %s", strings.Join(s.c.Names(), ", "), cur.Leaf.NotAfter.Format("2006-01-02"), ParameterPath(s.c.Site))
	return cur, nil
}

// writeFiles puts the chain and key under _build/cert, readable by the
// owner only, rewriting them only when they change.
func (s *step) writeFiles(cur *Current, r *Receipt) error {
	dir := Dir(s.c.BuildDir())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	r.ChainFile, r.KeyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{{r.ChainFile, cur.Chain}, {r.KeyFile, cur.Key}} {
		if old, err := os.ReadFile(f.path); err == nil && string(old) == string(f.data) {
			if err := os.Chmod(f.path, 0o600); err != nil {
				return fmt.Errorf("cert: %w", err)
			}
			continue
		}
		if err := receipt.WriteFileAtomic(f.path, f.data, 0o600); err != nil {
			return fmt.Errorf("cert: writing %s: %w", f.path, err)
		}
	}
	h := sha256.New()
	h.Write(cur.Chain)
	h.Write(cur.Key)
	r.SHA256 = hex.EncodeToString(h.Sum(nil))
	r.Serial, r.NotAfter = serial(cur), cur.Leaf.NotAfter
	return nil
}

func serial(c *Current) string { return c.Leaf.SerialNumber.Text(16) }

// localValidity is how long a local build's self-signed certificate lasts:
// long enough for a rehearsal, too short to be mistaken for anything else.
const localValidity = 7 * 24 * time.Hour

// selfSigned is a throwaway certificate for names, for a local build that
// cannot reach the CA's store: ECDSA P-256 like the CA's, its own issuer.
func selfSigned(names []string, now time.Time) (*Current, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"local build, not for readers"}},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(localValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return parseCurrent(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}
