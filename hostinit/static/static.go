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
// It is built on fasthttp rather than net/http: measured against nginx on
// the same site (magefiles/internal/servebench, 2026-12-01), the net/http
// version reached 0.68× nginx's requests per second on a 27 KB body and
// 0.78× on a gzipped page. Profiled, a net/http request allocates its header
// map, URL and context, and a body over net/http's fixed 4 KiB write buffer
// leaves in two writes; fasthttp reuses each request's state and writes a
// response of up to writeBufferSize in one. Everything a response needs is
// computed at load.
package static

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"golang.org/x/net/netutil"
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
	readTimeout     = 10 * time.Second
	writeTimeout    = 60 * time.Second
	idleTimeout     = 30 * time.Second
)

// minGzip is the smallest body worth compressing: below it the gzip header
// and a round of CPU cost more than they save.
const minGzip = 256

type file struct {
	body, gz     []byte // gz nil when not worth compressing
	ctype        []byte
	etag, gzEtag []byte
	cache        []byte
	modTime      time.Time
	etagText     string // for the net/http range path

	// The same as net/http header values: a response assigns them to its
	// header map and copies nothing.
	hType, hCache, hETag, hGzETag, hLength, hGzLength []string
}

// route is what a path serves: a file, or a redirect to the directory.
type route struct {
	file     *file
	redirect string
	location []string // redirect as a header value
}

// Server serves one site from memory.
type Server struct {
	// MaxConns caps the connections served at once; New sets
	// DefaultMaxConns.
	MaxConns int

	routes   map[string]route // by URL path: /about/index.html, /about/ and /about
	files    int
	notFound *file
	modified time.Time
	lastMod  []byte
	hLastMod []string
	ranges   fasthttp.RequestHandler
}

// Load reads every regular file under root into memory. modified is every
// file's Last-Modified time.
func Load(root string, modified time.Time) (*Server, error) {
	return New(os.DirFS(root), modified)
}

// New reads every regular file of fsys into memory.
func New(fsys fs.FS, modified time.Time) (*Server, error) {
	s := &Server{MaxConns: DefaultMaxConns, routes: map[string]route{}, modified: modified.UTC().Truncate(time.Second)}
	s.lastMod = []byte(s.modified.Format(http.TimeFormat))
	s.hLastMod = []string{string(s.lastMod)}
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
		f, err := newFile("/"+p, body, s.modified, zw)
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
	s.ranges = fasthttpadaptor.NewFastHTTPHandlerFunc(s.serveRange)
	return s, nil
}

func newFile(urlPath string, body []byte, modified time.Time, zw *gzip.Writer) (*file, error) {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	ctype := contentType(urlPath, body)
	f := &file{
		body: body, ctype: []byte(ctype), etag: []byte(`"` + tag + `"`), etagText: `"` + tag + `"`,
		cache: []byte(CacheControl(urlPath, ctype)), modTime: modified,
	}
	f.hType, f.hCache, f.hETag = []string{ctype}, []string{string(f.cache)}, []string{f.etagText}
	f.hLength = []string{strconv.Itoa(len(body))}
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
			// A distinct tag: the two encodings are different representations.
			f.gz, f.gzEtag = b.Bytes(), []byte(`"`+tag+`-gz"`)
			f.hGzETag, f.hGzLength = []string{string(f.gzEtag)}, []string{strconv.Itoa(len(f.gz))}
		}
	}
	return f, nil
}

// Files is how many files the server holds.
func (s *Server) Files() int { return s.files }

// Header names and values, as bytes once, so a response allocates nothing.
var (
	hAllow         = []byte("Allow")
	hCacheControl  = []byte("Cache-Control")
	hCSP           = []byte("Content-Security-Policy")
	hEncoding      = []byte("Content-Encoding")
	hETag          = []byte("Etag")
	hLastModified  = []byte("Last-Modified")
	hLocation      = []byte("Location")
	hNosniff       = []byte("X-Content-Type-Options")
	hReferrer      = []byte("Referrer-Policy")
	hVary          = []byte("Vary")
	vAcceptEnc     = []byte("Accept-Encoding")
	vAllow         = []byte("GET, HEAD")
	vCSP           = []byte(ContentSecurityPolicy)
	vGzip          = []byte("gzip")
	vNosniff       = []byte("nosniff")
	vReferrer      = []byte(ReferrerPolicy)
	vRedirectCache = []byte(cacheRedirect)
	vTextPlain     = []byte("text/plain; charset=utf-8")
	method405      = []byte("405 method not allowed\n")
	body404        = []byte("404 page not found\n")
)

// fileKey carries the file to the range handler through the request's context.
type fileKey struct{}

// Handle answers one request.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.SetCanonical(hNosniff, vNosniff)
	h.SetCanonical(hReferrer, vReferrer)
	h.SetCanonical(hCSP, vCSP)
	if !ctx.IsGet() && !ctx.IsHead() {
		h.SetCanonical(hAllow, vAllow)
		h.SetContentTypeBytes(vTextPlain)
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		ctx.Response.SetBodyRaw(method405)
		return
	}
	// Path is decoded and normalised (dot segments, repeated slashes).
	r, ok := s.routes[string(ctx.Path())]
	switch {
	case ok && r.file != nil:
		if len(ctx.Request.Header.Peek(fasthttp.HeaderRange)) > 0 {
			ctx.SetUserValue(fileKey{}, r.file)
			s.ranges(ctx)
			return
		}
		s.serve(ctx, r.file, fasthttp.StatusOK)
	case ok:
		target := r.redirect
		if q := ctx.URI().QueryString(); len(q) > 0 {
			target += "?" + string(q)
		}
		h.SetCanonical(hLocation, []byte(target))
		h.SetCanonical(hCacheControl, vRedirectCache)
		ctx.SetStatusCode(fasthttp.StatusMovedPermanently)
	case s.notFound != nil:
		s.serve(ctx, s.notFound, fasthttp.StatusNotFound)
	default:
		h.SetContentTypeBytes(vTextPlain)
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.Response.SetBodyRaw(body404)
	}
}

func (s *Server) serve(ctx *fasthttp.RequestCtx, f *file, status int) {
	h := &ctx.Response.Header
	body, etag := f.body, f.etag
	if f.gz != nil {
		h.SetCanonical(hVary, vAcceptEnc)
		if acceptsGzip(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding)) {
			body, etag = f.gz, f.gzEtag
			h.SetCanonical(hEncoding, vGzip)
		}
	}
	h.SetCanonical(hCacheControl, f.cache)
	if status == fasthttp.StatusOK {
		h.SetCanonical(hETag, etag)
		h.SetCanonical(hLastModified, s.lastMod)
		if s.notModified(&ctx.Request.Header, etag) {
			h.DelBytes(hEncoding)
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return
		}
	}
	h.SetContentTypeBytes(f.ctype)
	ctx.SetStatusCode(status)
	// SetBodyRaw sends the bytes as they are, without a copy; for HEAD
	// fasthttp sends the headers, Content-Length included, and no body.
	ctx.Response.SetBodyRaw(body)
}

// serveRange answers a request with a Range header through net/http's
// ServeContent, which implements RFC 9110's ranges (206, multipart/byteranges
// for several, 416, If-Range against the ETag or date) and its conditional
// requests. Ranges apply to the identity representation: the one a
// resuming download or a media player asks for.
func (s *Server) serveRange(w http.ResponseWriter, r *http.Request) {
	f, _ := r.Context().Value(fileKey{}).(*file)
	if f == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", string(f.ctype))
	h.Set("Etag", f.etagText)
	h.Set("Cache-Control", string(f.cache))
	if f.gz != nil {
		h.Set("Vary", "Accept-Encoding")
	}
	http.ServeContent(w, r, "", f.modTime, bytes.NewReader(f.body))
}

// notModified applies RFC 9110's rules: If-None-Match, when present, decides
// alone; otherwise If-Modified-Since does.
func (s *Server) notModified(req *fasthttp.RequestHeader, etag []byte) bool {
	if inm := req.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		for len(inm) > 0 {
			var t []byte
			t, inm, _ = bytes.Cut(inm, []byte{','})
			t = bytes.TrimSpace(t)
			if string(t) == "*" || bytes.Equal(bytes.TrimPrefix(t, []byte("W/")), etag) {
				return true
			}
		}
		return false
	}
	if ims := req.Peek(fasthttp.HeaderIfModifiedSince); len(ims) > 0 {
		t, err := http.ParseTime(string(ims))
		return err == nil && !s.modified.After(t)
	}
	return false
}

// acceptsGzip reads Accept-Encoding: gzip (or x-gzip) with a q-value above
// zero; failing an explicit gzip entry, a "*" entry decides. It allocates
// nothing: it runs on every request.
func acceptsGzip(header []byte) bool {
	explicit, star := -1, -1 // -1 absent, 0 refused, 1 accepted
	for len(header) > 0 {
		var part []byte
		part, header, _ = bytes.Cut(header, []byte{','})
		coding, params, _ := bytes.Cut(part, []byte{';'})
		coding = bytes.TrimSpace(coding)
		accepted := 1
		for len(params) > 0 {
			var param []byte
			param, params, _ = bytes.Cut(params, []byte{';'})
			k, v, ok := bytes.Cut(bytes.TrimSpace(param), []byte{'='})
			if ok && len(k) == 1 && (k[0] == 'q' || k[0] == 'Q') {
				accepted = qPositive(bytes.TrimSpace(v))
			}
		}
		switch {
		case bytes.EqualFold(coding, []byte("gzip")) || bytes.EqualFold(coding, []byte("x-gzip")):
			explicit = accepted
		case len(coding) == 1 && coding[0] == '*':
			star = accepted
		}
	}
	if explicit >= 0 {
		return explicit > 0
	}
	return star > 0
}

// qPositive is 1 for a q-value above zero, 0 for zero or one that cannot be
// read (an unreadable weight accepts nothing): RFC 9110's qvalue is "0"
// ["." 0*3DIGIT] or "1" ["." 0*3("0")].
func qPositive(v []byte) int {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f <= 0 || f > 1 {
		return 0
	}
	return 1
}

// Header values for net/http, shared by every response. net/http and its
// HTTP/2 server only read them; a handler around this one that adds to a
// header (Header.Add) appends to a slice at its capacity, which copies.
var (
	nAllow         = []string{"GET, HEAD"}
	nCSP           = []string{ContentSecurityPolicy}
	nGzip          = []string{"gzip"}
	nNosniff       = []string{"nosniff"}
	nReferrer      = []string{ReferrerPolicy}
	nRedirectCache = []string{cacheRedirect}
	nServer        = []string{serverName}
	nTextPlain     = []string{"text/plain; charset=utf-8"}
	nVary          = []string{"Accept-Encoding"}
	nLen405        = []string{strconv.Itoa(len(method405))}
	nLen404        = []string{strconv.Itoa(len(body404))}
)

// serverName is the Server header.
const serverName = "blog-host"

// ServeHTTP answers one request from net/http (HTTP/1.1 or HTTP/2), as
// Handle does from fasthttp.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Server"] = nServer
	h["X-Content-Type-Options"] = nNosniff
	h["Referrer-Policy"] = nReferrer
	h["Content-Security-Policy"] = nCSP
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h["Allow"] = nAllow
		writeBody(w, r, http.StatusMethodNotAllowed, nTextPlain, nLen405, method405)
		return
	}
	rt, ok := s.routes[cleanPath(r.URL.Path)]
	switch {
	case ok && rt.file != nil:
		if _, ranged := r.Header["Range"]; ranged {
			serveRange(w, r, rt.file)
			return
		}
		s.serveFile(w, r, rt.file, http.StatusOK)
	case ok:
		loc := rt.location
		if r.URL.RawQuery != "" {
			loc = []string{rt.redirect + "?" + r.URL.RawQuery}
		}
		h["Location"] = loc
		h["Cache-Control"] = nRedirectCache
		w.WriteHeader(http.StatusMovedPermanently)
	case s.notFound != nil:
		s.serveFile(w, r, s.notFound, http.StatusNotFound)
	default:
		writeBody(w, r, http.StatusNotFound, nTextPlain, nLen404, body404)
	}
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, f *file, status int) {
	h := w.Header()
	body, etag, length, gz := f.body, f.hETag, f.hLength, false
	if f.gz != nil {
		h["Vary"] = nVary
		if acceptsGzipHeader(r.Header["Accept-Encoding"]) {
			body, etag, length, gz = f.gz, f.hGzETag, f.hGzLength, true
		}
	}
	h["Cache-Control"] = f.hCache
	if status == http.StatusOK {
		h["Etag"] = etag
		h["Last-Modified"] = s.hLastMod
		if s.notModifiedHeader(r.Header, etag[0]) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if gz {
		h["Content-Encoding"] = nGzip
	}
	writeBody(w, r, status, f.hType, length, body)
}

// writeBody sends the headers and, unless the request is HEAD, the body in
// one write: with the length known, net/http neither buffers nor chunks it.
func writeBody(w http.ResponseWriter, r *http.Request, status int, ctype, length []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = ctype
	h["Content-Length"] = length
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// serveRange is serveRange for net/http: ServeContent directly.
func serveRange(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	h["Content-Type"] = f.hType
	h["Etag"] = f.hETag
	h["Cache-Control"] = f.hCache
	if f.gz != nil {
		h["Vary"] = nVary
	}
	http.ServeContent(w, r, "", f.modTime, bytes.NewReader(f.body))
}

// cleanPath is the path a route is looked up by: dot segments and repeated
// slashes resolved, a trailing slash kept, as fasthttp normalises. A clean
// path, the common case, is returned as it is.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/./") && !strings.Contains(p, "/../") &&
		!strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..") {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// notModifiedHeader is notModified on net/http's header, where a field
// sent on several lines has several values.
func (s *Server) notModifiedHeader(req http.Header, etag string) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		for _, line := range inm {
			for line != "" {
				var t string
				t, line, _ = strings.Cut(line, ",")
				t = strings.TrimSpace(t)
				if t == "*" || strings.TrimPrefix(t, "W/") == etag {
					return true
				}
			}
		}
		return false
	}
	if ims := req["If-Modified-Since"]; len(ims) > 0 && ims[0] != "" {
		if ims[0] == s.hLastMod[0] {
			return true // the date we sent, sent back: no need to parse it
		}
		t, err := http.ParseTime(ims[0])
		return err == nil && !s.modified.After(t)
	}
	return false
}

// acceptsGzipHeader is acceptsGzip over every Accept-Encoding line.
func acceptsGzipHeader(lines []string) bool {
	explicit, star := -1, -1 // -1 absent, 0 refused, 1 accepted
	for _, header := range lines {
		for header != "" {
			var part string
			part, header, _ = strings.Cut(header, ",")
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			accepted := 1
			for params != "" {
				var param string
				param, params, _ = strings.Cut(params, ";")
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if ok && (k == "q" || k == "Q") {
					accepted = qPositive([]byte(strings.TrimSpace(v)))
				}
			}
			switch {
			case strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip"):
				explicit = accepted
			case coding == "*":
				star = accepted
			}
		}
	}
	if explicit >= 0 {
		return explicit > 0
	}
	return star > 0
}

// Serve listens on addr and serves until ctx ends.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends, at most s.MaxConns connections
// at once: the others wait in the kernel's accept queue until one closes.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := s.server()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.ShutdownWithContext(shutdown)
	}()
	if err := srv.Serve(netutil.LimitListener(ln, s.MaxConns)); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

func (s *Server) server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      s.Handle,
		Name:                         "blog-host",
		Concurrency:                  s.MaxConns,
		ReadBufferSize:               readBufferSize,
		WriteBufferSize:              writeBufferSize,
		ReadTimeout:                  readTimeout,
		WriteTimeout:                 writeTimeout,
		IdleTimeout:                  idleTimeout,
		MaxRequestBodySize:           4 << 10, // GET and HEAD carry no body
		ReduceMemoryUsage:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		NoDefaultContentType:         true,
		Logger:                       discardLogger{},
	}
}

// discardLogger keeps fasthttp's per-connection errors (timeouts, resets:
// the internet's noise) off the serial console, which EC2 keeps only the
// last 64 KB of.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
