package secure_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

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
// fasthttp, the static server) allocates to answer one request.
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

// BenchmarkIdleTLSConnections reports what an open TLS connection costs in
// memory (heap and goroutine stacks), as static's BenchmarkIdleConnections
// does for plain HTTP: after one request over HTTP/1.1 (fasthttp) or
// HTTP/2 (net/http), and after the handshake alone. The clients' own TLS
// state is in this process too, so the figures are an upper bound on the
// server's. With the cap (static.DefaultMaxConns), the worst case is this
// times the cap.
//
//	go test -run '^$' -bench IdleTLSConnections -benchtime 1x ./hostinit/secure/
func BenchmarkIdleTLSConnections(b *testing.B) {
	const n = 200 // each connection is two descriptors here
	for _, kind := range []struct {
		name, proto string
		request     bool
	}{
		{"http1-keep-alive", "http/1.1", true},
		{"h2-idle", "h2", true},
		{"handshake-only", "http/1.1", false},
	} {
		b.Run(kind.name, func(b *testing.B) {
			cert, pool := selfSigned(b, "blog.example.com")
			tlsAddr, _ := start(b, secure.Config{Domain: "blog.example.com", HSTSMaxAge: 1, Cert: cert, MaxConns: 1024}, staticSite(b))
			cfg := &tls.Config{RootCAs: pool, ServerName: "blog.example.com", NextProtos: []string{kind.proto}}
			before := inUse()
			var conns []io.Closer
			for range n {
				if kind.proto == "h2" {
					tr := &http.Transport{
						DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
							return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
						},
						TLSClientConfig: cfg, ForceAttemptHTTP2: true,
					}
					r, err := (&http.Client{Transport: tr}).Get("https://blog.example.com/")
					if err != nil || r.ProtoMajor != 2 {
						b.Fatalf("h2: %v %v", r, err)
					}
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
					conns = append(conns, closer(tr.CloseIdleConnections))
					continue
				}
				conn, err := tls.Dial("tcp", tlsAddr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
				if kind.request {
					c := rawhttp.New(conn, "blog.example.com", "/")
					if status, _, err := c.Get(); err != nil || status != 200 {
						b.Fatalf("GET /: %d %v", status, err)
					}
				}
			}
			time.Sleep(200 * time.Millisecond) // the servers settle
			b.ReportMetric(float64(inUse()-before)/n, "B/conn")
			for _, c := range conns {
				c.Close()
			}
		})
	}
}

type closer func()

func (c closer) Close() error { c(); return nil }

func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
