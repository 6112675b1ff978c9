// Package static is the host's built-in web server for the static payload: it
// serves the site's files from memory, as the Mirage unikernel would, and
// nothing else.
//
// What it does: GET and HEAD only; content types from a fixed table (the
// initramfs has no /etc/mime.types), feeds told apart by their root element
// (Atom, RSS) or version (JSON Feed); /dir/ serves /dir/index.html and /dir
// redirects to /dir/; unknown paths get the site's 404.html with status 404;
// strong ETags and Last-Modified with If-None-Match / If-Modified-Since
// answered by 304; gzip for text when the client accepts it, compressed once
// at load; byte ranges (206, If-Range, multipart/byteranges) exactly as
// net/http's ServeContent answers them; Cache-Control by kind of file (see
// CacheControl); security headers a Jekyll theme does not trip over; a cap
// on concurrent connections.
//
// One model of the site, loaded once (every header value computed at load),
// and one set of decisions (decide: method, route, 404, redirect, gzip,
// conditional, range) serve two front ends, which only read a request and
// write the answer decided: ServeHTTP for net/http, which hostinit/secure
// serves for HTTP/2 over TLS, and Handle for fasthttp, which serves
// HTTP/1.1: plain HTTP (https off) and, behind hostinit/secure, over TLS
// (with https on, port 80 only redirects). ALPN picks between them on
// port 443; browsers take HTTP/2. Neither allocates to answer a file
// (TestServingAllocatesNothing, TestServeHTTPAllocatesNothing).
//
// Why two: HTTP/2 needs net/http, since fasthttp has none. HTTP/1.1 could
// take net/http too, but measured on the same site
// (magefiles/internal/servebench, 2026-12-01, wrk, interleaved rounds)
// net/http with this same handler served 0.66–0.75× fasthttp's requests per
// second on plain HTTP; over TLS (hostinit/secure with either behind it,
// each variant fixed at start, 4 interleaved rounds, 2026-12-01, commit
// 1ad7c1f) it took 32–34/31–34/63–67 µs of the server's CPU per request
// (page, gzipped page, feed) against fasthttp's 18–22/21–22/33–40, and
// served 18–22k against 24–29k requests per second on the page (the
// earlier "0.85–0.94× at about the same CPU" came from broken A/B runs):
// per request net/http allocates its request, header maps, URL and context
// (about 20 allocations, BenchmarkOneConnection), and a body larger than
// its fixed 4 KiB write buffer leaves in two writes, where fasthttp reuses
// each request's state and writes a response of up to writeBufferSize in
// one. That is not close enough to give up for one front end of about a
// hundred lines.
package static

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// NotFoundPage is the site's 404 page, which Jekyll writes at the root.
const NotFoundPage = "/404.html"

// types maps extensions to content types. Text types carry their charset:
// Jekyll writes UTF-8. Feeds are told apart by content at load (feedType).
var types = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".xml":         "application/xml; charset=utf-8",
	".atom":        "application/atom+xml; charset=utf-8",
	".rss":         "application/rss+xml; charset=utf-8",
	".txt":         "text/plain; charset=utf-8",
	".md":          "text/markdown; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/vnd.microsoft.icon",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".pdf":         "application/pdf",
	".wasm":        "application/wasm",
	".webmanifest": "application/manifest+json",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".ogg":         "audio/ogg",
}

// Feed content types: RFC 4287 (Atom), the RSS Advisory Board's
// application/rss+xml, and JSON Feed 1.1's application/feed+json.
const (
	TypeAtom     = "application/atom+xml; charset=utf-8"
	TypeRSS      = "application/rss+xml; charset=utf-8"
	TypeJSONFeed = "application/feed+json; charset=utf-8"
)

// ContentType is the content type served for a file name, by extension.
func ContentType(name string) string {
	if t, ok := types[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

// contentType is ContentType corrected by the content for feeds: an .xml
// file whose root element is Atom's <feed> or <rss>, or a .json file that
// declares a JSON Feed version.
func contentType(name string, body []byte) string {
	t := ContentType(name)
	switch strings.ToLower(path.Ext(name)) {
	case ".xml":
		d := xml.NewDecoder(bytes.NewReader(body))
		for {
			tok, err := d.Token()
			if err != nil {
				return t
			}
			if el, ok := tok.(xml.StartElement); ok {
				switch {
				case el.Name.Local == "feed" && el.Name.Space == "http://www.w3.org/2005/Atom":
					return TypeAtom
				case el.Name.Local == "rss":
					return TypeRSS
				}
				return t
			}
		}
	case ".json":
		var feed struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(body, &feed) == nil && strings.HasPrefix(feed.Version, "https://jsonfeed.org/version/") {
			return TypeJSONFeed
		}
	}
	return t
}

// Compressible says whether gzip helps: text formats do, images and fonts
// (already compressed) do not.
func Compressible(ctype string) bool {
	if strings.HasPrefix(ctype, "text/") {
		return true
	}
	for _, t := range []string{"application/json", "application/xml", "application/atom+xml", "application/rss+xml", "application/feed+json", "image/svg+xml", "application/manifest+json", "application/wasm"} {
		if strings.HasPrefix(ctype, t) {
			return true
		}
	}
	return false
}

// Cache-Control by kind of file. HTML, feeds and the site's small text files
// change with every build under the same URL: caches keep them but ask
// again each time (a 304 when unchanged). A file whose name carries a
// content hash never changes under its URL: a year, immutable. Other files
// under /assets/ (a theme's CSS, images) change rarely but keep their names
// (Jekyll does not fingerprint): a day, so a redesign reaches returning
// readers the next day. Anything else (images and downloads beside posts):
// an hour.
const (
	CacheRevalidate  = "no-cache"
	CacheImmutable   = "public, max-age=31536000, immutable"
	CacheAssets      = "public, max-age=86400"
	CacheOther       = "public, max-age=3600"
	cacheRedirect    = "public, max-age=3600"
	assetsPrefix     = "/assets/"
	fingerprintDigit = "0123456789"
)

// fingerprint is a content hash in a file name: 8 or more hex digits
// between a dash or dot and the extension (style-3f2a9c1b.css,
// app.0f5c3b2f6a.js).
var fingerprint = regexp.MustCompile(`[-.]([0-9a-f]{8,})\.[A-Za-z0-9]+$`)

// CacheControl is the Cache-Control for the file at urlPath with ctype.
func CacheControl(urlPath, ctype string) string {
	mime, _, _ := strings.Cut(ctype, ";")
	switch mime {
	case "text/html", "application/xml", "application/atom+xml", "application/rss+xml", "application/feed+json",
		"application/json", "text/plain", "application/manifest+json", "text/markdown":
		return CacheRevalidate
	}
	if m := fingerprint.FindStringSubmatch(path.Base(urlPath)); m != nil && strings.ContainsAny(m[1], fingerprintDigit) {
		return CacheImmutable
	}
	if strings.HasPrefix(urlPath, assetsPrefix) {
		return CacheAssets
	}
	return CacheOther
}

// Security headers on every response. The Content-Security-Policy is what
// no Jekyll theme trips over: it restricts only what a static blog never
// needs — a <base> pointing elsewhere, plugins (<object>, <embed>), being
// framed by other sites — and leaves scripts, styles, fonts, images, frames
// and forms alone, which themes load inline and from CDNs and which posts
// embed (videos, gists, comment widgets).
const (
	ContentSecurityPolicy = "base-uri 'self'; object-src 'none'; frame-ancestors 'self'"
	ReferrerPolicy        = "strict-origin-when-cross-origin"
)

// Limits. A t3.nano has 512 MiB: at most DefaultMaxConns connections are served at
// once (more wait in the kernel's accept queue), an idle one costs no
// buffers (ReduceMemoryUsage returns them to a pool), and slow or idle
// clients are cut off by the timeouts.
const (
	DefaultMaxConns = 1024
	readBufferSize  = 16 << 10 // also the largest request header accepted
	writeBufferSize = 64 << 10 // a response up to this size leaves in one write
)

// Timeouts, shared by every front end and protocol (hostinit/secure uses
// them for HTTPS too): a request's headers (and a TLS handshake) within
// HeaderTimeout, a response written within WriteTimeout, an idle
// keep-alive connection closed after IdleTimeout.
const (
	HeaderTimeout = 10 * time.Second
	WriteTimeout  = 60 * time.Second
	IdleTimeout   = 30 * time.Second
)

// ServerName is the Server header; textPlain the type of the short error
// bodies (405, and 404 on a site without a 404 page).
const (
	ServerName = "blog-host"
	textPlain  = "text/plain; charset=utf-8"
)

// minGzip is the smallest body worth compressing: below it the gzip header
// and a round of CPU cost more than they save.
const minGzip = 256

// file is one file of the site, with every header value it is served
// with, as each front end sends it: bytes for fasthttp, one-element
// slices for net/http's header map.
type file struct {
	identity representation
	gzip     *representation // nil when not worth compressing
	ctype    []byte
	hType    []string
	cache    []byte
	hCache   []string
}

// representation is one encoding of a file: its bytes and its validator
// (the encodings are different representations, with different tags).
type representation struct {
	body    []byte
	gzipped bool
	etag    string
	bETag   []byte
	hETag   []string
	hLength []string // fasthttp writes its own Content-Length
}

func newRepresentation(body []byte, gzipped bool, etag string) representation {
	return representation{body: body, gzipped: gzipped, etag: etag, bETag: []byte(etag), hETag: []string{etag}, hLength: []string{strconv.Itoa(len(body))}}
}

// route is what a path serves: a file, or a redirect to the directory.
type route struct {
	file     *file
	redirect string
	location []string // redirect as net/http's header value
}

// Server serves one site from memory.
type Server struct {
	// MaxConns caps the connections served at once; New sets
	// DefaultMaxConns.
	MaxConns int

	routes   map[string]route // by URL path: /about/index.html, /about/ and /about
	files    int
	notFound *file
	modified time.Time // every file's Last-Modified
	lastMod  string
	bLastMod []byte
	hLastMod []string
	ranges   fasthttp.RequestHandler // ServeHTTP for fasthttp's ranged requests
}

// Load reads every regular file under root into memory. modified is every
// file's Last-Modified time.
func Load(root string, modified time.Time) (*Server, error) {
	return New(os.DirFS(root), modified)
}

// New reads every regular file of fsys into memory.
func New(fsys fs.FS, modified time.Time) (*Server, error) {
	s := &Server{MaxConns: DefaultMaxConns, routes: map[string]route{}, modified: modified.UTC().Truncate(time.Second)}
	s.lastMod = s.modified.Format(http.TimeFormat)
	s.bLastMod, s.hLastMod = []byte(s.lastMod), []string{s.lastMod}
	// One compressor for all files: each costs about a megabyte of tables,
	// which matters at boot on a small instance or an emulated CPU.
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestCompression)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f, err := newFile("/"+p, body, zw)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		s.routes["/"+p] = route{file: f}
		s.files++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading the site: %w", err)
	}
	if s.files == 0 {
		return nil, errors.New("loading the site: no files; the image was built without the site")
	}
	// Directories: /dir/ serves /dir/index.html, and /dir redirects to
	// /dir/ (relative links in its page need the slash), unless a file is
	// named /dir.
	for p, r := range s.routes {
		if dir, ok := strings.CutSuffix(p, "/index.html"); ok && r.file != nil {
			s.routes[dir+"/"] = r
			if _, taken := s.routes[dir]; !taken && dir != "" {
				s.routes[dir] = route{redirect: dir + "/", location: []string{dir + "/"}}
			}
		}
	}
	if r, ok := s.routes[NotFoundPage]; ok {
		s.notFound = r.file
	}
	s.ranges = fasthttpadaptor.NewFastHTTPHandler(s)
	return s, nil
}

func newFile(urlPath string, body []byte, zw *gzip.Writer) (*file, error) {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	ctype := contentType(urlPath, body)
	cache := CacheControl(urlPath, ctype)
	f := &file{
		identity: newRepresentation(body, false, `"`+tag+`"`),
		ctype:    []byte(ctype), hType: []string{ctype},
		cache: []byte(cache), hCache: []string{cache},
	}
	if Compressible(ctype) && len(body) >= minGzip {
		var b bytes.Buffer
		zw.Reset(&b)
		if _, err := zw.Write(body); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		if b.Len() < len(body) {
			gz := newRepresentation(b.Bytes(), true, `"`+tag+`-gz"`)
			f.gzip = &gz
		}
	}
	return f, nil
}

// Files is how many files the server holds.
func (s *Server) Files() int { return s.files }
