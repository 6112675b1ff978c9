// Package acmetest runs a real ACME CA for tests: Let's Encrypt's Pebble
// (github.com/letsencrypt/pebble/v2) in the test process, validating DNS-01
// for real against a small DNS server that answers from the Route53
// emulator's records — so a TXT record the code under test did not write to
// Route53 (or already removed) fails validation, as at Let's Encrypt.
// Test-only.
package acmetest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
)

// CA is a running Pebble and the DNS server it asks.
type CA struct {
	// Directory is the ACME directory URL (acme_directory).
	Directory string
	// RootsFile is a PEM file trusting Pebble's root and the ACME server's
	// own TLS certificate (acme_roots).
	RootsFile string
	// Root is Pebble's root alone: what a reader's browser would trust.
	Root *x509.Certificate
	// RootPEM is Root as PEM.
	RootPEM []byte
	// DNS is the DNS server's address (acme_resolvers, Pebble's -dnsserver).
	DNS string

	orders atomic.Int64
	down   atomic.Bool
	mu     sync.Mutex
	asked  []string
	hidden map[string]bool
}

// Options tune the CA.
type Options struct {
	// Validity of the certificates issued; default Pebble's (90 days).
	Validity time.Duration
}

// Start runs Pebble and its DNS server for the test; model answers DNS
// from the emulator's hosted zones. It sets Pebble's environment (no
// random validation sleeps, every order validated afresh, no injected bad
// nonces), so tests using it cannot run in parallel.
func Start(t testing.TB, model *awsmodel.Model, o Options) *CA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	c := &CA{}
	c.DNS = c.startDNS(t, model)

	logger := log.New(io.Discard, "pebble ", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Ltime)
	}
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(o.Validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, 0, 0, false, c.DNS, store)
	// Retry-After of 1 s: without one lego polls a pending challenge every 5 s.
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	acmeHandler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.down.Load() {
			http.Error(w, "the ACME server is down (acmetest)", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			c.orders.Add(1)
		}
		acmeHandler.ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c.Directory = srv.URL + wfe.DirectoryPath

	c.Root = authority.GetRootCert(0).Cert
	c.RootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
	serverCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c.RootsFile = filepath.Join(t.TempDir(), "acme-roots.pem")
	if err := os.WriteFile(c.RootsFile, append(append([]byte{}, c.RootPEM...), serverCert...), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// Orders is how many orders (newOrder requests) the CA has received.
func (c *CA) Orders() int { return int(c.orders.Load()) }

// Down makes every ACME request fail (503) until Down(false).
func (c *CA) Down(down bool) { c.down.Store(down) }

// Pool trusts Pebble's root only.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Root)
	return p
}

// Hide makes the DNS server answer NXDOMAIN for name, as a zone the domain
// is not delegated to would: the challenge record is never seen.
func (c *CA) Hide(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hidden == nil {
		c.hidden = map[string]bool{}
	}
	c.hidden[strings.ToLower(strings.TrimSuffix(name, "."))] = true
}

// Asked lists the TXT names the DNS server was asked for, in order.
func (c *CA) Asked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.asked...)
}

// startDNS serves UDP and TCP (Pebble asks over TCP, lego over UDP) on one
// loopback port and returns its address.
func (c *CA) startDNS(t testing.TB, model *awsmodel.Model) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, question := range q.Question {
			name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
			c.mu.Lock()
			if question.Qtype == dns.TypeTXT {
				c.asked = append(c.asked, name)
			}
			hidden := c.hidden[name]
			c.mu.Unlock()
			if hidden {
				m.Rcode = dns.RcodeNameError
				continue
			}
			rrs, rcode := answer(ctx, model, question)
			m.Answer = append(m.Answer, rrs...)
			m.Rcode = rcode
		}
		_ = w.WriteMsg(m)
	})
	for attempt := 0; attempt < 20; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the TCP port is taken: try another
			continue
		}
		udp := &dns.Server{PacketConn: pc, Handler: handler}
		tcp := &dns.Server{Listener: l, Handler: handler}
		go func() { _ = udp.ActivateAndServe() }()
		go func() { _ = tcp.ActivateAndServe() }()
		t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
		return pc.LocalAddr().String()
	}
	t.Fatal("acmetest: no loopback port free for both UDP and TCP")
	return ""
}

// answer looks the question up in the longest public zone holding it.
func answer(ctx context.Context, model *awsmodel.Model, q dns.Question) ([]dns.RR, int) {
	zones, err := model.Zones(ctx)
	if err != nil {
		return nil, dns.RcodeServerFailure
	}
	name := strings.ToLower(q.Name)
	var zone *awsmodel.Zone
	for i, z := range zones {
		zn := strings.ToLower(dns.Fqdn(z.Name))
		if z.Private || !(name == zn || strings.HasSuffix(name, "."+zn)) {
			continue
		}
		if zone == nil || len(zn) > len(dns.Fqdn(zone.Name)) {
			zone = &zones[i]
		}
	}
	if zone == nil {
		return nil, dns.RcodeRefused // not a zone this server knows
	}
	exists := false
	var out []dns.RR
	for _, s := range model.Records(zone.ID, name) {
		exists = true
		if dns.StringToType[s.Type] != q.Qtype && s.Type != "CNAME" {
			continue
		}
		ttl := int64(60)
		if s.TTL != nil {
			ttl = *s.TTL
		}
		for _, v := range s.Records {
			rr, err := dns.NewRR(dns.Fqdn(name) + " " + itoa(ttl) + " IN " + s.Type + " " + v)
			if err == nil {
				out = append(out, rr)
			}
		}
	}
	if !exists {
		return nil, dns.RcodeNameError
	}
	return out, dns.RcodeSuccess
}

func itoa(n int64) string {
	if n <= 0 {
		n = 60
	}
	return strconv.FormatInt(n, 10)
}
