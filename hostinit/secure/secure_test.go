package secure_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/unikernel-blog/blog/hostinit/secure"
)

// selfSigned is a certificate for names and a pool trusting only it.
func selfSigned(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// standIn is a stand-in for the static server, with both front ends.
type standIn struct{}

func (standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<html><meta name="build-id" content="b1">%s</html>`, r.URL.Path)
}

func (standIn) Handle(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/html; charset=utf-8")
	fmt.Fprintf(ctx, `<html><meta name="build-id" content="b1">%s</html>`, ctx.Path())
}

// start serves the stand-in (or the site given) through secure on two
// loopback ports.
func start(t testing.TB, c secure.Config, site ...secure.Site) (httpsAddr, httpAddr string) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var s secure.Site = standIn{}
	if len(site) > 0 {
		s = site[0]
	}
	go func() { done <- secure.ServeListeners(ctx, tl, pl, s, c) }()
	t.Cleanup(func() { cancel(); <-done })
	return tl.Addr().String(), pl.Addr().String()
}

// client dials addr whatever the URL's host, trusting pool only.
func client(addr string, pool *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: h2,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHTTPSServesWithHSTSOverHTTP2(t *testing.T) {
	cert, pool := selfSigned(t, "blog.example.com", "www.example.com")
	tlsAddr, _ := start(t, secure.Config{Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 31536000, Cert: cert})
	r, err := client(tlsAddr, pool, true).Get("https://blog.example.com/2026/12/01/post/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || r.ProtoMajor != 2 || !strings.Contains(string(body), "/2026/12/01/post/") {
		t.Errorf("GET: %d over %s: %s", r.StatusCode, r.Proto, body)
	}
	if got := r.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security %q", got)
	}
	// HTTP/1.1 still works for clients without HTTP/2.
	r, err = client(tlsAddr, pool, false).Get("https://blog.example.com/")
	if err != nil || r.StatusCode != 200 || r.ProtoMajor != 1 {
		t.Errorf("HTTP/1.1: %v %v", err, r)
	}
}

func TestRedirects(t *testing.T) {
	cert, pool := selfSigned(t, "blog.example.com", "www.example.com")
	tlsAddr, plainAddr := start(t, secure.Config{Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 60, Cert: cert})
	for _, c := range []struct{ url, addr, want string }{
		{"http://blog.example.com/a/b/?q=1&r=2", plainAddr, "https://blog.example.com/a/b/?q=1&r=2"},
		{"http://www.example.com/feed.xml", plainAddr, "https://blog.example.com/feed.xml"},
		{"https://www.example.com/x?y=z", tlsAddr, "https://blog.example.com/x?y=z"},
		{"https://WWW.example.com:8443/x", tlsAddr, "https://blog.example.com/x"}, // a port and capitals: the same alias
	} {
		r, err := client(c.addr, pool, true).Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != c.want {
			t.Errorf("GET %s: %d → %q, want 301 → %s", c.url, r.StatusCode, r.Header.Get("Location"), c.want)
		}
		if strings.HasPrefix(c.url, "http:") && r.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("GET %s: HSTS over plain HTTP, which browsers must ignore", c.url)
		}
	}
	// No HSTS header when max-age is 0.
	cert2, pool2 := selfSigned(t, "blog.example.com")
	tlsAddr2, _ := start(t, secure.Config{Domain: "blog.example.com", Cert: cert2})
	r, err := client(tlsAddr2, pool2, true).Get("https://blog.example.com/")
	if err != nil || r.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("hsts_max_age 0: %v, header %q", err, r.Header.Get("Strict-Transport-Security"))
	}
}

// headerWriter keeps its header map between requests, so that an
// allocation count is the handler's own (net/http gives each response a
// new map).
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) WriteHeader(int)             {}
func (w *headerWriter) Write(p []byte) (int, error) { return len(p), nil }

// The layer adds nothing per request to what the static server allocates:
// the HSTS value is made once, and the host is read without an error for
// the port a browser leaves out.
func TestHandlerAllocatesNothing(t *testing.T) {
	page := []byte("<p>page</p>")
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(page) })
	h := secure.Handler(inner, secure.Config{Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 60})
	for _, host := range []string{"blog.example.com", "blog.example.com:8443", "[::1]:8443"} {
		r := httptest.NewRequest("GET", "https://"+host+"/", nil)
		w := &headerWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.h.Get("Strict-Transport-Security") != "max-age=60" {
			t.Fatalf("Host %s: headers %v", host, w.h)
		}
		if allocs := testing.AllocsPerRun(100, func() { clear(w.h); h.ServeHTTP(w, r) }); allocs != 0 {
			t.Errorf("Host %s: %.0f allocations per request", host, allocs)
		}
	}
}
