package secure_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/unikernel-blog/blog/hostinit/internal/testsupport/rawhttp"
	"github.com/unikernel-blog/blog/hostinit/secure"
)

// BenchmarkTLSHandshake: full handshakes (no session resumption) against
// the built-in server, ECDSA P-256 as the Cert step issues; each op is one
// new connection's handshake. Reported in README ("HTTPS").
func BenchmarkTLSHandshake(b *testing.B) {
	cert, pool := selfSigned(b, "blog.example.com")
	tlsAddr, _ := start(b, secure.Config{Domain: "blog.example.com", HSTSMaxAge: 1, Cert: cert})
	cfg := &tls.Config{RootCAs: pool, ServerName: "blog.example.com", NextProtos: []string{"h2", "http/1.1"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := tls.Dial("tcp", tlsAddr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// benchRequests GETs a small page of the real static server (about 100
// bytes of HTML) over keep-alive connections from parallel clients; h2
// picks HTTP/2 or HTTP/1.1.
func benchRequests(b *testing.B, h2 bool) {
	cert, pool := selfSigned(b, "blog.example.com")
	tlsAddr, _ := start(b, secure.Config{Domain: "blog.example.com", HSTSMaxAge: 1, Cert: cert, MaxConns: 1024}, staticSite(b))
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:   h2,
		MaxIdleConnsPerHost: 64,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := client.Get("https://blog.example.com/")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode != 200 || (h2 && r.ProtoMajor != 2) || (!h2 && r.ProtoMajor != 1) {
				b.Errorf("%d over %s", r.StatusCode, r.Proto)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkSmallPageHTTP1KeepAlive(b *testing.B) { benchRequests(b, false) }
func BenchmarkSmallPageHTTP2(b *testing.B)          { benchRequests(b, true) }

// BenchmarkSmallPageHTTP1OneConnection GETs the same page over one
// keep-alive TLS connection (HTTP/1.1) with a client that allocates
// nothing per request, so allocs/op and B/op are what the server (TLS,
// net/http, the static server) allocates to answer one request.
func BenchmarkSmallPageHTTP1OneConnection(b *testing.B) {
	cert, pool := selfSigned(b, "blog.example.com")
	tlsAddr, _ := start(b, secure.Config{Domain: "blog.example.com", HSTSMaxAge: 1, Cert: cert, MaxConns: 1024}, staticSite(b))
	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "blog.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	c := rawhttp.New(conn, "blog.example.com", "/")
	defer c.Close()
	if status, _, err := c.Get(); err != nil || status != 200 {
		b.Fatalf("GET /: %d %v", status, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if status, _, err := c.Get(); err != nil || status != 200 {
			b.Fatalf("GET /: %d %v", status, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
