package launch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
)

const (
	// defaultHealthPoll is the pause between two looks at a booting
	// candidate. The gate asks the candidate itself, not an AWS API, so no
	// request quota applies: one small GET every half second costs the
	// instance nothing, and the gate loses a quarter of a second on average
	// after the host image's init starts serving (about half a second after
	// the kernel runs it; see README "The host layout").
	defaultHealthPoll = 500 * time.Millisecond
	// defaultConnectTimeout bounds making the connection. Until the
	// candidate's network is up its address drops the SYN, and a connect
	// left to TCP's retransmissions (Linux resends 1 s, then 3 s and 7 s
	// after the first) would notice the server seconds after it came up; an
	// attempt that gives up after a second is followed by a fresh one at
	// the next poll. A connection takes one round trip, well under a second.
	defaultConnectTimeout = time.Second
	// healthAttemptTimeout bounds one request: a page that has not arrived
	// in 10 s is not "up", whatever comes later.
	healthAttemptTimeout = 10 * time.Second
	// maxPage is how much of an answer is read looking for the build id.
	maxPage = 1 << 20
)

// Gate polls a candidate's URL until it serves the wanted build.
type Gate struct {
	Client  *http.Client  // plain HTTP only; default a client with the default transport
	Poll    time.Duration // between attempts; default defaultHealthPoll
	Timeout time.Duration // the whole gate; health_timeout
	Log     *logrus.Entry
	Clock   fleet.Clock // paces the polls and the timeout; default real time
	// ConnectTimeout bounds connecting, for the default and TLS clients;
	// default defaultConnectTimeout.
	ConnectTimeout time.Duration
	// Answered, when set, is called once, when the candidate first answers
	// at all (any HTTP status): its boot is over, and the rest is the wait
	// for the build.
	Answered func()
	// TLS, when set, makes the gate speak HTTPS to the URL's host (the
	// candidate's own address) as a reader's browser speaks to the domain:
	// SNI and Host are Domain, and the chain must verify for Domain against
	// Roots. Redirects are not followed (one would lead to the live site).
	TLS *GateTLS
}

// GateTLS is what the gate checks the candidate's certificate against.
type GateTLS struct {
	Domain string
	Roots  *x509.CertPool // the system's and acme_roots
}

// ErrUnhealthy is wrapped by the error of a gate that timed out.
var ErrUnhealthy = errors.New("the instance did not serve the new build in time")

// ErrCertificate is wrapped (with ErrUnhealthy) when the candidate's
// certificate does not verify for the domain: it is in the image, so
// waiting cannot fix it.
var ErrCertificate = errors.New("the instance's certificate does not verify")

// GateTLSFor is the gate's TLS setting for c: nil with https off.
func GateTLSFor(c *config.Config) (*GateTLS, error) {
	if !c.HTTPS {
		return nil, nil
	}
	pool, err := config.TrustedRoots(c)
	if err != nil {
		return nil, err
	}
	return &GateTLS{Domain: c.Domain, Roots: pool}, nil
}

// tlsClient is the gate's HTTPS client for t, connecting within connect.
func tlsClient(t *GateTLS, connect time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: connect}).DialContext
	tr.Proxy = nil // the candidate's own address, never through a proxy
	tr.TLSClientConfig = &tls.Config{ServerName: t.Domain, RootCAs: t.Roots, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = true
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// certificateError is a verification failure of the server's chain or name.
func certificateError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		herr x509.HostnameError
		uerr x509.UnknownAuthorityError
		ierr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &herr) || errors.As(err, &uerr) || errors.As(err, &ierr)
}

// Wait returns nil once url answers 200 and serves buildID: the build-id meta
// tag of the page or, if the page has none, /build-id.txt beside it. It
// fails with ErrUnhealthy, naming the last answer, after Timeout, and with
// ctx's error as soon as ctx is done.
func (g Gate) Wait(ctx context.Context, u, buildID string) error {
	connect := g.ConnectTimeout
	if connect <= 0 {
		connect = defaultConnectTimeout
	}
	client := g.Client
	host := ""
	if g.TLS != nil {
		client, host = tlsClient(g.TLS, connect), g.TLS.Domain
		if !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("the gate must speak TLS to %s, but the URL is %s; use an https health_url", g.TLS.Domain, u)
		}
	}
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: connect}).DialContext
		client = &http.Client{Transport: tr}
	}
	poll := g.Poll
	if poll <= 0 {
		poll = defaultHealthPoll
	}
	gctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	if g.Answered != nil {
		var once sync.Once
		gctx = httptrace.WithClientTrace(gctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { once.Do(g.Answered) }})
	}
	last := "no answer yet"
	start := time.Now()
	err := fleet.Pace{Every: poll, Max: g.Timeout}.Wait(gctx, g.Clock, func(gctx context.Context) (bool, error) {
		ok, seen, err := check(gctx, client, host, u, buildID)
		if err != nil && g.TLS != nil && certificateError(err) {
			return false, fmt.Errorf("%w: %w: %s serves a certificate that does not verify for %s: %v; the image carries the Cert step's certificate: check acme_roots (a private CA's root) and that domain and aliases are on it (`mage cert` logs its names)", ErrUnhealthy, ErrCertificate, u, g.TLS.Domain, err)
		}
		if ok {
			if g.Log != nil {
				g.Log.Infof("%s serves build %s (after %s)", u, buildID, time.Since(start).Round(time.Millisecond))
			}
			return true, nil
		}
		if gctx.Err() != nil && last != "no answer yet" {
			seen = last // the deadline cut this attempt short: the answer before says more
		}
		if seen != last && g.Log != nil {
			g.Log.Infof("waiting for %s to serve build %s: %s", u, buildID, seen)
		}
		last = seen
		return false, nil
	})
	if err == nil || errors.Is(err, ErrCertificate) {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s did not serve build %s within %s; last answer: %s", ErrUnhealthy, u, buildID, g.Timeout, last)
}

// check makes one attempt; seen describes the answer for the log, err is
// the transport's error.
func check(ctx context.Context, client *http.Client, host, u, want string) (ok bool, seen string, err error) {
	status, body, err := get(ctx, client, host, u)
	switch {
	case err != nil:
		return false, err.Error(), err
	case status != http.StatusOK:
		return false, fmt.Sprintf("HTTP %d", status), nil
	}
	got, found := MetaBuildID(body)
	if !found {
		base, err := url.Parse(u)
		if err != nil {
			return false, err.Error(), nil
		}
		txt := base.ResolveReference(&url.URL{Path: "build-id.txt"}).String()
		status, body, err := get(ctx, client, host, txt)
		switch {
		case err != nil:
			return false, "no build-id meta tag, and " + err.Error(), err
		case status != http.StatusOK:
			return false, fmt.Sprintf("no build-id meta tag, and %s answers HTTP %d", txt, status), nil
		}
		got = strings.TrimSpace(string(body))
	}
	if got != want {
		return false, fmt.Sprintf("HTTP 200 but build %q, not %s (still the old site?)", got, want), nil
	}
	return true, "serving " + want, nil
}

// get fetches u; host, when set, is the Host header (the domain, as a
// reader's browser sends it).
func get(ctx context.Context, client *http.Client, host, u string) (int, []byte, error) {
	actx, cancel := context.WithTimeout(ctx, healthAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Cache-Control", "no-cache")
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in every log line already
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, body, nil
}

var (
	metaTagRE   = regexp.MustCompile(`(?is)<meta\s[^>]*>`)
	metaNameRE  = regexp.MustCompile(`(?i)\bname\s*=\s*["']?build-id(?:["'\s/>]|$)`)
	metaValueRE = regexp.MustCompile(`(?is)\bcontent\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))`)
)

// MetaBuildID finds <meta name="build-id" content="…"> in a page, the tag
// every page of the site carries (site.Build stamps it).
func MetaBuildID(page []byte) (string, bool) {
	for _, tag := range metaTagRE.FindAll(page, -1) {
		if !metaNameRE.Match(tag) {
			continue
		}
		m := metaValueRE.FindSubmatch(tag)
		if m == nil {
			continue
		}
		return strings.TrimSpace(string(m[1]) + string(m[2]) + string(m[3])), true
	}
	return "", false
}
