package cert_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/acmetest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// env is a site with a hosted zone in the emulator and a real ACME CA.
type env struct {
	t    *testing.T
	h    *awsharness.Harness
	ca   *acmetest.CA
	c    *config.Config
	zone string
	log  *bytes.Buffer
	// skew moves the step's clock (certificates are judged by it) ahead.
	skew time.Duration
}

func newEnv(t *testing.T, validity time.Duration) *env {
	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1})
	ca := acmetest.Start(t, h.Model, acmetest.Options{Validity: validity})
	base := awsharness.UniqueName("tls") + ".example"
	out, err := h.Route53(t).CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	c := &config.Config{
		Root: t.TempDir(), Region: awsharness.Region, Site: awsharness.UniqueName("site"),
		Domain: "blog." + base, Aliases: []string{"www." + base},
		HTTPS: true, ACMEDirectory: ca.Directory, ACMERoots: ca.RootsFile, ACMEResolvers: []string{ca.DNS},
		HSTSMaxAge: 3600, LeaseWait: time.Minute, Source: map[string]string{},
	}
	if err := receipt.Write(c.BuildDir(), site.ReceiptName, &site.Receipt{BuildID: "b1", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, h: h, ca: ca, c: c, zone: strings.TrimPrefix(aws.ToString(out.HostedZone.Id), "/hostedzone/"), log: &bytes.Buffer{}}
}

func (e *env) options() cert.Options {
	l := logrus.New()
	l.SetOutput(e.log)
	l.SetLevel(logrus.DebugLevel)
	return cert.Options{Config: e.c, Log: l.WithField("step", "cert"), Now: func() time.Time { return time.Now().Add(e.skew) },
		Poll: 20 * time.Millisecond, Propagation: 2 * time.Second, Lease: fleet.LeaseOptions{Poll: 5 * time.Millisecond},
		AWSOptions: []func(*awsconfig.LoadOptions) error{fleettest.FastRetries}}
}

func (e *env) issue() (*cert.Receipt, error) {
	return cert.Issue(context.Background(), e.options())
}

func (e *env) mustIssue() *cert.Receipt {
	e.t.Helper()
	r, err := e.issue()
	if err != nil {
		e.t.Fatalf("cert: %v\nlog:\n%s", err, e.log)
	}
	return r
}

// challengeRecords lists the record sets left at the names' _acme-challenge names.
func (e *env) challengeRecords() []string {
	e.t.Helper()
	var left []string
	for _, n := range e.c.Names() {
		for _, s := range e.h.Model.Records(e.zone, cert.ChallengeName(n)) {
			left = append(left, s.Name+" "+s.Type)
		}
	}
	return left
}

// served parses the chain and key the receipt names and checks them as a
// reader's client would: a chain to Pebble's root for every name.
func (e *env) served(r *cert.Receipt) *x509.Certificate {
	e.t.Helper()
	for _, f := range []string{r.ChainFile, r.KeyFile} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			e.t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode())
		}
	}
	if st, err := os.Stat(filepath.Dir(r.KeyFile)); err != nil || st.Mode().Perm() != 0o700 {
		e.t.Fatalf("%s: mode %v, want 0700", filepath.Dir(r.KeyFile), st.Mode())
	}
	chain, _ := os.ReadFile(r.ChainFile)
	var certs []*x509.Certificate
	for rest := chain; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			e.t.Fatal(err)
		}
		certs = append(certs, x)
	}
	if len(certs) < 2 {
		e.t.Fatalf("chain of %d certificates, want leaf and intermediate", len(certs))
	}
	inter := x509.NewCertPool()
	for _, x := range certs[1:] {
		inter.AddCert(x)
	}
	for _, n := range e.c.Names() {
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: n, Roots: e.ca.Pool(), Intermediates: inter}); err != nil {
			e.t.Errorf("certificate does not verify for %s against Pebble's root: %v", n, err)
		}
	}
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		e.t.Errorf("certificate key %T, want ECDSA P-256", certs[0].PublicKey)
	}
	return certs[0]
}

// TestIssueThenReuse: the first run orders a certificate for domain and
// alias, validated by Pebble over DNS-01 in the emulator's zone, stores it
// as SecureStrings and removes its challenge records; the second run reuses
// it: no order, no write, no record change.
func TestIssueThenReuse(t *testing.T) {
	e := newEnv(t, 0)
	r := e.mustIssue()
	if !r.Issued || e.ca.Orders() != 1 || r.BuildID != "b1" || r.Commit != "c1" || r.Domain != e.c.Domain {
		t.Fatalf("first run: receipt %+v, %d orders", r, e.ca.Orders())
	}
	leaf := e.served(r)
	asked := strings.Join(e.ca.Asked(), " ")
	for _, n := range e.c.Names() {
		if !strings.Contains(asked, cert.ChallengeName(n)) {
			t.Errorf("the DNS server was never asked for %s (asked: %s)", cert.ChallengeName(n), asked)
		}
	}
	if left := e.challengeRecords(); len(left) > 0 {
		t.Errorf("challenge records left in the zone: %v", left)
	}
	for _, name := range cert.ParameterNames(e.c.Site) {
		p, ok := e.h.Model.SSMParameter(name)
		if !ok || p.Type != "SecureString" || p.KeyID != "alias/aws/ssm" {
			t.Errorf("parameter %s: %+v (found %v); want a SecureString under alias/aws/ssm", name, p, ok)
		}
	}

	e.h.Calls.Reset()
	again := e.mustIssue()
	if again.Issued || e.ca.Orders() != 1 || again.SHA256 != r.SHA256 || again.Serial != leaf.SerialNumber.Text(16) {
		t.Fatalf("second run: issued %v, %d orders, sha %s vs %s", again.Issued, e.ca.Orders(), again.SHA256, r.SHA256)
	}
	for _, op := range []string{"ssm:PutParameter", "route53:ChangeResourceRecordSets", "route53:ListHostedZones"} {
		svc, name, _ := strings.Cut(op, ":")
		if n := e.h.Calls.Count(svc, name); n != 0 {
			t.Errorf("an unchanged run called %s %d times", op, n)
		}
	}
}

// TestRenewsTwentyDaysBeforeExpiry: a stored certificate with 20 days left
// (under the 30-day threshold) is replaced by a new order.
func TestRenewsTwentyDaysBeforeExpiry(t *testing.T) {
	e := newEnv(t, 20*24*time.Hour)
	first := e.mustIssue()
	if left := time.Until(first.NotAfter); left > 20*24*time.Hour || left < 19*24*time.Hour {
		t.Fatalf("first certificate has %s left, want 20 days", left)
	}
	second := e.mustIssue()
	if !second.Issued || e.ca.Orders() != 2 || second.Serial == first.Serial || second.SHA256 == first.SHA256 {
		t.Fatalf("renewal: issued %v, %d orders, serial %s then %s", second.Issued, e.ca.Orders(), first.Serial, second.Serial)
	}
	if p, _ := e.h.Model.SSMParameter(cert.ParameterNames(e.c.Site)[1]); p.Version != 2 {
		t.Errorf("stored chain at version %d, want 2 (overwritten once)", p.Version)
	}
	if !strings.Contains(e.log.String(), "under the 720h0m0s renewal threshold") {
		t.Errorf("the log does not say why it renewed:\n%s", e.log)
	}
}

// TestACMEDownWithValidCertificateWarns: renewal is due (25 days left) but
// the CA is down; a week or more remains, so the step carries on with the
// stored certificate and says so.
func TestACMEDownWithValidCertificateWarns(t *testing.T) {
	e := newEnv(t, 0)
	first := e.mustIssue()
	e.skew = time.Until(first.NotAfter.Add(-25 * 24 * time.Hour))
	e.ca.Down(true)
	r := e.mustIssue()
	if r.Issued || r.Warning == "" || r.SHA256 != first.SHA256 || e.ca.Orders() != 1 {
		t.Fatalf("receipt %+v", r)
	}
	if !strings.Contains(e.log.String(), "level=warning") || !strings.Contains(e.log.String(), "600h0m0s left and is used meanwhile") {
		t.Errorf("no warning naming the time left:\n%s", e.log)
	}
	// Six days left: no longer enough to carry on.
	e.skew = time.Until(first.NotAfter.Add(-6 * 24 * time.Hour))
	if _, err := e.issue(); err == nil || !strings.Contains(err.Error(), "nothing is launched") {
		t.Fatalf("with 6 days left and the CA down: %v", err)
	}
}

// TestACMEDownWithoutCertificateFails: nothing stored and the CA down: the
// step fails with the ACME error and the fix, and writes no receipt.
func TestACMEDownWithoutCertificateFails(t *testing.T) {
	e := newEnv(t, 0)
	e.ca.Down(true)
	_, err := e.issue()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{e.ca.Directory, "503", "acme_directory", "nothing is launched"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if ok, _ := receipt.Read(e.c.BuildDir(), cert.ReceiptName, &cert.Receipt{}); ok {
		t.Error("a receipt was written")
	}
	if _, ok := e.h.Model.SSMParameter(cert.ParameterNames(e.c.Site)[1]); ok {
		t.Error("a chain was stored")
	}
}

// TestChallengeRecordsRemovedOnFailure: the alias's challenge is never
// visible (its zone does not answer), so the order fails; the domain's
// record, presented too, is removed all the same. A record an earlier,
// killed run left behind is swept by the next order.
func TestChallengeRecordsRemovedOnFailure(t *testing.T) {
	e := newEnv(t, 0)
	stale := cert.ChallengeName(e.c.Domain) + "."
	_, err := e.h.Route53(t).ChangeResourceRecordSets(context.Background(), &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(e.zone),
		ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{
			Name: aws.String(stale), Type: r53types.RRTypeTxt, TTL: aws.Int64(60), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(`"left-by-a-killed-run"`)}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ca.Hide(cert.ChallengeName(e.c.Aliases[0]))
	if _, err := e.issue(); err == nil || !strings.Contains(err.Error(), e.c.Aliases[0]) {
		t.Fatalf("an order whose challenge is never visible: %v", err)
	}
	if left := e.challengeRecords(); len(left) > 0 {
		t.Fatalf("challenge records left after a failed order: %v\n%s", left, e.log)
	}
}

// TestHTTPSOffNeedsNoCertificate: https: false passes the build on, calls
// no AWS API and removes certificate files an earlier run wrote.
func TestHTTPSOffNeedsNoCertificate(t *testing.T) {
	e := newEnv(t, 0)
	r := e.mustIssue()
	e.c.HTTPS = false
	e.h.Calls.Reset()
	off := e.mustIssue()
	if off.HTTPS || off.TLS() != nil || off.BuildID != "b1" || len(e.h.Calls.Calls()) != 0 {
		t.Fatalf("receipt %+v, calls %v", off, e.h.Calls.Calls())
	}
	if _, err := os.Stat(r.KeyFile); !os.IsNotExist(err) {
		t.Errorf("the key file is still there: %v", err)
	}
}

// TestNoKeyInLogsOrReceipt: at debug level, with lego's own lines, neither
// private key reaches the log, and the receipt holds none.
func TestNoKeyInLogsOrReceipt(t *testing.T) {
	e := newEnv(t, 0)
	r := e.mustIssue()
	key, _ := os.ReadFile(r.KeyFile)
	account, _ := e.h.Model.SSMParameter(cert.ParameterNames(e.c.Site)[0])
	rec, _ := os.ReadFile(receipt.Path(e.c.BuildDir(), cert.ReceiptName))
	for what, secret := range map[string][]byte{"certificate key": key, "account key": []byte(account.Value)} {
		b, _ := pem.Decode(secret)
		if b == nil {
			t.Fatalf("%s is not PEM", what)
		}
		body := strings.Split(strings.TrimSpace(string(secret)), "\n")[1] // a line of the base64 body
		for where, text := range map[string]string{"log": e.log.String(), "receipt": string(rec)} {
			if strings.Contains(text, body) || strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("the %s shows the %s", where, what)
			}
		}
	}
	if !strings.Contains(e.log.String(), "tool=lego") {
		t.Error("lego's lines did not reach the debug log (the check above would prove nothing)")
	}
}

// TestLocalBuildWithoutAWSGetsASelfSignedCertificate: `mage image` or `mage
// run` on a laptop without AWS credentials still builds, with a throwaway
// certificate for the site's names; a deploy in the same state fails with
// the fix instead.
func TestLocalBuildWithoutAWSGetsASelfSignedCertificate(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_REGION": "eu-west-1",
	} {
		t.Setenv(k, v)
	}
	c := &config.Config{Root: t.TempDir(), Site: "blog", Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HTTPS: true, HSTSMaxAge: 60, Source: map[string]string{}}
	if err := receipt.Write(c.BuildDir(), site.ReceiptName, &site.Receipt{BuildID: "b1", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	now := time.Now()
	r, err := cert.Issue(context.Background(), cert.Options{Config: c, Log: l.WithField("step", "cert"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "self-signed") {
		t.Errorf("the log does not say the certificate is a throwaway:\n%s", logs.String())
	}
	chain, err := os.ReadFile(r.ChainFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(chain)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Names() {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("the local certificate does not cover %s: %v", n, err)
		}
	}
	if leaf.NotAfter.Sub(now) > 8*24*time.Hour || r.BuildID != "b1" || r.SHA256 == "" || !r.HTTPS {
		t.Errorf("certificate until %s, receipt %+v", leaf.NotAfter, r)
	}
	if fi, err := os.Stat(r.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %v, %v; want mode 0600", fi, err)
	}
	_, err = cert.Issue(context.Background(), cert.Options{Config: c, Log: l.WithField("step", "cert"), Publish: true})
	if err == nil || !strings.Contains(err.Error(), "https: false") {
		t.Errorf("a deploy without AWS: %v; want the failure with its fix", err)
	}
}

// TestCertificateNeedsNoSite: the certificate is found before the site is
// built (as `mage deploy` runs it, beside the Site step); Issue then passes
// the site's build on with it and asks AWS nothing more.
func TestCertificateNeedsNoSite(t *testing.T) {
	e := newEnv(t, 0)
	if err := os.Remove(receipt.Path(e.c.BuildDir(), site.ReceiptName)); err != nil {
		t.Fatal(err)
	}
	o := e.options()
	got, err := cert.Certificate(context.Background(), o)
	if err != nil {
		t.Fatalf("the certificate without a site: %v", err)
	}
	if got.BuildID != "" || got.ChainFile == "" || e.ca.Orders() != 1 {
		t.Fatalf("certificate %+v after %d orders; want one, and no build yet", got, e.ca.Orders())
	}
	if err := receipt.Write(e.c.BuildDir(), site.ReceiptName, &site.Receipt{BuildID: "b2", Commit: "c2"}); err != nil {
		t.Fatal(err)
	}
	e.h.Calls.Reset()
	o.Certified = got
	r, err := cert.Issue(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.BuildID != "b2" || r.Commit != "c2" || r.SHA256 != got.SHA256 || len(e.h.Calls.Calls()) != 0 {
		t.Fatalf("receipt %+v after %d AWS calls; want the site's build with the certificate found before, and no call", r, len(e.h.Calls.Calls()))
	}
	var written cert.Receipt
	if ok, err := receipt.Read(e.c.BuildDir(), cert.ReceiptName, &written); !ok || err != nil || written.BuildID != "b2" {
		t.Fatalf("cert.json %+v (%v)", written, err)
	}
}

// TestConcurrentRunsOrderOnce: two machines (each its own _build) run the
// step at once for a site with nothing stored. The order is made holding
// the site's deploy lease, so exactly one run orders; the other waits for
// the lease, reads again under it and takes what the first stored. Both
// end with the same certificate, whose key is the stored key, and no lease
// or challenge record is left.
func TestConcurrentRunsOrderOnce(t *testing.T) {
	e := newEnv(t, 0)
	var wg sync.WaitGroup
	rs := make([]*cert.Receipt, 2)
	errs := make([]error, 2)
	for i := range rs {
		c := *e.c
		c.Root = t.TempDir()
		if err := receipt.Write(c.BuildDir(), site.ReceiptName, &site.Receipt{BuildID: "b1", Commit: "c1"}); err != nil {
			t.Fatal(err)
		}
		o := e.options()
		o.Config = &c
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i], errs[i] = cert.Issue(context.Background(), o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent runs: %v\n%s", err, e.log)
	}
	if e.ca.Orders() != 1 || rs[0].Issued == rs[1].Issued {
		t.Fatalf("%d orders, issued %v and %v; want one order, by one run\n%s", e.ca.Orders(), rs[0].Issued, rs[1].Issued, e.log)
	}
	if rs[0].SHA256 != rs[1].SHA256 || rs[0].Serial != rs[1].Serial {
		t.Fatalf("the runs ended with different certificates: %s and %s", rs[0].Serial, rs[1].Serial)
	}
	if !strings.Contains(e.log.String(), "another run stored a certificate meanwhile") {
		t.Errorf("the run that waited did not say it took the other's certificate:\n%s", e.log)
	}
	chainP, _ := e.h.Model.SSMParameter(cert.ParameterNames(e.c.Site)[1])
	keyP, _ := e.h.Model.SSMParameter(cert.ParameterNames(e.c.Site)[2])
	if _, err := tls.X509KeyPair([]byte(chainP.Value), []byte(keyP.Value)); err != nil {
		t.Fatalf("the stored key is not the stored chain's: %v", err)
	}
	if chainP.Version != 1 || keyP.Version != 1 {
		t.Errorf("chain at version %d, key at %d: want each written once", chainP.Version, keyP.Version)
	}
	for _, r := range rs {
		e.served(r)
		chain, _ := os.ReadFile(r.ChainFile)
		key, _ := os.ReadFile(r.KeyFile)
		if string(chain) != chainP.Value || string(key) != keyP.Value {
			t.Errorf("a run's files are not the stored chain and key")
		}
	}
	if left := e.challengeRecords(); len(left) > 0 {
		t.Errorf("challenge records left: %v", left)
	}
	z := fleet.Zone{ID: e.zone}
	if h, found, err := fleet.ReadLease(context.Background(), e.h.Route53(t), z, e.c.Domain); err != nil || found {
		t.Errorf("a lease is left: %v (%v)", h, err)
	}
}

// TestAKeyOfAnotherOrderIsNoCertificate: the stored key is not the stored
// chain's (another order's key, as interleaved writes would leave): the
// pair is never served; it reads as no certificate, and the step orders a
// new one and stores a pair that matches.
func TestAKeyOfAnotherOrderIsNoCertificate(t *testing.T) {
	e := newEnv(t, 0)
	first := e.mustIssue()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	keyName := cert.ParameterNames(e.c.Site)[2]
	e.h.Model.SetSSMParameter(keyName, "SecureString", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	r := e.mustIssue()
	if !r.Issued || e.ca.Orders() != 2 || r.Serial == first.Serial {
		t.Fatalf("issued %v, %d orders: a mismatched pair must read as no certificate\n%s", r.Issued, e.ca.Orders(), e.log)
	}
	if !strings.Contains(e.log.String(), "is not the certificate's") {
		t.Errorf("the log does not say the stored key is another's:\n%s", e.log)
	}
	chain, _ := os.ReadFile(r.ChainFile)
	key, _ := os.ReadFile(r.KeyFile)
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		t.Fatalf("the step hands on a key that is not its chain's: %v", err)
	}
}
