package static

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/valyala/fasthttp"
)

// jekyllSite is what Jekyll with jekyll-feed and a theme writes: an Atom
// feed, an RSS feed from a hand-written template, a JSON Feed, a sitemap,
// the theme's assets (one fingerprinted) and a post with an image.
func jekyllSite() fstest.MapFS {
	fs := site()
	fs["feed.xml"] = &fstest.MapFile{Data: []byte(`<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Blog</title>` + strings.Repeat("<entry><title>x</title></entry>", 800) + `</feed>`)}
	fs["rss.xml"] = &fstest.MapFile{Data: []byte(`<?xml version="1.0"?><?xml-stylesheet href="/rss.xsl"?><rss version="2.0"><channel><title>Blog</title></channel></rss>`)}
	fs["feed.json"] = &fstest.MapFile{Data: []byte(`{"version": "https://jsonfeed.org/version/1.1", "title": "Blog", "items": []}`)}
	fs["sitemap.xml"] = &fstest.MapFile{Data: []byte(`<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>`)}
	fs["assets/app.3f2a9c1b8d.js"] = &fstest.MapFile{Data: []byte("let y = 2;\n")}
	fs["2024/01/02/first/photo.jpg"] = &fstest.MapFile{Data: []byte("\xff\xd8\xff photo")}
	return fs
}

func newJekyllServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(jekyllSite(), modified)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFeedsAreServedAsFeeds(t *testing.T) {
	s := newJekyllServer(t)
	for p, want := range map[string]string{
		"/feed.xml":    "application/atom+xml; charset=utf-8",
		"/rss.xml":     "application/rss+xml; charset=utf-8",
		"/feed.json":   "application/feed+json; charset=utf-8",
		"/sitemap.xml": "application/xml; charset=utf-8",
		"/data.bin":    "application/octet-stream",
	} {
		if got := do(t, s, "GET", p).Header.Get("Content-Type"); got != want {
			t.Errorf("%s: Content-Type %q, want %q", p, got, want)
		}
	}
	// A feed is text: it is served gzipped to a reader that accepts it.
	if r := do(t, s, "GET", "/feed.xml", "Accept-Encoding", "gzip"); r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("the Atom feed is not compressed: %v", r.Header)
	}
}

func TestCacheControlByKindOfFile(t *testing.T) {
	s := newJekyllServer(t)
	for p, want := range map[string]string{
		"/":                           CacheRevalidate, // pages change under the same URL with every build
		"/about/":                     CacheRevalidate,
		"/feed.xml":                   CacheRevalidate,
		"/feed.json":                  CacheRevalidate,
		"/build-id.txt":               CacheRevalidate,
		"/robots.txt":                 CacheRevalidate,
		"/nope":                       CacheRevalidate, // the 404 page
		"/assets/app.3f2a9c1b8d.js":   CacheImmutable,  // a content hash in the name
		"/assets/site.css":            CacheAssets,
		"/assets/logo.png":            CacheAssets,
		"/2024/01/02/first/photo.jpg": CacheOther,
		"/fonts/x.woff2":              CacheOther,
	} {
		if got := do(t, s, "GET", p).Header.Get("Cache-Control"); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", p, got, want)
		}
	}
	// A 304 carries the Cache-Control a 200 would (RFC 9110 15.4.5).
	etag := do(t, s, "GET", "/assets/site.css").Header.Get("ETag")
	if r := do(t, s, "GET", "/assets/site.css", "If-None-Match", etag); r.StatusCode != 304 || r.Header.Get("Cache-Control") != CacheAssets {
		t.Errorf("304: %d Cache-Control %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	if got := CacheControl("/assets/deadbeefcafe.css", "text/css"); got != CacheAssets {
		t.Errorf("a name of hex letters only is not a hash: %q", got)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	s := newJekyllServer(t)
	etag := do(t, s, "GET", "/about/").Header.Get("ETag")
	for _, c := range []struct {
		method, path string
		header       []string
		status       int
	}{
		{"GET", "/", nil, 200},
		{"HEAD", "/feed.xml", nil, 200},
		{"GET", "/nope", nil, 404},
		{"GET", "/about", nil, 301},
		{"GET", "/about/", []string{"If-None-Match", etag}, 304},
		{"GET", "/feed.xml", []string{"Range", "bytes=0-9"}, 206},
		{"POST", "/", nil, 405},
	} {
		r := do(t, s, c.method, c.path, c.header...)
		if r.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, r.StatusCode, c.status)
		}
		for h, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "strict-origin-when-cross-origin",
			"Content-Security-Policy": "base-uri 'self'; object-src 'none'; frame-ancestors 'self'",
			"Server":                  "blog-host",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s %s (%d): %s %q, want %q", c.method, c.path, r.StatusCode, h, got, want)
			}
		}
	}
}

// Ranges are answered exactly as net/http's ServeContent answers them for
// the same bytes: one range, several, If-Range, and ranges it cannot satisfy.
func TestRangesAsTheStandardLibraryAnswersThem(t *testing.T) {
	s := newJekyllServer(t)
	feed := jekyllSite()["feed.xml"].Data
	etag := do(t, s, "GET", "/feed.xml").Header.Get("ETag")
	for _, c := range []struct {
		name   string
		header []string
		status int
	}{
		{"one range", []string{"Range", "bytes=0-99"}, 206},
		{"suffix", []string{"Range", "bytes=-50"}, 206},
		{"open end", []string{"Range", "bytes=20000-"}, 206},
		{"several", []string{"Range", "bytes=0-9,100-199"}, 206},
		{"If-Range with the ETag", []string{"Range", "bytes=0-9", "If-Range", etag}, 206},
		{"If-Range with another ETag", []string{"Range", "bytes=0-9", "If-Range", `"old"`}, 200},
		{"If-Range with the date", []string{"Range", "bytes=0-9", "If-Range", "Mon, 04 Mar 2024 05:06:07 GMT"}, 206},
		{"unsatisfiable", []string{"Range", "bytes=99999999-"}, 416},
		{"gzip asked: ranges of the identity bytes", []string{"Range", "bytes=0-9", "Accept-Encoding", "gzip"}, 206},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := do(t, s, "GET", "/feed.xml", c.header...)
			// The reference: ServeContent over the same bytes and headers.
			req := httptest.NewRequest("GET", "/feed.xml", nil)
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			rec := httptest.NewRecorder()
			rec.Header().Set("Etag", etag)
			rec.Header().Set("Content-Type", TypeAtom)
			http.ServeContent(rec, req, "", modified, bytes.NewReader(feed))
			want := rec.Result()

			if got.StatusCode != c.status || want.StatusCode != c.status {
				t.Fatalf("status %d (net/http: %d), want %d", got.StatusCode, want.StatusCode, c.status)
			}
			for _, h := range []string{"Content-Range", "Content-Length", "Accept-Ranges", "Last-Modified"} {
				// A recorder leaves out the Content-Length net/http's server
				// adds to a short error.
				if h == "Content-Length" && want.Header.Get(h) == "" {
					continue
				}
				if got.Header.Get(h) != want.Header.Get(h) {
					t.Errorf("%s %q, net/http %q", h, got.Header.Get(h), want.Header.Get(h))
				}
			}
			if got.Header.Get("Content-Encoding") != "" {
				t.Errorf("a range of gzipped bytes: %v", got.Header)
			}
			gb, wb := body(t, got), body(t, want)
			if strings.HasPrefix(want.Header.Get("Content-Type"), "multipart/byteranges") {
				// The boundary is random: compare the parts.
				if !strings.HasPrefix(got.Header.Get("Content-Type"), "multipart/byteranges; boundary=") ||
					strings.Count(gb, "Content-Range: bytes") != 2 || !strings.Contains(gb, string(feed[100:200])) {
					t.Errorf("multipart answer %q:\n%s", got.Header.Get("Content-Type"), gb)
				}
				return
			}
			if gb != wb || got.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
				t.Errorf("body or type differ from net/http's: %q %q vs %q %q", got.Header.Get("Content-Type"), gb[:min(len(gb), 40)], want.Header.Get("Content-Type"), wb[:min(len(wb), 40)])
			}
		})
	}
}

// The (MaxConns+1)th connection is not served until one of the others
// closes: it waits in the kernel's accept queue, holding no memory of ours.
func TestConnectionsAreCapped(t *testing.T) {
	s := newJekyllServer(t)
	s.MaxConns = 2
	base := strings.TrimPrefix(start(t, s), "http://")
	request := "GET /build-id.txt HTTP/1.1\r\nHost: x\r\n\r\n"
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}
	answered := func(c net.Conn, r *bufio.Reader, wait time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	first, r1 := dial()
	second, r2 := dial()
	if !answered(first, r1, 5*time.Second) || !answered(second, r2, 5*time.Second) {
		t.Fatal("the first two connections were not served")
	}
	third, r3 := dial()
	// Both keep-alive connections are open: the third waits.
	if answered(third, r3, 300*time.Millisecond) {
		t.Fatal("a third connection was served while two were open")
	}
	first.Close()
	if !answered(third, r3, 5*time.Second) {
		t.Error("the third connection was not served after one closed")
	}
	_ = second
}

// Serving a file allocates nothing: the header values are bytes computed at
// load, fasthttp reuses the request's state, and the body is sent as held.
func TestServingAllocatesNothing(t *testing.T) {
	s := newJekyllServer(t)
	for _, c := range []struct{ path, accept string }{{"/", ""}, {"/", "gzip, deflate, br"}, {"/feed.xml", "gzip"}, {"/nope", ""}} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(c.path)
		ctx.Request.Header.Set("Accept-Encoding", c.accept)
		s.Handle(&ctx) // the first response sizes the reused buffers
		allocs := testing.AllocsPerRun(100, func() {
			ctx.Response.Reset()
			s.Handle(&ctx)
		})
		if allocs != 0 {
			t.Errorf("GET %s (Accept-Encoding %q): %.0f allocations per request", c.path, c.accept, allocs)
		}
	}
}

// headerWriter is an http.ResponseWriter that keeps its header map from
// one request to the next, so that what TestServeHTTPAllocatesNothing
// counts is the handler's own allocations: net/http gives each response a
// new map, which is net/http's cost (BenchmarkOneConnection measures it
// with the rest of the server's).
type headerWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) WriteHeader(status int)      { w.status = status }
func (w *headerWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// The net/http front end allocates nothing either to answer a file, a
// revalidation, a redirect without a query or an error: header values are
// slices computed at load, assigned to the map, and the body is written as
// held.
func TestServeHTTPAllocatesNothing(t *testing.T) {
	s := newJekyllServer(t)
	etag := do(t, s, "GET", "/about/").Header.Get("ETag")
	for _, c := range []struct {
		method, path string
		header       []string
		status       int
	}{
		{"GET", "/", nil, 200},
		{"GET", "/", []string{"Accept-Encoding", "gzip, deflate, br"}, 200},
		{"GET", "/feed.xml", []string{"Accept-Encoding", "gzip"}, 200},
		{"GET", "/feed.xml", []string{"Accept-Encoding", "br;q=1.0, gzip;q=0.8"}, 200},
		{"HEAD", "/about/", nil, 200},
		{"GET", "/nope", nil, 404},
		{"GET", "/about/", []string{"If-None-Match", etag}, 304},
		{"GET", "/about/", []string{"If-Modified-Since", "Mon, 04 Mar 2024 05:06:07 GMT"}, 304},
		{"GET", "/about", nil, 301},
		{"POST", "/", nil, 405},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		for i := 0; i+1 < len(c.header); i += 2 {
			r.Header.Set(c.header[i], c.header[i+1])
		}
		w := &headerWriter{h: http.Header{}}
		s.ServeHTTP(w, r) // the first response sizes the map
		if w.status != c.status {
			t.Errorf("%s %s %q: status %d, want %d", c.method, c.path, c.header, w.status, c.status)
		}
		allocs := testing.AllocsPerRun(100, func() {
			clear(w.h)
			s.ServeHTTP(w, r)
		})
		if allocs != 0 {
			t.Errorf("%s %s %q: %.0f allocations per request", c.method, c.path, c.header, allocs)
		}
	}
}

// What curl, a client we did not write, sees over TCP.
func TestCurlSeesRangesTypesAndHeaders(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl not found on PATH (CI must install it: see .ci/install)")
		}
		t.Skip("curl not found on PATH; install it with `apt-get install curl`")
	}
	s := newJekyllServer(t)
	for _, base := range []string{start(t, s), startNetHTTP(t, s)} {
		curlSees(t, curl, base)
	}
}

func curlSees(t *testing.T, curl, base string) {
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "-D", "-", "-o", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}
	size := len(jekyllSite()["feed.xml"].Data)
	checks := []struct {
		args []string
		want []string
	}{
		{[]string{"-r", "0-99", base + "/feed.xml"}, []string{"HTTP/1.1 206 Partial Content", "Content-Range: bytes 0-99/" + strconv.Itoa(size), "Content-Length: 100", "Content-Type: application/atom+xml; charset=utf-8"}},
		{[]string{base + "/feed.xml"}, []string{"HTTP/1.1 200 OK", "Content-Type: application/atom+xml; charset=utf-8", "Cache-Control: no-cache", "Etag: \""}},
		{[]string{"--compressed", base + "/"}, []string{"Content-Encoding: gzip", "Vary: Accept-Encoding", "Cache-Control: no-cache", "Content-Security-Policy: base-uri 'self'; object-src 'none'; frame-ancestors 'self'", "Referrer-Policy: strict-origin-when-cross-origin", "X-Content-Type-Options: nosniff"}},
		{[]string{base + "/assets/site.css"}, []string{"Cache-Control: public, max-age=86400"}},
		{[]string{base + "/assets/app.3f2a9c1b8d.js"}, []string{"Cache-Control: public, max-age=31536000, immutable"}},
		{[]string{base + "/2024/01/02/first/photo.jpg"}, []string{"Content-Type: image/jpeg", "Cache-Control: public, max-age=3600"}},
		{[]string{base + "/nope"}, []string{"HTTP/1.1 404 Not Found", "Content-Type: text/html; charset=utf-8"}},
	}
	for _, c := range checks {
		out := run(c.args...)
		for _, want := range c.want {
			if !strings.Contains(out, want) {
				t.Errorf("curl %s: no %q in\n%s", strings.Join(c.args, " "), want, out)
			}
		}
	}
}
