package static

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

var modified = time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)

// site is a small Jekyll-shaped site: pages as dir/index.html, a 404 page,
// a feed, a stylesheet and an image.
func site() fstest.MapFS {
	page := func(s string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("<!doctype html><html><body>" + s + strings.Repeat(" lorem ipsum", 100) + "</body></html>\n")}
	}
	return fstest.MapFS{
		"index.html":                      page("home"),
		"404.html":                        page("not here"),
		"about/index.html":                page("about"),
		"2024/01/02/first/index.html":     page("first post"),
		"feed.xml":                        {Data: []byte(`<?xml version="1.0"?><feed>` + strings.Repeat("<entry/>", 100) + `</feed>`)},
		"assets/site.css":                 {Data: []byte("body { margin: 0 }\n" + strings.Repeat("p { color: black }\n", 50))},
		"assets/logo.png":                 {Data: append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 1000)...)},
		"build-id.txt":                    {Data: []byte("0123456789abcdef\n")},
		"robots.txt":                      {Data: []byte("User-agent: *\n")},
		"fonts/x.woff2":                   {Data: []byte("wOF2")},
		"data.bin":                        {Data: []byte{1, 2, 3}},
		"dir with space/index.html":       page("spaced"),
		"2024/01/02/first/diagram.svg":    {Data: []byte("<svg/>")},
		"assets/unicode-\u00e9t\u00e9.js": {Data: []byte("let x = 1;\n")},
	}
}

func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(site(), modified)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// servers are the test servers started for each Server, on loopback: its
// two front ends.
var servers sync.Map // *Server → frontEnds

type frontEnds struct{ fast, net string } // base URLs

// do sends one request over TCP to both of s's front ends (started on
// first use), fasthttp's and net/http's, as a client on the wire would: no
// transparent decompression, headers as given. The test fails unless both
// answer alike (sameAnswer); do returns net/http's answer, the one readers
// get over HTTPS.
func do(t *testing.T, s *Server, method, target string, header ...string) *http.Response {
	t.Helper()
	v, ok := servers.Load(s)
	if !ok {
		v = frontEnds{fast: start(t, s), net: startNetHTTP(t, s)}
		servers.Store(s, v)
		t.Cleanup(func() { servers.Delete(s) })
	}
	fe := v.(frontEnds)
	fast, fastBody := roundTrip(t, fe.fast, method, target, header...)
	resp, netBody := roundTrip(t, fe.net, method, target, header...)
	if diff := sameAnswer(fast, fastBody, resp, netBody); diff != "" {
		t.Errorf("%s %s %q: the front ends answer differently: %s", method, target, header, diff)
	}
	return resp
}

// roundTrip sends the request to base and returns the answer with its
// body read (and kept readable in the response).
func roundTrip(t *testing.T, base, method, target string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if req.Header.Get("Accept-Encoding") == "" {
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, b
}

// multipartBoundary is the random boundary of a multipart/byteranges
// answer, which differs between any two answers.
var multipartBoundary = regexp.MustCompile(`boundary=([0-9a-f]+)`)

// sameAnswer describes how two answers differ in status, headers (Date
// aside: the clock moves) or body, or is empty.
func sameAnswer(a *http.Response, aBody []byte, b *http.Response, bBody []byte) string {
	norm := func(r *http.Response, body []byte) (http.Header, string) {
		h := r.Header.Clone()
		h.Del("Date")
		text := string(body)
		if m := multipartBoundary.FindStringSubmatch(h.Get("Content-Type")); m != nil {
			h.Set("Content-Type", strings.ReplaceAll(h.Get("Content-Type"), m[1], "B"))
			text = strings.ReplaceAll(text, m[1], "B")
		}
		return h, text
	}
	ah, at := norm(a, aBody)
	bh, bt := norm(b, bBody)
	switch {
	case a.StatusCode != b.StatusCode:
		return fmt.Sprintf("status %d (fasthttp) and %d (net/http)", a.StatusCode, b.StatusCode)
	case !reflect.DeepEqual(ah, bh):
		return fmt.Sprintf("headers\n  fasthttp %v\n  net/http %v", ah, bh)
	case at != bt:
		return fmt.Sprintf("bodies of %d and %d bytes", len(at), len(bt))
	}
	return ""
}

var transport = &http.Transport{DisableCompression: true}

// start serves s's fasthttp front end on a loopback port until the test ends.
func start(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// startNetHTTP serves s's net/http front end (ServeHTTP) on a loopback port
// until the test ends, as hostinit/secure does but without TLS.
func startNetHTTP(t testing.TB, s *Server) string {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestContentTypesAndIndexPages(t *testing.T) {
	s := newServer(t)
	cases := []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", "home"},
		{"/index.html", "text/html; charset=utf-8", "home"},
		{"/about/", "text/html; charset=utf-8", "about"},
		{"/2024/01/02/first/", "text/html; charset=utf-8", "first post"},
		{"/feed.xml", "application/xml; charset=utf-8", "<feed>"},
		{"/assets/site.css", "text/css; charset=utf-8", "margin"},
		{"/assets/logo.png", "image/png", "PNG"},
		{"/build-id.txt", "text/plain; charset=utf-8", "0123456789abcdef"},
		{"/fonts/x.woff2", "font/woff2", "wOF2"},
		{"/data.bin", "application/octet-stream", "\x01\x02\x03"},
		{"/2024/01/02/first/diagram.svg", "image/svg+xml", "<svg/>"},
		{"/dir%20with%20space/", "text/html; charset=utf-8", "spaced"},
		{"/assets/unicode-%C3%A9t%C3%A9.js", "text/javascript; charset=utf-8", "let x"},
		{"/about/../index.html", "text/html; charset=utf-8", "home"},
	}
	for _, tc := range cases {
		r := do(t, s, "GET", tc.path)
		if r.StatusCode != 200 {
			t.Errorf("GET %s: status %d, want 200", tc.path, r.StatusCode)
			continue
		}
		if got := r.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		b := body(t, r)
		if !strings.Contains(b, tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		if r.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
			t.Errorf("GET %s: Content-Length %s for %d bytes", tc.path, r.Header.Get("Content-Length"), len(b))
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
}

func TestDirectoryWithoutSlashRedirects(t *testing.T) {
	s := newServer(t)
	r := do(t, s, "GET", "/about?x=1")
	if r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/about/?x=1" {
		t.Errorf("GET /about: %d Location %q; want 301 to /about/?x=1", r.StatusCode, r.Header.Get("Location"))
	}
}

func TestMissingPagesGetTheSite404(t *testing.T) {
	s := newServer(t)
	for _, p := range []string{"/nope", "/nope/", "/about/missing.html", "/../../etc/passwd", "/assets/", "/404"} {
		r := do(t, s, "GET", p)
		b := body(t, r)
		if r.StatusCode != 404 || !strings.Contains(b, "not here") || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: %d %q %q; want 404 with the site's 404 page", p, r.StatusCode, r.Header.Get("Content-Type"), b[:min(len(b), 40)])
		}
		if r.Header.Get("ETag") != "" {
			t.Errorf("GET %s: a 404 must not carry the 404 page's ETag", p)
		}
	}
	// A site without 404.html still answers 404.
	fs := site()
	delete(fs, "404.html")
	s2, err := New(fs, modified)
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, s2, "GET", "/nope"); r.StatusCode != 404 {
		t.Errorf("without 404.html: status %d", r.StatusCode)
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	s := newServer(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"} {
		r := do(t, s, m, "/")
		if r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d Allow %q; want 405 with Allow: GET, HEAD", m, r.StatusCode, r.Header.Get("Allow"))
		}
	}
	get := do(t, s, "GET", "/about/")
	head := do(t, s, "HEAD", "/about/")
	if head.StatusCode != 200 || body(t, head) != "" {
		t.Errorf("HEAD: status %d with a body", head.StatusCode)
	}
	for _, h := range []string{"Content-Type", "Content-Length", "ETag", "Last-Modified"} {
		if head.Header.Get(h) == "" || head.Header.Get(h) != get.Header.Get(h) {
			t.Errorf("HEAD %s %q differs from GET's %q", h, head.Header.Get(h), get.Header.Get(h))
		}
	}
	if r := do(t, s, "HEAD", "/nope"); r.StatusCode != 404 || body(t, r) != "" {
		t.Errorf("HEAD /nope: %d", r.StatusCode)
	}
}

func TestConditionalRequests(t *testing.T) {
	s := newServer(t)
	r := do(t, s, "GET", "/about/")
	etag, lm := r.Header.Get("ETag"), r.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || lm != "Mon, 04 Mar 2024 05:06:07 GMT" {
		t.Fatalf("ETag %q Last-Modified %q", etag, lm)
	}
	cases := []struct {
		name   string
		header []string
		want   int
	}{
		{"matching etag", []string{"If-None-Match", etag}, 304},
		{"weak form of it", []string{"If-None-Match", "W/" + etag}, 304},
		{"in a list", []string{"If-None-Match", `"other", ` + etag}, 304},
		{"star", []string{"If-None-Match", "*"}, 304},
		{"other etag", []string{"If-None-Match", `"other"`}, 200},
		{"same time", []string{"If-Modified-Since", lm}, 304},
		{"later", []string{"If-Modified-Since", "Tue, 05 Mar 2024 00:00:00 GMT"}, 304},
		{"earlier", []string{"If-Modified-Since", "Sun, 03 Mar 2024 00:00:00 GMT"}, 200},
		{"garbage date", []string{"If-Modified-Since", "yesterday"}, 200},
		// If-None-Match decides alone when present (RFC 9110 13.2.2).
		{"etag mismatch beats date", []string{"If-None-Match", `"other"`, "If-Modified-Since", lm}, 200},
	}
	for _, tc := range cases {
		for _, m := range []string{"GET", "HEAD"} {
			r := do(t, s, m, "/about/", tc.header...)
			if r.StatusCode != tc.want {
				t.Errorf("%s %s: status %d, want %d", m, tc.name, r.StatusCode, tc.want)
			}
			if tc.want == 304 {
				if b := body(t, r); b != "" || r.Header.Get("ETag") != etag {
					t.Errorf("%s %s: 304 with body %q or ETag %q", m, tc.name, b, r.Header.Get("ETag"))
				}
			}
		}
	}
	// Tags differ between files, and a 404 is never "not modified".
	if do(t, s, "GET", "/").Header.Get("ETag") == etag {
		t.Error("two files share an ETag")
	}
	if r := do(t, s, "GET", "/nope", "If-None-Match", "*"); r.StatusCode != 404 {
		t.Errorf("conditional GET of a missing page: %d, want 404", r.StatusCode)
	}
}

func TestGzipForTextOnly(t *testing.T) {
	s := newServer(t)
	plain := body(t, do(t, s, "GET", "/about/"))
	cases := []struct {
		path, accept string
		gz           bool
	}{
		{"/about/", "gzip", true},
		{"/about/", "gzip, deflate, br", true},
		{"/about/", "br;q=1.0, gzip;q=0.8", true},
		{"/about/", "*", true},
		{"/about/", "gzip;q=0", false},
		{"/about/", "*, gzip;q=0", false},
		{"/about/", "*;q=0, gzip", true},
		{"/about/", "deflate", false},
		{"/about/", "", false},
		{"/feed.xml", "gzip", true},
		{"/assets/site.css", "gzip", true},
		{"/assets/logo.png", "gzip", false},  // already compressed
		{"/build-id.txt", "gzip", false},     // too small to gain
		{"/nope", "gzip", true},              // the 404 page is text too
		{"/2024/01/02/first/", "GZIP", true}, // case-insensitive
	}
	for _, tc := range cases {
		r := do(t, s, "GET", tc.path, "Accept-Encoding", tc.accept)
		got := r.Header.Get("Content-Encoding") == "gzip"
		if got != tc.gz {
			t.Errorf("GET %s Accept-Encoding %q: gzip %v, want %v", tc.path, tc.accept, got, tc.gz)
			continue
		}
		if !got {
			continue
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(zr)
		if tc.path == "/about/" && string(b) != plain {
			t.Errorf("gunzipped body differs from the plain one")
		}
		if r.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("GET %s: Vary %q", tc.path, r.Header.Get("Vary"))
		}
	}
	// The encodings have their own tags, and each revalidates itself.
	gz := do(t, s, "GET", "/about/", "Accept-Encoding", "gzip")
	id := do(t, s, "GET", "/about/")
	if gz.Header.Get("ETag") == id.Header.Get("ETag") {
		t.Error("gzip and identity share an ETag")
	}
	if r := do(t, s, "GET", "/about/", "Accept-Encoding", "gzip", "If-None-Match", gz.Header.Get("ETag")); r.StatusCode != 304 {
		t.Errorf("revalidating the gzip representation: %d", r.StatusCode)
	}
	if r := do(t, s, "GET", "/about/", "If-None-Match", gz.Header.Get("ETag")); r.StatusCode != 200 {
		t.Errorf("the gzip tag must not validate the identity representation: %d", r.StatusCode)
	}
}

func TestEmptySiteIsAnError(t *testing.T) {
	if _, err := New(fstest.MapFS{}, modified); err == nil || !strings.Contains(err.Error(), "no files") {
		t.Errorf("got %v", err)
	}
}

func TestServeOverTCP(t *testing.T) {
	s := newServer(t)
	for _, base := range []string{start(t, s), startNetHTTP(t, s)} {
		r, err := http.Get(base + "/about/")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		// Go's client asks for gzip and decompresses transparently.
		if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, "about") || !r.Uncompressed {
			t.Errorf("over TCP: %d uncompressed=%v", r.StatusCode, r.Uncompressed)
		}
	}
}

// BenchmarkLoad measures loading (hashing and compressing) a site; the init
// does it once at boot, under software emulation in the boot test.
func BenchmarkLoad(b *testing.B) {
	fs := site()
	for b.Loop() {
		if _, err := New(fs, modified); err != nil {
			b.Fatal(err)
		}
	}
}
