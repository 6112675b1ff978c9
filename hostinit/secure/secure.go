// Package secure puts HTTPS in front of the host's static server (its
// net/http front end, static.Server.ServeHTTP, served as it is), as a
// layer around any http.Handler: TLS 1.2+ with HTTP/2 on one port, every
// plain-HTTP request answered with a 301 to the same path and query on the
// canonical name, the aliases redirected to it, and Strict-Transport-Security
// on what it serves. The handler inside knows nothing of it.
package secure

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/netutil"
)

// Config is how the site is served over TLS.
type Config struct {
	Domain     string   // the canonical name
	Aliases    []string // names redirected to Domain
	HSTSMaxAge int64    // seconds; 0 sends no Strict-Transport-Security
	Cert       tls.Certificate
	// MaxConns caps the connections each listener serves at once, as the
	// static server caps its own (static.DefaultMaxConns); 0 is no cap.
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

// host is the request's host without a port, lower case. Browsers send no
// port for 443, and SplitHostPort makes an error of that, so it is called
// only when a port follows (after any IPv6 literal's "]").
func host(r *http.Request) string {
	h := r.Host
	if strings.LastIndexByte(h, ':') > strings.LastIndexByte(h, ']') {
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// canonical is the URL on the domain with the request's path and query.
func (c Config) canonical(r *http.Request) string {
	return "https://" + c.Domain + r.URL.RequestURI()
}

// Handler serves next over TLS: an alias gets a 301 to the domain, and
// every answer carries HSTS (browsers ignore it over plain HTTP, so it is
// only sent here).
func Handler(next http.Handler, c Config) http.Handler {
	// The header's value, made once and assigned to each response's map as
	// it is, so the layer allocates nothing per request.
	var hsts []string
	if c.HSTSMaxAge > 0 {
		hsts = []string{"max-age=" + strconv.FormatInt(c.HSTSMaxAge, 10)}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hsts != nil {
			w.Header()["Strict-Transport-Security"] = hsts
		}
		if slices.Contains(c.Aliases, host(r)) {
			http.Redirect(w, r, c.canonical(r), http.StatusMovedPermanently)
			return
		}
		next.ServeHTTP(w, r)
	})
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

// server has the static server's timeouts: the host has little memory, and
// slow or idle clients must not hold connections. Its per-connection
// errors (failed handshakes, timeouts, resets: the internet's noise) are
// dropped, as the static server drops fasthttp's: they would fill the
// serial console, which EC2 keeps only the last 64 KB of.
func server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

// Serve serves next over HTTPS on httpsAddr and the redirect on httpAddr
// until ctx ends or either listener fails.
func Serve(ctx context.Context, httpsAddr, httpAddr string, next http.Handler, c Config) error {
	tl, err := net.Listen("tcp", httpsAddr)
	if err != nil {
		return err
	}
	pl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		tl.Close()
		return err
	}
	return ServeListeners(ctx, tl, pl, next, c)
}

// ServeListeners is Serve on listeners the caller opened (tests, benchmarks).
func ServeListeners(ctx context.Context, tlsLn, plainLn net.Listener, next http.Handler, c Config) error {
	if c.MaxConns > 0 {
		tlsLn, plainLn = netutil.LimitListener(tlsLn, c.MaxConns), netutil.LimitListener(plainLn, c.MaxConns)
	}
	secure := server(Handler(next, c))
	secure.TLSConfig = TLSConfig(c)
	plain := server(Redirect(c))
	errs := make(chan error, 2)
	go func() { errs <- secure.ServeTLS(tlsLn, "", "") }()
	go func() { errs <- plain.Serve(plainLn) }()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	secure.Shutdown(shutdown)
	plain.Shutdown(shutdown)
	if first != nil && !errors.Is(first, http.ErrServerClosed) {
		return first
	}
	return ctx.Err()
}
