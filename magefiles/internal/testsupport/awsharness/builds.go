package awsharness

import (
	"context"
	"crypto/tls"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildServer stands in for booted instances, which in the emulator serve
// nothing: GET /{instance-id}/ answers, for a running instance, a page with
// the build-id meta tag of the build its AMI holds (read from the AMI's
// snapshot, see boot.go), and /{instance-id}/build-id.txt the id alone. A
// health_url of HealthURL() aims Launch's health gate at it.
type BuildServer struct {
	URL string
	// TLSURL is the HTTPS listener's base URL once ServeTLS was called.
	TLSURL string

	h      *Harness
	mu     sync.Mutex
	broken map[string]brokenBuild
}

type brokenBuild struct {
	status int
	serves string
}

// StartBuildServer runs a BuildServer for the test.
func (h *Harness) StartBuildServer(t testing.TB) *BuildServer {
	t.Helper()
	b := &BuildServer{h: h, broken: map[string]brokenBuild{}}
	srv := httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

// HealthURL is the health_url template that reaches this server.
func (b *BuildServer) HealthURL() string { return b.URL + "/{{.InstanceID}}/" }

// ServeTLS also serves the instances over HTTPS, as the image's server
// does with https on, presenting what cert returns for each handshake: the
// certificate the image carries (a test reads it from where the Cert step
// stored it). HTTPSHealthURL aims the gate at it.
func (b *BuildServer) ServeTLS(t testing.TB, cert func() (*tls.Certificate, error)) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	srv.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() }}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b.TLSURL = srv.URL
}

// HTTPSHealthURL is the https health_url template that reaches this server.
func (b *BuildServer) HTTPSHealthURL() string { return b.TLSURL + "/{{.InstanceID}}/" }

// Break makes instances of build answer status (when not 200) or, with
// status 200, serve the build id serves instead of their own: a kernel
// that fails, or one that still serves an old site.
func (b *BuildServer) Break(build string, status int, serves string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.broken[build] = brokenBuild{status: status, serves: serves}
}

// Fix undoes Break.
func (b *BuildServer) Fix(build string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.broken, build)
}

func (b *BuildServer) serve(w http.ResponseWriter, r *http.Request) {
	id, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	status, build := b.answer(r.Context(), id)
	if status != http.StatusOK {
		http.Error(w, build, status)
		return
	}
	if rest == "build-id.txt" {
		fmt.Fprintln(w, build)
		return
	}
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n  <meta name=\"build-id\" content=\"%s\">\n<title>blog</title></head><body>%s</body></html>\n", html.EscapeString(build), id)
}

// answer is what instance id answers: 200 and the build it serves, or an
// error status and why.
func (b *BuildServer) answer(ctx context.Context, id string) (int, string) {
	build, err := b.h.ServedBuild(ctx, id)
	if err != nil {
		return http.StatusBadGateway, err.Error()
	}
	b.mu.Lock()
	br, broken := b.broken[build]
	b.mu.Unlock()
	if broken {
		if br.status != http.StatusOK {
			return br.status, "broken (awsharness)"
		}
		build = br.serves
	}
	return http.StatusOK, build
}

// Visit is what a reader of name in zone gets, resolving the record as a
// resolver would (an A record to an address, a CNAME to an EC2 public name)
// and asking the instance that holds the address: the build served, or an
// error saying why nothing is. It makes no AWS call the recorder sees.
func (b *BuildServer) Visit(ctx context.Context, zoneID, name string) (string, error) {
	var ip string
	for _, rs := range b.h.Model.Records(zoneID, name) {
		if len(rs.Records) != 1 {
			continue
		}
		switch rs.Type {
		case "A":
			ip = rs.Records[0]
		case "CNAME":
			ip = ipOfPublicName(rs.Records[0])
		}
	}
	if ip == "" {
		return "", fmt.Errorf("%s has no A or CNAME record a reader can follow", name)
	}
	id := b.h.Model.InstanceOwning(ip)
	if id == "" {
		return "", fmt.Errorf("%s → %s, an address no instance of the account answers on", name, ip)
	}
	status, build := b.answer(ctx, id)
	if status != http.StatusOK {
		return "", fmt.Errorf("%s → %s → %s answers HTTP %d: %s", name, ip, id, status, build)
	}
	return build, nil
}

// ipOfPublicName reads the address from EC2's ec2-A-B-C-D.… public name.
func ipOfPublicName(name string) string {
	first, _, _ := strings.Cut(strings.TrimSuffix(name, "."), ".")
	parts := strings.Split(strings.TrimPrefix(first, "ec2-"), "-")
	if !strings.HasPrefix(first, "ec2-") || len(parts) != 4 {
		return ""
	}
	return strings.Join(parts, ".")
}

// Client is an HTTP client that reaches instances at their public
// addresses as the internet would: a URL whose host is an EC2 public name
// (ec2-A-B-C-D.…) or a public IPv4 address is answered by the instance that
// holds that address now, through the stand-in; an address no instance
// holds refuses the connection.
func (b *BuildServer) Client() *http.Client {
	return &http.Client{Transport: publicAddresses{b: b}, Timeout: 10 * time.Second}
}

type publicAddresses struct{ b *BuildServer }

func (p publicAddresses) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	ip := ipOfPublicName(host)
	if ip == "" {
		ip = host
	}
	id := p.b.h.Model.InstanceOwning(ip)
	if id == "" {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	u, err := url.Parse(p.b.URL + "/" + id + r.URL.Path)
	if err != nil {
		return nil, err
	}
	out := r.Clone(r.Context())
	out.URL, out.Host, out.RequestURI = u, u.Host, ""
	return http.DefaultTransport.RoundTrip(out)
}
