package static

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/hostinit/internal/testsupport/rawhttp"
)

// BenchmarkIdleConnections reports what an open connection costs the server
// in memory (heap and goroutine stacks, the client's few socket objects in
// this process included): keep-alive connections between requests, and
// half-open ones that sent part of a request header and stopped, as a
// slowloris client does. With at most DefaultMaxConns connections, the
// worst case is this times DefaultMaxConns.
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./hostinit/static/
func BenchmarkIdleConnections(b *testing.B) {
	// Below the usual 1024 open files: each connection is two descriptors here.
	const n = 300
	for _, kind := range []struct {
		name, send string
		reply      bool
	}{
		{"keep-alive", "GET /about/ HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"half-open", "GET /about/ HTTP/1.1\r\nHost: x\r\nUser-Agent: slow", false},
	} {
		b.Run(kind.name, func(b *testing.B) {
			s, err := New(site(), modified)
			if err != nil {
				b.Fatal(err)
			}
			addr := strings.TrimPrefix(start(b, s), "http://")
			goroutines := runtime.NumGoroutine()
			before := inUse()
			conns := make([]net.Conn, 0, n)
			for range n {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
				if _, err := io.WriteString(c, kind.send); err != nil {
					b.Fatal(err)
				}
				if kind.reply {
					buf := make([]byte, 64<<10)
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Read(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			// Every connection has its goroutine on the server.
			for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() < goroutines+n && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			after := inUse()
			b.ReportMetric(float64(after-before)/n, "B/conn")
			for _, c := range conns {
				c.Close()
			}
		})
	}
}

func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// BenchmarkOneConnection GETs a page, the page gzipped and the feed (about
// 25 KB) over one keep-alive connection, from each front end, with a
// client that allocates nothing per request: allocs/op and B/op are what
// the server (fasthttp or net/http, and the handler) allocates to answer
// one request. net/http's test server has no TLS; hostinit/secure's
// BenchmarkSmallPageHTTP1OneConnection measures it with TLS.
//
//	go test -run '^$' -bench OneConnection ./hostinit/static/
func BenchmarkOneConnection(b *testing.B) {
	s, err := New(jekyllSite(), modified)
	if err != nil {
		b.Fatal(err)
	}
	for _, fe := range []struct {
		name  string
		start func(testing.TB, *Server) string
	}{{"fasthttp", start}, {"net-http", startNetHTTP}} {
		base := strings.TrimPrefix(fe.start(b, s), "http://")
		for _, tg := range []struct{ name, path, accept string }{
			{"page", "/", "identity"},
			{"page-gzip", "/", "gzip"},
			{"feed", "/feed.xml", "identity"},
		} {
			b.Run(fe.name+"/"+tg.name, func(b *testing.B) {
				conn, err := net.Dial("tcp", base)
				if err != nil {
					b.Fatal(err)
				}
				c := rawhttp.New(conn, "blog.example.com", tg.path, "Accept-Encoding", tg.accept)
				defer c.Close()
				if status, _, err := c.Get(); err != nil || status != 200 {
					b.Fatalf("GET %s: %d %v", tg.path, status, err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if status, _, err := c.Get(); err != nil || status != 200 {
						b.Fatalf("GET %s: %d %v", tg.path, status, err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}
