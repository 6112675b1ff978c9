package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/acmetest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// httpsSite is the real blog in a fresh clone, deployed by `go run mage.go`
// into the emulator with Pebble as its CA; the stand-in for the booted
// image serves TLS with the certificate the Cert step left in _build/cert
// and notes the serial of every certificate it presents: the health gate's
// handshakes (no other client speaks TLS to it).
type httpsSite struct {
	t      *testing.T
	h      *awsharness.Harness
	builds *awsharness.BuildServer
	ca     *acmetest.CA
	dir    string
	env    []string
	domain string
	zoneID string

	mu      sync.Mutex
	serials []string
}

func newHTTPSSite(t *testing.T, validity time.Duration) *httpsSite {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	s := &httpsSite{t: t}
	s.h = awsharness.Start(t, awsharness.Options{PendingDescribes: -1, InvisibleDescribes: -1})
	s.builds = s.h.StartBuildServer(t)
	base := awsharness.UniqueName("renew") + ".example"
	s.domain = "www." + base
	zone, err := s.h.Route53(t).CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	s.zoneID = aws.ToString(zone.HostedZone.Id)
	s.dir = freshClone(t)
	s.ca = acmetest.Start(t, s.h.Model, acmetest.Options{Validity: validity})
	s.builds.ServeTLS(t, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(filepath.Join(s.dir, "_build", "cert", "chain.pem"), filepath.Join(s.dir, "_build", "cert", "key.pem"))
		if err != nil {
			return nil, err
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.serials = append(s.serials, leaf.SerialNumber.Text(16))
		s.mu.Unlock()
		return &c, nil
	})
	s.env = []string{
		"DEPLOY_DOMAIN=" + s.domain, "DEPLOY_MIRAGE_TARGET=none", "DEPLOY_HOST_KERNEL=" + kernel,
		"DEPLOY_HEALTH_URL=" + s.builds.HTTPSHealthURL(), "DEPLOY_TTL=1", "DEPLOY_GRACE=0", "UNIKERNEL=",
		"DEPLOY_ACME_DIRECTORY=" + s.ca.Directory, "DEPLOY_ACME_ROOTS=" + s.ca.RootsFile, "DEPLOY_ACME_RESOLVERS=" + s.ca.DNS,
	}
	return s
}

// mage runs a target; it fails the test if the target fails.
func (s *httpsSite) mage(target string) string {
	s.t.Helper()
	out, err := mage(s.t, s.dir, s.env, target)
	if err != nil {
		s.t.Fatalf("mage %s: %v\n%s", target, err, out)
	}
	return out
}

// gateSaw is the serials the gate's handshakes were shown since the last call.
func (s *httpsSite) gateSaw() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := slices.Compact(s.serials)
	s.serials = nil
	return seen
}

// live is what a reader gets: the instance behind the site's address (the
// record's target) and its image digest, and that it serves a build.
func (s *httpsSite) live() fleet.Instance {
	s.t.Helper()
	ctx := context.Background()
	eip, ok := s.h.Model.AddressOf(recordTarget(s.t, s.h.Route53(s.t), s.zoneID, s.domain))
	if !ok || eip.InstanceID == "" {
		s.t.Fatalf("the record of %s leads to no instance (%+v)", s.domain, eip)
	}
	in, found, err := fleet.DescribeInstance(ctx, s.h.EC2(s.t), eip.InstanceID)
	if err != nil || !found || in.Role != fleet.RoleLive {
		s.t.Fatalf("instance %s behind the address: %+v (found %v, %v)", eip.InstanceID, in, found, err)
	}
	if build, err := s.builds.Visit(ctx, s.zoneID, s.domain); err != nil || build != in.BuildID {
		s.t.Fatalf("a reader of %s gets %q (%v), want build %s", s.domain, build, err, in.BuildID)
	}
	return in
}

// certSerial is the serial of the certificate the last Cert step handed on.
func (s *httpsSite) certSerial() string {
	var c struct {
		Serial string `json:"serial"`
	}
	readJSON(s.t, filepath.Join(s.dir, "_build", "cert.json"), &c)
	return c.Serial
}

// receipts are the certificate's serial and the image's digest the last run used.
func (s *httpsSite) receipts() (serial, digest string) {
	var b struct {
		ImageDigest string `json:"image_digest"`
	}
	readJSON(s.t, filepath.Join(s.dir, "_build", "bake.json"), &b)
	return s.certSerial(), b.ImageDigest
}

// TestMageDeployRenewsACertificateDue: the first deploy issues a
// certificate that has 20 days left (the CA issues them so), under the
// 30-day threshold. The next deploy of the unchanged site renews it: a new
// order, so a new image (another digest), a new instance of it behind the
// site's address, and the health gate's TLS handshake shown the new
// certificate's serial before the address moved.
func TestMageDeployRenewsACertificateDue(t *testing.T) {
	s := newHTTPSSite(t, 20*24*time.Hour)
	out := s.mage("deploy")
	serial1, digest1 := s.receipts()
	first := s.live()
	if s.ca.Orders() != 1 || first.ImageDigest != digest1 {
		t.Fatalf("first deploy: %d orders, live image %s, baked %s\n%s", s.ca.Orders(), first.ImageDigest, digest1, lastLines(out, 20))
	}
	if saw := s.gateSaw(); !slices.Equal(saw, []string{serial1}) {
		t.Fatalf("the first gate was shown certificates %v, want %s", saw, serial1)
	}
	if st, err := os.Stat(filepath.Join(s.dir, "_build", "cert", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v", err)
	}

	out = s.mage("deploy")
	serial2, digest2 := s.receipts()
	second := s.live()
	for _, want := range []string{"under the 720h0m0s renewal threshold", "issued a certificate for " + s.domain} {
		if !strings.Contains(out, want) {
			t.Errorf("the renewing deploy does not say %q:\n%s", want, lastLines(out, 40))
		}
	}
	switch {
	case s.ca.Orders() != 2 || serial2 == serial1:
		t.Fatalf("second deploy: %d orders, serial %s then %s: no renewal", s.ca.Orders(), serial1, serial2)
	case digest2 == digest1:
		t.Fatalf("the renewed certificate left the image as it was (%s): it did not go into it", digest1)
	case second.ID == first.ID || second.ImageDigest != digest2 || second.BuildID != first.BuildID:
		t.Fatalf("behind the address: %+v, before %+v; want a new instance of image %s, the same site build", second, first, digest2)
	}
	if saw := s.gateSaw(); !slices.Equal(saw, []string{serial2}) {
		t.Fatalf("the renewing deploy's gate was shown certificates %v, want only the new %s", saw, serial2)
	}
	if strings.Contains(out, "level=warning") {
		t.Errorf("a renewal that worked warned:\n%s", lastLines(out, 40))
	}
}

// TestMageDeployThroughACAOutage: a certificate with 25 days left is stored
// (`mage cert`), renewal is due, and the CA is unreachable. A whole deploy
// goes live with the stored certificate, and its output carries the
// warning with the time left and the fix.
func TestMageDeployThroughACAOutage(t *testing.T) {
	s := newHTTPSSite(t, 25*24*time.Hour)
	s.mage("cert")
	serial := s.certSerial()
	if s.ca.Orders() != 1 {
		t.Fatalf("mage cert made %d orders", s.ca.Orders())
	}
	s.ca.Down(true)
	out := s.mage("deploy")
	for _, want := range []string{"level=warning", "renewing the certificate failed", "left and is used meanwhile", "acme_directory"} {
		if !strings.Contains(out, want) {
			t.Errorf("the deploy's output lacks %q:\n%s", want, lastLines(out, 40))
		}
	}
	in := s.live()
	got, digest := s.receipts()
	if got != serial || in.ImageDigest != digest || s.ca.Orders() != 1 {
		t.Fatalf("live %+v with certificate %s (stored %s), image %s, %d orders", in, got, serial, digest, s.ca.Orders())
	}
	if saw := s.gateSaw(); !slices.Equal(saw, []string{serial}) {
		t.Fatalf("the gate was shown certificates %v, want the stored %s", saw, serial)
	}
	var rc struct {
		OK bool `json:"ok"`
	}
	readJSON(t, filepath.Join(s.dir, "_build", "deploy.json"), &rc)
	if !rc.OK {
		t.Fatal("the deploy's receipt says it failed")
	}
}
