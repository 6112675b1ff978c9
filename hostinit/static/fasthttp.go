package static

import (
	"context"
	"net"
	"net/http"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/netutil"
)

// Header names and values for fasthttp, as bytes once, so a response
// allocates nothing.
var (
	bAllow          = []byte("Allow")
	bCacheControl   = []byte("Cache-Control")
	bCSP            = []byte("Content-Security-Policy")
	bEncoding       = []byte("Content-Encoding")
	bETag           = []byte("Etag")
	bLastModified   = []byte("Last-Modified")
	bLocation       = []byte("Location")
	bNosniff        = []byte("X-Content-Type-Options")
	bReferrer       = []byte("Referrer-Policy")
	bVary           = []byte("Vary")
	bvAcceptEnc     = []byte("Accept-Encoding")
	bvAllow         = []byte(hAllow[0])
	bvCSP           = []byte(ContentSecurityPolicy)
	bvGzip          = []byte("gzip")
	bvNosniff       = []byte("nosniff")
	bvReferrer      = []byte(ReferrerPolicy)
	bvRedirectCache = []byte(cacheRedirect)
	bvTextPlain     = []byte(textPlain)
)

// str is b as a string without a copy. The front end passes fasthttp's
// request bytes to decide this way: they stay unchanged until the handler
// returns, and decide keeps none of them.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Handle answers one request from fasthttp (plain HTTP/1.1).
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request.Header
	// One value per field: fasthttp's Peek gives the first line's.
	acceptEncoding := [1]string{str(req.Peek(fasthttp.HeaderAcceptEncoding))}
	ifNoneMatch := [1]string{str(req.Peek(fasthttp.HeaderIfNoneMatch))}
	q := request{
		method: str(ctx.Method()), path: str(ctx.Path()), // decoded and normalised
		acceptEncoding: acceptEncoding[:], ifNoneMatch: ifNoneMatch[:],
		ifModifiedSince: str(req.Peek(fasthttp.HeaderIfModifiedSince)),
		ranged:          len(req.Peek(fasthttp.HeaderRange)) > 0,
	}
	a := s.decide(&q)
	if a.kind == answerRange {
		// net/http's ServeContent, through ServeHTTP, which decides again
		// and sets every header itself.
		s.ranges(ctx)
		return
	}
	h := &ctx.Response.Header
	h.SetCanonical(bNosniff, bvNosniff)
	h.SetCanonical(bReferrer, bvReferrer)
	h.SetCanonical(bCSP, bvCSP)
	ctx.SetStatusCode(a.status)
	switch a.kind {
	case answerText:
		if a.status == http.StatusMethodNotAllowed {
			h.SetCanonical(bAllow, bvAllow)
		}
		h.SetContentTypeBytes(bvTextPlain)
		ctx.Response.SetBodyRaw(a.text.body)
	case answerRedirect:
		target := a.route.redirect
		if qs := ctx.URI().QueryString(); len(qs) > 0 {
			target += "?" + string(qs)
		}
		h.SetCanonical(bLocation, []byte(target))
		h.SetCanonical(bCacheControl, bvRedirectCache)
	case answerFile:
		f, rep := a.file, a.rep
		if f.gzip != nil {
			h.SetCanonical(bVary, bvAcceptEnc)
		}
		h.SetCanonical(bCacheControl, f.cache)
		if a.status != http.StatusNotFound {
			h.SetCanonical(bETag, rep.bETag)
			h.SetCanonical(bLastModified, s.bLastMod)
		}
		if a.status == http.StatusNotModified {
			return
		}
		if rep.gzipped {
			h.SetCanonical(bEncoding, bvGzip)
		}
		h.SetContentTypeBytes(f.ctype)
		// SetBodyRaw sends the bytes as they are, without a copy; for HEAD
		// fasthttp sends the headers, Content-Length included, and no body.
		ctx.Response.SetBodyRaw(rep.body)
	}
}

// Serve listens on addr and serves plain HTTP until ctx ends.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves plain HTTP on ln until ctx ends, at most s.MaxConns
// connections at once: the others wait in the kernel's accept queue until
// one closes.
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

func (s *Server) server() *fasthttp.Server { return HTTP1Server(s.Handle, s.MaxConns) }

// HTTP1Server is fasthttp with the static server's settings, serving h: at
// most maxConns connections, the timeouts, buffers returned to a pool
// while a connection is idle, no log. hostinit/secure serves HTTP/1.1
// over TLS with it too, h being Handle behind its own layer.
func HTTP1Server(h fasthttp.RequestHandler, maxConns int) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h,
		Name:                         ServerName,
		Concurrency:                  maxConns,
		ReadBufferSize:               readBufferSize,
		WriteBufferSize:              writeBufferSize,
		ReadTimeout:                  HeaderTimeout,
		WriteTimeout:                 WriteTimeout,
		IdleTimeout:                  IdleTimeout,
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
