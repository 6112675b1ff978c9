package secure_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/unikernel-blog/blog/hostinit/secure"
	"github.com/unikernel-blog/blog/hostinit/static"
)

// staticSite is the real static server on a small site.
func staticSite(t testing.TB) *static.Server {
	t.Helper()
	css := strings.Repeat("body { margin: 0 auto; max-width: 40em; }\n", 200)
	srv, err := static.New(fstest.MapFS{
		"index.html":           {Data: []byte(`<!DOCTYPE html><html><head><meta name="build-id" content="b1"></head><body>home</body></html>` + "\n")},
		"2026/post/index.html": {Data: []byte("<p>a post</p>\n")},
		"assets/main.css":      {Data: []byte(css)},
		"404.html":             {Data: []byte("<h1>not here</h1>\n")},
	}, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestTheStaticServerOverHTTPS: the static server's net/http front end
// answers through the TLS layer, over HTTP/2 and HTTP/1.1, as it does
// itself: pages, HEAD's length, 304, ranges, gzip, its 404 and redirects,
// 405.
func TestTheStaticServerOverHTTPS(t *testing.T) {
	cert, pool := selfSigned(t, "blog.example.com")
	tlsAddr, _ := start(t, secure.Config{Domain: "blog.example.com", HSTSMaxAge: 60, Cert: cert, MaxConns: 8}, staticSite(t))
	for _, h2 := range []bool{true, false} {
		t.Run(map[bool]string{true: "HTTP/2", false: "HTTP/1.1"}[h2], func(t *testing.T) { overHTTPS(t, client(tlsAddr, pool, h2), h2) })
	}
}

func overHTTPS(t *testing.T, c *http.Client, h2 bool) {
	do := func(method, path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://blog.example.com"+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		r, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		if (r.ProtoMajor == 2) != h2 {
			t.Errorf("%s %s over %s", method, path, r.Proto)
		}
		return r, b
	}
	r, page := do("GET", "/")
	if r.StatusCode != 200 || !bytes.Contains(page, []byte(`content="b1"`)) || r.Header.Get("Content-Type") != "text/html; charset=utf-8" || r.Header.Get("Strict-Transport-Security") != "max-age=60" {
		t.Errorf("GET /: %d %q %v", r.StatusCode, page, r.Header)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("ETag") == "" || r.Header.Get("Cache-Control") == "" {
		t.Errorf("the static server's headers did not come through: %v", r.Header)
	}
	h, body := do("HEAD", "/")
	if h.StatusCode != 200 || len(body) != 0 || h.ContentLength != int64(len(page)) {
		t.Errorf("HEAD /: %d, %d body bytes, Content-Length %d (GET had %d)", h.StatusCode, len(body), h.ContentLength, len(page))
	}
	if r2, b := do("GET", "/", "If-None-Match", r.Header.Get("ETag")); r2.StatusCode != 304 || len(b) != 0 {
		t.Errorf("revalidation: %d with %d bytes", r2.StatusCode, len(b))
	}
	if r2, b := do("GET", "/", "Range", "bytes=0-8"); r2.StatusCode != 206 || string(b) != "<!DOCTYPE" {
		t.Errorf("range: %d %q", r2.StatusCode, b)
	}
	// The client asks for gzip itself, so it sees the encoded body.
	r2, gz := do("GET", "/assets/main.css", "Accept-Encoding", "gzip")
	if r2.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip: %v", r2.Header)
	} else if zr, err := gzip.NewReader(bytes.NewReader(gz)); err != nil {
		t.Error(err)
	} else if plain, _ := io.ReadAll(zr); !strings.HasPrefix(string(plain), "body {") {
		t.Errorf("gzip body %q", plain[:20])
	}
	if r2, b := do("GET", "/nope"); r2.StatusCode != 404 || string(b) != "<h1>not here</h1>\n" {
		t.Errorf("404: %d %q", r2.StatusCode, b)
	}
	if r2, _ := do("GET", "/2026/post?x=1"); r2.StatusCode != 301 || r2.Header.Get("Location") != "/2026/post/?x=1" || r2.Header.Get("Content-Type") != "" {
		t.Errorf("directory redirect: %d %v", r2.StatusCode, r2.Header)
	}
	if r2, _ := do("POST", "/"); r2.StatusCode != 405 || r2.Header.Get("Allow") == "" {
		t.Errorf("POST: %d %v", r2.StatusCode, r2.Header)
	}
}
