package host_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/acmetest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/site"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// TestBootServesHTTPS: this repository's blog, a certificate issued by
// Pebble through the real Cert step (DNS-01 in the emulator's zone), the
// host image booted under OVMF in QEMU. A client trusting only Pebble's
// root, asking for the domain by SNI, gets the page and the build id over
// HTTP/2 with HSTS; plain HTTP is redirected with path and query; the alias
// is redirected to the domain.
func TestBootServesHTTPS(t *testing.T) {
	kernelRoot, qemu, fw := bootTools(t)
	testtool.Need(t, "jekyll", "jekyll")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1})
	ca := acmetest.Start(t, h.Model, acmetest.Options{})
	base := awsharness.UniqueName("boot") + ".example"
	if _, err := h.Route53(t).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))}); err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	root := testtool.CopyRepo(t, repo)
	log, logs := testLog()
	sr, err := site.Build(ctx, site.Options{Root: root, Log: log})
	if err != nil {
		t.Fatalf("site: %v\n%s", err, logs)
	}
	domain, alias := "blog."+base, "www."+base
	c := &config.Config{
		Root: root, Region: awsharness.Region, Site: awsharness.UniqueName("site"), Domain: domain, Aliases: []string{alias},
		HTTPS: true, ACMEDirectory: ca.Directory, ACMERoots: ca.RootsFile, ACMEResolvers: []string{ca.DNS}, HSTSMaxAge: 31536000,
		Source: map[string]string{},
	}
	if _, err := cert.Issue(ctx, cert.Options{Config: c, Log: log, Poll: 50 * time.Millisecond, Propagation: 10 * time.Second}); err != nil {
		t.Fatalf("cert: %v\n%s", err, logs)
	}
	if _, err := unikernel.Build(ctx, unikernel.Options{SiteDir: c.SiteDir(), BuildDir: c.BuildDir(), Target: unikernel.NoTarget, Log: log}); err != nil {
		t.Fatal(err)
	}
	ir, err := image.Build(ctx, image.Options{BuildDir: c.BuildDir(), Layout: host.Name, SiteDir: c.SiteDir(), Settings: layout.Settings{HostKernel: kernelRoot}, Log: log})
	if err != nil {
		t.Fatalf("image: %v\n%s", err, logs)
	}
	if st, err := os.Stat(ir.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the image holding the key has mode %v (%v); want 0600", st.Mode(), err)
	}

	ctx, cancelBoot := context.WithTimeout(ctx, bootTimeout)
	defer cancelBoot()
	vm := boot(ctx, t, qemu, fw, ir.Path, withRDRAND, 443)
	t.Logf("first answer %.1fs after QEMU started", vm.firstOK.Seconds())

	// A reader's browser: trusts Pebble's root alone, sends the name by SNI.
	tlsPort := strconv.Itoa(vm.probes[443])
	reader := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+tlsPort)
			},
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(client *http.Client, u string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		r, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r, string(b)
	}

	r, page := get(reader, "https://"+domain+"/")
	if r.StatusCode != 200 || !strings.Contains(page, `<meta name="build-id" content="`+sr.BuildID+`">`) {
		t.Errorf("GET https://%s/: %d; build id present: %v", domain, r.StatusCode, strings.Contains(page, sr.BuildID))
	}
	if r.ProtoMajor != 2 || r.TLS == nil || r.TLS.ServerName != domain {
		t.Errorf("served over %s (TLS %v), want HTTP/2 with SNI %s", r.Proto, r.TLS != nil, domain)
	}
	if got := r.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security %q", got)
	}
	if _, body := get(reader, "https://"+domain+"/build-id.txt"); strings.TrimSpace(body) != sr.BuildID {
		t.Errorf("/build-id.txt %q, want %s", body, sr.BuildID)
	}
	// Plain HTTP: 301 to the same path and query on https.
	r, _ = get(vm.client, vm.base+"/feed.xml?utm=x&y=2")
	if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "https://"+domain+"/feed.xml?utm=x&y=2" {
		t.Errorf("plain HTTP: %d → %q", r.StatusCode, r.Header.Get("Location"))
	}
	// The alias, over TLS with its own name: 301 to the domain.
	r, _ = get(reader, "https://"+alias+"/about/")
	if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "https://"+domain+"/about/" {
		t.Errorf("alias: %d → %q", r.StatusCode, r.Header.Get("Location"))
	}
	if lines := strings.Join(initLines(t, vm.serial), "\n"); !strings.Contains(lines, "over HTTPS (HTTP/2 and HTTP/1.1) on :443 as "+domain) {
		t.Errorf("the serial console does not say it serves HTTPS:\n%s", lines)
	}
}
