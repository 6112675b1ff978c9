// Package secure puts HTTPS in front of the host's static server, through
// both of its front ends: TLS 1.2+ on one port, where HTTP/2 is served by
// net/http with static.Server.ServeHTTP and HTTP/1.1 by fasthttp with
// static.Server.Handle, as ALPN agreed; every plain-HTTP request answered
// with a 301 to the same path and query on the canonical name; the aliases
// redirected to it; Strict-Transport-Security on what it serves. The
// layer is the same on both front ends (Handler, HandleHTTP1), and the
// site inside knows nothing of it.
package secure

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/unikernel-blog/blog/hostinit/static"
)

// Config is how the site is served over TLS.
type Config struct {
	Domain     string   // the canonical name
	Aliases    []string // names redirected to Domain
	HSTSMaxAge int64    // seconds; 0 sends no Strict-Transport-Security
	Cert       tls.Certificate
	// MaxConns caps the connections served at once over both listeners
	// together (TLS and plain HTTP count against one cap; see
	// ServeListeners), as the static server caps its own
	// (static.DefaultMaxConns); 0 is no cap.
	MaxConns int
}

// Load reads the chain and key PEM files.
func Load(chainFile, keyFile string, c Config) (Config, error) {
	cert, err := tls.LoadX509KeyPair(chainFile, keyFile)
	if err != nil {
		return c, err
	}
	c.Cert = cert
	return c, nil
}

// isAlias says whether hostport, a request's Host, names one of the
// aliases: without a port (browsers send none for 443; one follows only
// after any IPv6 literal's "]") or a final dot, in any case. It allocates
// nothing, and both front ends ask it.
func (c Config) isAlias(hostport string) bool {
	h := hostport
	if i := strings.LastIndexByte(h, ':'); i > strings.LastIndexByte(h, ']') {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for _, a := range c.Aliases {
		if strings.EqualFold(h, a) {
			return true
		}
	}
	return false
}

// canonical is the URL on the domain with the request's path and query.
func (c Config) canonical(r *http.Request) string {
	return "https://" + c.Domain + r.URL.RequestURI()
}

// hsts is the Strict-Transport-Security value, or "" for none.
func (c Config) hsts() string {
	if c.HSTSMaxAge <= 0 {
		return ""
	}
	return "max-age=" + strconv.FormatInt(c.HSTSMaxAge, 10)
}

// Handler serves next over TLS (HTTP/2): an alias gets a 301 without a
// body to the domain, and every answer carries HSTS (browsers ignore it
// over plain HTTP, so it is only sent here). HandleHTTP1 is the same for
// HTTP/1.1.
func Handler(next http.Handler, c Config) http.Handler {
	// The header's value, made once and assigned to each response's map as
	// it is, so the layer allocates nothing per request.
	var hsts []string
	if v := c.hsts(); v != "" {
		hsts = []string{v}
	}
	serverName := []string{static.ServerName} // as fasthttp names itself
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hsts != nil {
			w.Header()["Strict-Transport-Security"] = hsts
		}
		if c.isAlias(r.Host) {
			w.Header()["Server"] = serverName
			w.Header()["Location"] = []string{c.canonical(r)}
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HandleHTTP1 is Handler for fasthttp, which serves HTTP/1.1 over TLS.
func HandleHTTP1(next fasthttp.RequestHandler, c Config) fasthttp.RequestHandler {
	hsts := []byte(c.hsts())
	hstsName := []byte("Strict-Transport-Security")
	return func(ctx *fasthttp.RequestCtx) {
		if len(hsts) > 0 {
			ctx.Response.Header.SetCanonical(hstsName, hsts)
		}
		if h := ctx.Host(); c.isAlias(unsafe.String(unsafe.SliceData(h), len(h))) {
			ctx.Response.Header.Set(fasthttp.HeaderLocation, "https://"+c.Domain+string(ctx.RequestURI()))
			ctx.SetStatusCode(http.StatusMovedPermanently)
			return
		}
		next(ctx)
	}
}

// Redirect answers every plain-HTTP request with a 301 to HTTPS on the
// domain, path and query kept: one hop from any name.
func Redirect(c Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, c.canonical(r), http.StatusMovedPermanently)
	})
}

// TLSConfig is the server side: the certificate, TLS 1.2 or later, HTTP/2
// offered first.
func TLSConfig(c Config) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.Cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// Site is what is served over TLS: the static server's two front ends,
// net/http's for HTTP/2 and fasthttp's for HTTP/1.1.
type Site interface {
	http.Handler
	Handle(ctx *fasthttp.RequestCtx)
}

// server is net/http with the static server's timeouts: the host has
// little memory, and slow or idle clients must not hold connections. Its
// per-connection errors (failed handshakes, timeouts, resets: the
// internet's noise) are dropped, as the static server drops fasthttp's:
// they would fill the serial console, which EC2 keeps only the last 64 KB
// of.
func server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: static.HeaderTimeout,
		WriteTimeout:      static.WriteTimeout,
		IdleTimeout:       static.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

// Serve serves site over HTTPS on httpsAddr and the redirect on httpAddr
// until ctx ends or either listener fails.
func Serve(ctx context.Context, httpsAddr, httpAddr string, site Site, c Config) error {
	tl, err := net.Listen("tcp", httpsAddr)
	if err != nil {
		return err
	}
	pl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		tl.Close()
		return err
	}
	return ServeListeners(ctx, tl, pl, site, c)
}

// ServeListeners is Serve on listeners the caller opened (tests,
// benchmarks). One cap, c.MaxConns, holds over both listeners together.
//
// The TLS handshake is done here, and the protocol it agreed (ALPN) picks
// the server: HTTP/1.1 (or no ALPN) goes to fasthttp with the static
// server's settings (static.HTTP1Server); h2 goes to net/http's HTTP/2
// server, which gets the decrypted stream as a connection of its own
// (h2Conn, so that an answer's HEADERS leave with its DATA) and serves it
// as HTTP/2 with prior knowledge: its requests carry no Request.TLS,
// which nothing here reads. Both choices are measured (README, "HTTPS").
func ServeListeners(ctx context.Context, tlsLn, plainLn net.Listener, site Site, c Config) error {
	capped := newLimit(c.MaxConns)
	tlsLn, plainLn = capped.listener(tlsLn), capped.listener(plainLn)

	h1 := static.HTTP1Server(HandleHTTP1(site.Handle, c), c.MaxConns)
	h2 := server(Handler(site, c))
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // h2Conn: HTTP/2 with prior knowledge over the decrypted stream
	h2.Protocols = &protocols
	plain := server(Redirect(c))

	h1q, h2q := newQueue(tlsLn.Addr()), newQueue(tlsLn.Addr())
	errs := make(chan error, 4)
	go func() { errs <- h1.Serve(h1q) }()
	go func() { errs <- h2.Serve(h2q) }()
	go func() { errs <- plain.Serve(plainLn) }()
	go func() { errs <- dispatch(tlsLn, TLSConfig(c), h1q, h2q) }()

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	tlsLn.Close()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h1.ShutdownWithContext(shutdown)
	h2.Shutdown(shutdown)
	plain.Shutdown(shutdown)
	if first != nil && !errors.Is(first, http.ErrServerClosed) && !errors.Is(first, net.ErrClosed) {
		return first
	}
	return ctx.Err()
}

// dispatch accepts TLS connections, and hands each, its handshake done
// within the header timeout, to the server of the protocol agreed. An
// accept that fails while the listener is open (out of descriptors, say)
// is retried after a pause, as net/http and fasthttp retry theirs.
func dispatch(ln net.Listener, cfg *tls.Config, h1, h2 *queue) error {
	pause := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			time.Sleep(pause)
			pause = min(2*pause, time.Second)
			continue
		}
		if err != nil {
			h1.Close()
			h2.Close()
			return err
		}
		pause = 5 * time.Millisecond
		go func() {
			tc := tls.Server(conn, cfg)
			conn.SetDeadline(time.Now().Add(static.HeaderTimeout))
			if err := tc.Handshake(); err != nil {
				tc.Close()
				return
			}
			conn.SetDeadline(time.Time{})
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				h2.hand(newH2Conn(tc))
			} else {
				h1.hand(tc)
			}
		}()
	}
}

// queue is a listener whose connections are handed to it.
type queue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newQueue(addr net.Addr) *queue {
	return &queue{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

// hand gives c to the server accepting from q, or closes it if q is closed.
func (q *queue) hand(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *queue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *queue) Addr() net.Addr { return q.addr }
