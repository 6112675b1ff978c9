package secure_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/unikernel-blog/blog/hostinit/secure"
)

// TestBothProtocolsAnswerAlike asks the static server through the TLS
// layer over HTTP/2 (net/http's server, ServeHTTP) and over HTTP/1.1
// (fasthttp, Handle), and fails if the two answers differ in status,
// body or any header but those each protocol frames for itself: the
// layer's HSTS and alias redirects as much as the static server's own.
func TestBothProtocolsAnswerAlike(t *testing.T) {
	cert, pool := selfSigned(t, "blog.example.com", "www.example.com")
	tlsAddr, _ := start(t, secure.Config{Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 60, Cert: cert, MaxConns: 8}, staticSite(t))
	h2, h1 := client(tlsAddr, pool, true), client(tlsAddr, pool, false)
	type answer struct {
		status int
		header http.Header
		body   string
	}
	ask := func(c *http.Client, method, url string, header ...string) answer {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Accept-Encoding", "identity") // unless a case asks otherwise
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		r, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		h := r.Header.Clone()
		h.Del("Date") // the clock's
		if len(b) == 0 && h.Get("Content-Length") == "0" {
			// Framing: net/http's HTTP/2 server states an empty body's
			// length, fasthttp leaves it out where HTTP/1.1 allows.
			h.Del("Content-Length")
		}
		return answer{r.StatusCode, h, string(b)}
	}
	etag := ask(h2, "GET", "https://blog.example.com/").header.Get("Etag")
	for _, c := range []struct {
		method, url string
		header      []string
		status      int
	}{
		{"GET", "https://blog.example.com/", nil, 200},
		{"HEAD", "https://blog.example.com/", nil, 200},
		{"GET", "https://blog.example.com/", []string{"If-None-Match", etag}, 304},
		{"GET", "https://blog.example.com/", []string{"Range", "bytes=0-8"}, 206},
		{"GET", "https://blog.example.com/assets/main.css", []string{"Accept-Encoding", "gzip"}, 200},
		{"GET", "https://blog.example.com/nope", nil, 404},
		{"GET", "https://blog.example.com/2026/post?x=1", nil, 301},
		{"POST", "https://blog.example.com/", nil, 405},
		{"GET", "https://www.example.com/2026/post/?q=1", nil, 301},
		{"GET", "https://WWW.example.com.:8443/x", nil, 301},
	} {
		a2, a1 := ask(h2, c.method, c.url, c.header...), ask(h1, c.method, c.url, c.header...)
		if a2.status != c.status || a2.header.Get("Strict-Transport-Security") != "max-age=60" {
			t.Errorf("%s %s %v over HTTP/2: %d, want %d with HSTS: %v", c.method, c.url, c.header, a2.status, c.status, a2.header)
		}
		if a1.status != a2.status || a1.body != a2.body || !maps.EqualFunc(a1.header, a2.header, slices.Equal) {
			t.Errorf("%s %s %v: HTTP/1.1 and HTTP/2 answer differently:\nHTTP/1.1 %d %v %q\nHTTP/2   %d %v %q",
				c.method, c.url, c.header, a1.status, a1.header, a1.body, a2.status, a2.header, a2.body)
		}
	}
	if a := ask(h1, "GET", "https://www.example.com/2026/post/?q=1"); a.header.Get("Location") != "https://blog.example.com/2026/post/?q=1" {
		t.Errorf("alias: Location %q", a.header.Get("Location"))
	}
}

// TestOneCapOverTLSAndPlainHTTP: the cap holds over both listeners
// together and over TLS: with two connections served (one HTTPS, one
// plain HTTP), a third HTTPS connection gets no handshake until one of
// them closes.
func TestOneCapOverTLSAndPlainHTTP(t *testing.T) {
	cert, pool := selfSigned(t, "blog.example.com")
	tlsAddr, plainAddr := start(t, secure.Config{Domain: "blog.example.com", Cert: cert, MaxConns: 2})
	cfg := &tls.Config{RootCAs: pool, ServerName: "blog.example.com", NextProtos: []string{"http/1.1"}}
	first, err := tls.Dial("tcp", tlsAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	plain, err := net.Dial("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(plain, "GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n")
	if r, err := http.ReadResponse(bufio.NewReader(plain), nil); err != nil || r.StatusCode != 301 {
		t.Fatalf("plain HTTP: %v %v", r, err)
	}

	third := make(chan error, 1)
	go func() {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", tlsAddr, cfg)
		if err == nil {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n")
			var r *http.Response
			if r, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil && r.StatusCode != 200 {
				err = fmt.Errorf("status %d", r.StatusCode)
			}
			c.Close()
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("a third connection was served with a cap of two (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	plain.Close()
	select {
	case err := <-third:
		if err != nil {
			t.Fatalf("the third connection, once the plain one closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not served when the plain one closed")
	}
}

// The HTTP/1.1 layer adds no allocation to what fasthttp's front end
// allocates (nothing): HSTS is made once, the host is compared in place.
func TestHandleHTTP1AllocatesNothing(t *testing.T) {
	page := []byte("<p>page</p>")
	h := secure.HandleHTTP1(func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(page) },
		secure.Config{Domain: "blog.example.com", Aliases: []string{"www.example.com"}, HSTSMaxAge: 60})
	for _, host := range []string{"blog.example.com", "blog.example.com:8443", "[::1]:8443"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/")
		ctx.Request.Header.SetHost(host)
		h(&ctx)
		if got := string(ctx.Response.Header.Peek("Strict-Transport-Security")); got != "max-age=60" || ctx.Response.StatusCode() != 200 {
			t.Fatalf("Host %s: %d, HSTS %q", host, ctx.Response.StatusCode(), got)
		}
		if allocs := testing.AllocsPerRun(100, func() { ctx.Response.Reset(); h(&ctx) }); allocs != 0 {
			t.Errorf("Host %s: %.0f allocations per request", host, allocs)
		}
	}
}

// countingListener counts the writes to every connection it accepted.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(p) }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

// TestOneWritePerAnswer: over a keep-alive connection, each answer of the
// static server leaves in one write to the socket, over HTTP/2 (h2Conn
// sends HEADERS with their DATA) as over HTTP/1.1.
func TestOneWritePerAnswer(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		for _, path := range []string{"/", "/assets/main.css", "/nope"} {
			cert, pool := selfSigned(t, "blog.example.com")
			var writes atomic.Int64
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
			go func() {
				done <- secure.ServeListeners(ctx, countingListener{tl, &writes}, pl, staticSite(t), secure.Config{Domain: "blog.example.com", Cert: cert, MaxConns: 8})
			}()
			c := client(tl.Addr().String(), pool, h2)
			get := func() {
				r, err := c.Get("https://blog.example.com" + path)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			get() // the handshake and HTTP/2's settings
			const n = 50
			before := writes.Load()
			for range n {
				get()
			}
			if got := float64(writes.Load()-before) / n; got != 1 {
				t.Errorf("HTTP/2 %v, GET %s: %.2f writes per answer, want 1", h2, path, got)
			}
			cancel()
			<-done
		}
	}
}
