// Package static is the host's built-in web server for the static payload: it
// serves the site's files from memory, as the Mirage unikernel would, and
// nothing else.
//
// What it does: GET and HEAD only; content types from a fixed table (the
// initramfs has no /etc/mime.types); /dir/ serves /dir/index.html and /dir
// redirects to /dir/; unknown paths get the site's 404.html with status 404;
// strong ETags and Last-Modified with If-None-Match / If-Modified-Since
// answered by 304; gzip for text when the client accepts it, compressed once
// at load.
package static

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// NotFoundPage is the site's 404 page, which Jekyll writes at the root.
const NotFoundPage = "/404.html"

// types maps extensions to content types. Text types carry their charset:
// Jekyll writes UTF-8.
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
}

// ContentType is the content type served for a file name.
func ContentType(name string) string {
	if t, ok := types[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

// compressible says whether gzip helps: text formats do, images and fonts
// (already compressed) do not.
func compressible(ctype string) bool {
	if strings.HasPrefix(ctype, "text/") {
		return true
	}
	for _, t := range []string{"application/json", "application/xml", "application/atom+xml", "application/rss+xml", "image/svg+xml", "application/manifest+json", "application/wasm"} {
		if strings.HasPrefix(ctype, t) {
			return true
		}
	}
	return false
}

// minGzip is the smallest body worth compressing: below it the gzip header
// and a round of CPU cost more than they save.
const minGzip = 256

type file struct {
	body   []byte
	gz     []byte // nil when not worth compressing
	ctype  string
	etag   string
	gzEtag string
}

// Server serves one site from memory.
type Server struct {
	files    map[string]*file // by URL path, e.g. /about/index.html
	notFound *file
	modified time.Time
	lastMod  string
}

// Load reads every regular file under root into memory. modified is every
// file's Last-Modified time.
func Load(root string, modified time.Time) (*Server, error) {
	return New(os.DirFS(root), modified)
}

// New reads every regular file of fsys into memory.
func New(fsys fs.FS, modified time.Time) (*Server, error) {
	s := &Server{files: map[string]*file{}, modified: modified.UTC().Truncate(time.Second)}
	s.lastMod = s.modified.Format(http.TimeFormat)
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
		f, err := newFile(p, body, zw)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		s.files["/"+p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading the site: %w", err)
	}
	if len(s.files) == 0 {
		return nil, errors.New("loading the site: no files; the image was built without the site")
	}
	s.notFound = s.files[NotFoundPage]
	return s, nil
}

func newFile(name string, body []byte, zw *gzip.Writer) (*file, error) {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	f := &file{body: body, ctype: ContentType(name), etag: `"` + tag + `"`}
	if compressible(f.ctype) && len(body) >= minGzip {
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
			f.gz, f.gzEtag = b.Bytes(), `"`+tag+`-gz"`
		}
	}
	return f, nil
}

// Files is how many files the server holds.
func (s *Server) Files() int { return len(s.files) }

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", "blog-host")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if strings.HasSuffix(clean, "/") {
		if f := s.files[clean+"index.html"]; f != nil {
			s.serve(w, r, f, http.StatusOK)
			return
		}
	} else if f := s.files[clean]; f != nil {
		s.serve(w, r, f, http.StatusOK)
		return
	} else if s.files[clean+"/index.html"] != nil {
		// A directory named without its slash: relative links in its page
		// need the slash, so redirect as web servers do.
		target := clean + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		h.Set("Location", target)
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	if s.notFound != nil {
		s.serve(w, r, s.notFound, http.StatusNotFound)
		return
	}
	http.Error(w, "404 page not found", http.StatusNotFound)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, f *file, status int) {
	h := w.Header()
	body, etag := f.body, f.etag
	if f.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = f.gz, f.gzEtag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Type", f.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusOK {
		h.Set("ETag", etag)
		h.Set("Last-Modified", s.lastMod)
		if s.notModified(r, etag) {
			h.Del("Content-Type")
			h.Del("Content-Encoding")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// notModified applies RFC 9110's rules: If-None-Match, when present, decides
// alone; otherwise If-Modified-Since does.
func (s *Server) notModified(r *http.Request, etag string) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for t := range strings.SplitSeq(inm, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		return err == nil && !s.modified.After(t)
	}
	return false
}

// acceptsGzip reads Accept-Encoding: gzip (or x-gzip) with a q-value above
// zero; failing an explicit gzip entry, a "*" entry decides.
func acceptsGzip(header string) bool {
	explicit, star := -1.0, -1.0
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		for param := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					f = 0 // an unreadable weight accepts nothing
				}
				q = f
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			explicit = q
		case "*":
			star = q
		}
	}
	if explicit >= 0 {
		return explicit > 0
	}
	return star > 0
}

// Serve listens on addr and serves until ctx ends. The timeouts keep slow or
// idle clients from holding connections: the host has little memory.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return ctx.Err()
}
