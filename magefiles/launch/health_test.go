package launch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testca"
	"github.com/unikernel-blog/blog/magefiles/launch"
)

func TestMetaBuildID(t *testing.T) {
	for page, want := range map[string]string{
		`<head><meta name="build-id" content="abc123"></head>`:                  "abc123",
		`<META content='x9' NAME='build-id' />`:                                 "x9",
		"<meta\n  name=build-id\n  content=unquoted>":                           "unquoted",
		`<meta name="viewport" content="w"><meta name="build-id" content="b2">`: "b2",
	} {
		got, ok := launch.MetaBuildID([]byte(page))
		if !ok || got != want {
			t.Errorf("MetaBuildID(%q) = %q, %v; want %q", page, got, ok, want)
		}
	}
	for _, page := range []string{``, `<meta name="build-ids" content="no">`, `<meta name="generator" content="build-id">`} {
		if got, ok := launch.MetaBuildID([]byte(page)); ok {
			t.Errorf("MetaBuildID(%q) = %q, want none", page, got)
		}
	}
}

func TestGateFallsBackToBuildIDFile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/blog/":
			fmt.Fprint(w, "<html>no meta here</html>")
		case "/blog/build-id.txt":
			fmt.Fprint(w, "b7\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	g := launch.Gate{Poll: time.Millisecond, Timeout: time.Second}
	if err := g.Wait(context.Background(), srv.URL+"/blog/", "b7"); err != nil {
		t.Fatal(err)
	}
}

func TestGateWaitsForTheNewBuild(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			http.Error(w, "booting", http.StatusServiceUnavailable)
		case 2:
			fmt.Fprint(w, `<meta name="build-id" content="old">`)
		default:
			fmt.Fprint(w, `<meta name="build-id" content="new">`)
		}
	}))
	defer srv.Close()
	g := launch.Gate{Poll: time.Millisecond, Timeout: 5 * time.Second}
	if err := g.Wait(context.Background(), srv.URL+"/", "new"); err != nil {
		t.Fatal(err)
	}
	if n.Load() < 3 {
		t.Fatalf("%d polls, want at least 3", n.Load())
	}
}

func TestGateStopsOnCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err := launch.Gate{Poll: time.Millisecond, Timeout: time.Hour}.Wait(ctx, srv.URL+"/", "x")
	if !errors.Is(err, context.Canceled) || errors.Is(err, launch.ErrUnhealthy) {
		t.Fatalf("err = %v, want cancelled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("the gate did not stop promptly")
	}
}

func TestGateTimeoutNamesTheLastAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<meta name="build-id" content="old">`)
	}))
	defer srv.Close()
	err := launch.Gate{Poll: time.Millisecond, Timeout: 50 * time.Millisecond}.Wait(context.Background(), srv.URL+"/", "new")
	if !errors.Is(err, launch.ErrUnhealthy) || !strings.Contains(err.Error(), `build "old"`) {
		t.Fatalf("err = %v, want a timeout naming the old build", err)
	}
}

// tlsCandidate serves a page of build over TLS with cert, recording the SNI
// and Host it was asked for.
func tlsCandidate(t *testing.T, cert tls.Certificate, build string) (u string, sni, host *atomic.Value) {
	sni, host = &atomic.Value{}, &atomic.Value{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		fmt.Fprintf(w, `<meta name="build-id" content="%s">`, build)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.Store(h.ServerName)
		return nil, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/", sni, host
}

// TestGateSpeaksTLSAsTheDomain: the gate connects to the candidate's own
// address but asks for the domain (SNI and Host) and verifies the chain
// against the given roots.
func TestGateSpeaksTLSAsTheDomain(t *testing.T) {
	ca := testca.New(t, "test root")
	u, sni, host := tlsCandidate(t, ca.Leaf(t, "blog.example.com", "www.blog.example.com"), "b7")
	g := launch.Gate{Poll: 5 * time.Millisecond, Timeout: 5 * time.Second, TLS: &launch.GateTLS{Domain: "blog.example.com", Roots: ca.Pool()}}
	if err := g.Wait(context.Background(), u, "b7"); err != nil {
		t.Fatal(err)
	}
	if sni.Load() != "blog.example.com" || host.Load() != "blog.example.com" {
		t.Errorf("SNI %v, Host %v; want the domain for both", sni.Load(), host.Load())
	}
}

// TestGateRefusesACertificateNotForTheDomain: a certificate for another
// name, or from a CA not trusted, fails the gate at once (it is baked into
// the image: waiting cannot fix it), naming the reason.
func TestGateRefusesACertificateNotForTheDomain(t *testing.T) {
	ca := testca.New(t, "test root")
	for name, c := range map[string]struct {
		cert  tls.Certificate
		roots *x509.CertPool
		says  string
	}{
		"another name":    {ca.Leaf(t, "other.example.com"), ca.Pool(), "other.example.com"},
		"untrusted CA":    {testca.New(t, "stranger").Leaf(t, "blog.example.com"), ca.Pool(), "unknown authority"},
		"no roots at all": {ca.Leaf(t, "blog.example.com"), x509.NewCertPool(), "unknown authority"},
	} {
		t.Run(name, func(t *testing.T) {
			u, _, _ := tlsCandidate(t, c.cert, "b7")
			g := launch.Gate{Poll: 5 * time.Millisecond, Timeout: time.Minute, TLS: &launch.GateTLS{Domain: "blog.example.com", Roots: c.roots}}
			start := time.Now()
			err := g.Wait(context.Background(), u, "b7")
			if !errors.Is(err, launch.ErrCertificate) || !errors.Is(err, launch.ErrUnhealthy) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("gate: %v", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("the gate waited %s for a certificate that cannot change", time.Since(start))
			}
		})
	}
}

// TestGateGivesUpAConnectionTheCandidateDoesNotAnswer: until an instance's
// network is up, its address drops the SYN. The gate's connection attempt
// gives up after ConnectTimeout and the next poll tries afresh, instead of
// waiting on TCP's retransmissions (a second, then three more, then seven).
// A listener whose accept queue is full drops SYNs just so (Linux: listen
// with a backlog of 0 and one connection queued).
func TestGateGivesUpAConnectionTheCandidateDoesNotAnswer(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "full-listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	queued, err := net.Dial("tcp", ln.Addr().String()) // fills the accept queue
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()

	for _, scheme := range []string{"http", "https"} {
		g := launch.Gate{ConnectTimeout: 50 * time.Millisecond, Poll: 10 * time.Millisecond, Timeout: 500 * time.Millisecond}
		if scheme == "https" {
			g.TLS = &launch.GateTLS{Domain: "blog.example.com", Roots: x509.NewCertPool()}
		}
		err = g.Wait(context.Background(), scheme+"://"+ln.Addr().String()+"/", "b1")
		if !errors.Is(err, launch.ErrUnhealthy) || !strings.Contains(err.Error(), "i/o timeout") {
			t.Fatalf("%s: err = %v; want the gate to time out with the last attempt's connect timing out, not one attempt hanging for the whole gate", scheme, err)
		}
	}
}
