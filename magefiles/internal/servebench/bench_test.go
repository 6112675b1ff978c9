// Package servebench measures the host image's built-in server
// (hostinit/static, behind hostinit/secure for HTTPS) against nginx on the
// same _site: this repository's blog built by jekyll. Run it with
//
//	go test -timeout 20m -run '^$' -bench AgainstNginx -benchtime 1x ./magefiles/internal/servebench/
//
// (twelve loads of six 5 s runs each outlast go test's default 10 minutes
// on a busy machine).
//
// Each protocol is a sub-benchmark (-bench 'AgainstNginx/https/' runs one):
// http is plain HTTP/1.1 driven by wrk; https is HTTP/1.1 over TLS 1.3,
// driven by wrk; h2 is HTTP/2 over TLS 1.3, driven by h2load. Both servers
// use the same ECDSA P-256 certificate and key. It needs Debian's
// nginx-light and wrk, and for h2 nghttp2-client's h2load (.ci/install
// installs them); without one of them the parts that need it are skipped
// with a message.
package servebench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/netutil"

	"github.com/unikernel-blog/blog/hostinit/secure"
	"github.com/unikernel-blog/blog/hostinit/static"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testca"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// The load: one client thread (the machine has two cores, shared by the
// server under test and the load generator) and 50 keep-alive connections
// (over HTTP/2, one stream each: the same 50 requests in flight), for
// runDuration per run; rounds runs per server and path, the two servers
// alternating so drift in the machine's load touches both alike.
const (
	connections = 50
	runDuration = 5 * time.Second
	rounds      = 3
)

// The name both servers answer to over TLS, and the HSTS both send.
const (
	domain     = "blog.example.com"
	hstsMaxAge = 31536000
)

// targets are the loads of issue 13: a small page, the same page gzipped,
// and 20–100 KB bodies: the feed (27 KB) and a 100 KiB image (largeBody,
// written into the built site, as a photo beside a post would be).
var targets = []struct {
	name, path string
	gzip       bool
}{
	{"page", "/", false},
	{"page-gzip", "/", true},
	{"feed-27KB", "/feed.xml", false},
	{"image-100KB", largeBody, false},
}

// largeBody is a 100 KiB JPEG-named file of random bytes: served as it is
// by both servers (images are not compressed).
const largeBody = "/servebench-100KB.jpg"

// addLargeBody writes largeBody into the built site, the same bytes on
// every run.
func addLargeBody(b *testing.B, siteDir string) {
	body := make([]byte, 100<<10)
	rand.NewChaCha8([32]byte{13}).Read(body)
	if err := os.WriteFile(filepath.Join(siteDir, filepath.FromSlash(largeBody)), body, 0o644); err != nil {
		b.Fatal(err)
	}
}

// protocol is one way of reaching both servers: their base URLs, the
// client that checks they answer alike, and the load generator.
type protocol struct {
	name         string
	ours, theirs string
	client       *http.Client
	proto        int // the HTTP major version both must answer with
	load         func(b *testing.B, url string, gz bool) result
	oursName     string
	theirName    string
	// oursCPU and theirCPU are the CPU time each server has used so far
	// (user and system): per request, a cost the machine's other load
	// moves far less than it moves requests per second.
	oursCPU, theirCPU func() time.Duration
}

func BenchmarkAgainstNginx(b *testing.B) {
	nginx := testtool.Need(b, "nginx", "nginx-light")
	wrk := testtool.Need(b, "wrk", "wrk")
	siteDir := buildSite(b)
	addLargeBody(b, siteDir)
	chain, key, pool := certificate(b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	goHTTP, goHTTPS := startBuiltin(b, ctx, siteDir, chain, key)
	nginxHTTP, nginxHTTPS, nginxPID := startNginx(b, nginx, siteDir, chain, key)
	nginxCPU := func() time.Duration { return processTreeCPU(b, nginxPID) }

	withWrk := func(b *testing.B, url string, gz bool) result { return runWrk(b, wrk, url, gz) }
	protocols := []protocol{
		{"http", goHTTP, nginxHTTP, &http.Client{Transport: &http.Transport{}}, 1, withWrk, "built-in", "nginx", selfCPU, nginxCPU},
		{"https", goHTTPS, nginxHTTPS, tlsClient(pool, false), 1, withWrk, "built-in", "nginx", selfCPU, nginxCPU},
		{"h2", goHTTPS, nginxHTTPS, tlsClient(pool, true), 2, func(b *testing.B, url string, gz bool) result {
			return runH2load(b, testtool.Need(b, "h2load", "nghttp2-client"), url, gz)
		}, "built-in", "nginx", selfCPU, nginxCPU},
	}
	for _, p := range protocols {
		b.Run(p.name, func(b *testing.B) {
			if p.name == "https" {
				sameCipherSuite(b, goHTTPS, nginxHTTPS)
			}
			for _, tg := range targets {
				b.Run(tg.name, func(b *testing.B) {
					checkSameBody(b, p, tg.path, tg.gzip)
					compare(b, p, tg.path, tg.gzip)
				})
			}
		})
	}
}

// BenchmarkFrontEnds measures the static server's two front ends against
// each other on plain HTTP, with the same loads: net/http's (ServeHTTP,
// what HTTP/2 over TLS serves) and fasthttp's (Handle, what plain HTTP and
// HTTP/1.1 over TLS serve). It is
// the measurement behind keeping both (hostinit/static's package comment):
//
//	go test -run '^$' -bench FrontEnds -benchtime 1x ./magefiles/internal/servebench/
func BenchmarkFrontEnds(b *testing.B) {
	wrk := testtool.Need(b, "wrk", "wrk")
	siteDir := buildSite(b)
	addLargeBody(b, siteDir)
	srv, err := static.Load(siteDir, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast := listen(b)
	go srv.ServeListener(ctx, fast)
	// net/http without TLS, with hostinit/secure's settings.
	ln := listen(b)
	plain := &http.Server{Handler: srv, ReadHeaderTimeout: static.HeaderTimeout, WriteTimeout: static.WriteTimeout, IdleTimeout: static.IdleTimeout, MaxHeaderBytes: 16 << 10}
	go plain.Serve(netutil.LimitListener(ln, srv.MaxConns))
	defer plain.Close()
	p := protocol{"http", "http://" + ln.Addr().String(), "http://" + fast.Addr().String(), &http.Client{Transport: &http.Transport{}}, 1,
		func(b *testing.B, url string, gz bool) result { return runWrk(b, wrk, url, gz) }, "net/http", "fasthttp", selfCPU, selfCPU}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			checkSameBody(b, p, tg.path, tg.gzip)
			compare(b, p, tg.path, tg.gzip)
		})
	}
}

// compare runs the load against both servers, interleaved, and reports
// the medians and their ratios.
func compare(b *testing.B, p protocol, path string, gz bool) {
	var ours, theirs []result
	for i := range rounds {
		// Alternate who goes first, so neither always runs on a
		// machine just warmed (or loaded) by the other.
		order := []string{p.ours, p.theirs}
		if i%2 == 1 {
			order = []string{p.theirs, p.ours}
		}
		for _, base := range order {
			cpu := p.theirCPU
			if base == p.ours {
				cpu = p.oursCPU
			}
			before := cpu()
			r := p.load(b, base+path, gz)
			r.cpuPerReq = (cpu() - before) / time.Duration(max(1, r.rps*runDuration.Seconds()))
			if base == p.ours {
				ours = append(ours, r)
			} else {
				theirs = append(theirs, r)
			}
		}
	}
	o, t := median(ours), median(theirs)
	b.ReportMetric(o.rps, "req/s")
	b.ReportMetric(t.rps, p.theirName+"-req/s")
	b.ReportMetric(o.rps/t.rps, "x-"+p.theirName+"-req/s")
	b.ReportMetric(float64(o.p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(t.p99.Microseconds()), p.theirName+"-p99-µs")
	b.ReportMetric(float64(o.p99)/float64(t.p99), "x-"+p.theirName+"-p99")
	b.ReportMetric(float64(o.cpuPerReq.Nanoseconds())/1e3, "cpu-µs/req")
	b.ReportMetric(float64(t.cpuPerReq.Nanoseconds())/1e3, p.theirName+"-cpu-µs/req")
	b.Logf("%s %s (gzip %v): %s %.0f req/s p99 %s CPU %s/req; %s %.0f req/s p99 %s CPU %s/req; ratio req/s %.2f, p99 %.2f, CPU/req %.2f (median of %d interleaved %s runs, %d connections; runs %s and %s)",
		p.name, path, gz, p.oursName, o.rps, o.p99, o.cpuPerReq, p.theirName, t.rps, t.p99, t.cpuPerReq,
		o.rps/t.rps, float64(o.p99)/float64(t.p99), float64(o.cpuPerReq)/float64(t.cpuPerReq), rounds, runDuration, connections, runs(ours), runs(theirs))
}

// buildSite builds this repository's blog with jekyll, from a copy so the
// author's _site stays untouched.
func buildSite(b *testing.B) string {
	testtool.Need(b, "jekyll", "jekyll")
	repo, err := filepath.Abs("../../..")
	if err != nil {
		b.Fatal(err)
	}
	root := testtool.CopyRepo(b, repo)
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	if _, err := site.Build(context.Background(), site.Options{Root: root, Log: l.WithField("step", "site")}); err != nil {
		b.Fatalf("%v\n%s", err, logs.String())
	}
	return filepath.Join(root, "_site")
}

// certificate writes an ECDSA P-256 chain (leaf, then the CA that signed
// it, as a deploy's chain holds the intermediate) and key as PEM files for
// both servers, and returns a pool trusting the CA.
func certificate(b *testing.B) (chain, key string, pool *x509.CertPool) {
	ca := testca.New(b, "servebench CA")
	leaf := ca.Leaf(b, domain)
	dir := b.TempDir()
	var pemChain bytes.Buffer
	for _, der := range append(leaf.Certificate, ca.Cert.Raw) {
		pem.Encode(&pemChain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		b.Fatal(err)
	}
	chain, key = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(chain, pemChain.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return chain, key, ca.Pool()
}

// startBuiltin serves the site as the host image does: the static server
// on plain HTTP (with https: false), and behind hostinit/secure over TLS
// with the image's connection cap.
func startBuiltin(b *testing.B, ctx context.Context, siteDir, chain, key string) (plain, tlsURL string) {
	srv, err := static.Load(siteDir, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	ln := listen(b)
	go srv.ServeListener(ctx, ln)
	c, err := secure.Load(chain, key, secure.Config{Domain: domain, HSTSMaxAge: hstsMaxAge, MaxConns: srv.MaxConns})
	if err != nil {
		b.Fatal(err)
	}
	tl, redirect := listen(b), listen(b)
	go secure.ServeListeners(ctx, tl, redirect, srv, c)
	return "http://" + ln.Addr().String(), "https://" + tl.Addr().String()
}

func listen(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

// nginxConf is nginx as a careful operator would set it up for this site:
// Debian's defaults (sendfile, tcp_nopush, gzip) plus gzip_static over the
// same precompressed files the built-in server sends, reuseport (without
// it one of the two workers takes most connections, and the p99 of its
// clients suffers), no access log (the built-in server keeps none),
// keep-alive without a request limit (which in nginx 1.22 also bounds the
// requests of an HTTP/2 connection), and the built-in server's headers, so
// both send the same bytes.
//
// Over TLS: HTTP/2 (nginx 1.22 takes it as a listen parameter; the
// "http2 on" directive arrived in 1.25.1), TLS 1.2 and 1.3, a shared
// session cache and a day's session timeout, and the HSTS the built-in
// server sends. The TLS 1.3 suites are ordered by the server, AES-128-GCM
// first: that is what Go's server picks and what browsers offer first, so
// both servers encrypt alike; left to the client, wrk's OpenSSL would get
// AES-256-GCM from nginx alone.
const nginxConf = `
{{USER}}
worker_processes auto;
daemon off;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log;
events { worker_connections 4096; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	client_body_temp_path {{DIR}}/body;
	proxy_temp_path {{DIR}}/proxy;
	fastcgi_temp_path {{DIR}}/fastcgi;
	uwsgi_temp_path {{DIR}}/uwsgi;
	scgi_temp_path {{DIR}}/scgi;
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	gzip on;
	gzip_static on;
	gzip_vary on;
	gzip_types text/css application/atom+xml application/json image/svg+xml text/javascript;
	server_tokens off;
	ssl_session_cache shared:SSL:10m;
	ssl_session_timeout 1d;
	server {
		listen 127.0.0.1:{{HTTP_PORT}} reuseport;
		{{SITE}}
	}
	server {
		listen 127.0.0.1:{{HTTPS_PORT}} ssl http2 reuseport;
		ssl_certificate {{CHAIN}};
		ssl_certificate_key {{KEY}};
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_prefer_server_ciphers on;
		ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
		add_header Strict-Transport-Security "max-age={{HSTS}}";
		{{SITE}}
	}
}
`

// nginxSite is what both server blocks serve.
const nginxSite = `root {{ROOT}};
		add_header Cache-Control "no-cache";
		add_header X-Content-Type-Options nosniff;
		add_header Referrer-Policy strict-origin-when-cross-origin;
		add_header Content-Security-Policy "base-uri 'self'; object-src 'none'; frame-ancestors 'self'";
		error_page 404 /404.html;`

func startNginx(b *testing.B, nginx, siteDir, chain, key string) (plain, tlsURL string, pid int) {
	dir := b.TempDir()
	root := filepath.Join(dir, "site")
	if err := precompressedCopy(siteDir, root); err != nil {
		b.Fatal(err)
	}
	httpPort, httpsPort := freePort(b), freePort(b)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must read the test's private temporary directory
	}
	conf := filepath.Join(dir, "nginx.conf")
	text := strings.NewReplacer("{{SITE}}", nginxSite).Replace(nginxConf)
	text = strings.NewReplacer("{{USER}}", user, "{{DIR}}", dir, "{{ROOT}}", root, "{{CHAIN}}", chain, "{{KEY}}", key,
		"{{HTTP_PORT}}", strconv.Itoa(httpPort), "{{HTTPS_PORT}}", strconv.Itoa(httpsPort), "{{HSTS}}", strconv.Itoa(hstsMaxAge)).Replace(text)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-c", conf, "-p", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	plain = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(plain + "/")
		if err == nil {
			resp.Body.Close()
			return plain, fmt.Sprintf("https://127.0.0.1:%d", httpsPort), cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			b.Fatalf("nginx did not start: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// precompressedCopy copies the site and writes NAME.gz beside every file
// the built-in server compresses, at the same level, for gzip_static.
func precompressedCopy(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return err
		}
		if !static.Compressible(static.ContentType(p)) {
			return nil
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		return os.WriteFile(target+".gz", gz.Bytes(), 0o644)
	})
}

func freePort(b *testing.B) int {
	ln := listen(b)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tlsClient trusts the benchmark's CA and asks for the domain by SNI;
// h2 offers HTTP/2, otherwise only HTTP/1.1 is offered.
func tlsClient(pool *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: domain}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr}
}

// checkSameBody makes sure both servers answer the path alike, over the
// protocol measured (and, over TLS, with TLS 1.3 and the certificate for
// the domain), so the comparison is of equal work.
func checkSameBody(b *testing.B, p protocol, path string, gz bool) {
	type answer struct {
		status, proto, tlsVersion int
		encoding                  string
		size                      int
	}
	get := func(url string) answer {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		} else {
			req.Header.Set("Accept-Encoding", "identity")
		}
		resp, err := p.client.Transport.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		a := answer{status: resp.StatusCode, proto: resp.ProtoMajor, encoding: resp.Header.Get("Content-Encoding"), size: body.Len()}
		if resp.TLS != nil {
			a.tlsVersion = int(resp.TLS.Version)
		}
		return a
	}
	o, t := get(p.ours+path), get(p.theirs+path)
	wantTLS := 0
	if strings.HasPrefix(p.ours, "https:") {
		wantTLS = tls.VersionTLS13
	}
	if o != t || o.status != 200 || o.proto != p.proto || o.tlsVersion != wantTLS {
		b.Fatalf("the servers answer %s %s differently, or not over HTTP/%d (TLS version %#x): %s %+v, %s %+v", p.name, path, p.proto, wantTLS, p.oursName, o, p.theirName, t)
	}
}

// sameCipherSuite checks that an OpenSSL client, as wrk is, gets the same
// TLS 1.3 suite from both servers.
func sameCipherSuite(b *testing.B, ours, theirs string) {
	openssl := testtool.Need(b, "openssl", "openssl")
	suite := func(url string) string {
		cmd := exec.Command(openssl, "s_client", "-connect", strings.TrimPrefix(url, "https://"), "-servername", domain, "-tls1_3")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		m := regexp.MustCompile(`Cipher is (\S+)`).FindSubmatch(out)
		if err != nil || m == nil {
			b.Fatalf("openssl s_client %s: %v\n%s", url, err, out)
		}
		return string(m[1])
	}
	if o, t := suite(ours), suite(theirs); o != t {
		b.Fatalf("an OpenSSL client gets %s from the built-in server and %s from nginx: the comparison would be of ciphers", o, t)
	} else {
		b.Logf("TLS 1.3 suite with an OpenSSL client, both servers: %s", o)
	}
}

type result struct {
	rps       float64
	p99       time.Duration
	cpuPerReq time.Duration
}

// selfCPU is this process's CPU time: the built-in server's, since the
// load generators are other processes and nothing else here is busy.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux
// for every architecture Debian builds.
const clockTick = 10 * time.Millisecond

// processTreeCPU is the CPU time of process pid and its children (nginx's
// master and workers), from /proc.
func processTreeCPU(b *testing.B, pid int) time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue // gone
		}
		// The fields after the command, which is in parentheses and may
		// hold spaces: state, ppid, ..., utime (14th field), stime (15th).
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); n != pid && ppid != pid {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * clockTick
	}
	return total
}

var (
	rpsLine = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	p99Line = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
	errLine = regexp.MustCompile(`(?m)^\s+(Non-2xx or 3xx responses|Socket errors):.*$`)
)

func acceptEncoding(gz bool) string {
	if gz {
		return "gzip"
	}
	return "identity"
}

func runWrk(b *testing.B, wrk, url string, gz bool) result {
	args := []string{"-t1", fmt.Sprintf("-c%d", connections), fmt.Sprintf("-d%ds", int(runDuration.Seconds())), "--latency", "-H", "Accept-Encoding: " + acceptEncoding(gz), url}
	out, err := exec.Command(wrk, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if m := errLine.Find(out); m != nil {
		b.Fatalf("wrk %s: %s\n%s", url, m, out)
	}
	rm, pm := rpsLine.FindSubmatch(out), p99Line.FindSubmatch(out)
	if rm == nil || pm == nil {
		b.Fatalf("cannot read wrk's output:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(rm[1]), 64)
	v, _ := strconv.ParseFloat(string(pm[1]), 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(pm[2])]
	return result{rps: rps, p99: time.Duration(v * float64(unit))}
}

var (
	h2Finished = regexp.MustCompile(`(?m)^finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Statuses = regexp.MustCompile(`(?m)^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Protocol = regexp.MustCompile(`(?m)^Application protocol: (\S+)`)
)

// runH2load drives url over HTTP/2 with one stream on each connection;
// h2load prints no percentiles, so the p99 is read from its per-request
// log.
func runH2load(b *testing.B, h2load, url string, gz bool) result {
	logFile := filepath.Join(b.TempDir(), "requests.log")
	args := []string{"-t1", fmt.Sprintf("-c%d", connections), "-m1", fmt.Sprintf("-D%d", int(runDuration.Seconds())),
		"--log-file=" + logFile, "-H", "accept-encoding: " + acceptEncoding(gz), url}
	out, err := exec.Command(h2load, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("h2load %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	fm, rm, sm, pm := h2Finished.FindSubmatch(out), h2Requests.FindSubmatch(out), h2Statuses.FindSubmatch(out), h2Protocol.FindSubmatch(out)
	if fm == nil || rm == nil || sm == nil || pm == nil {
		b.Fatalf("cannot read h2load's output:\n%s", out)
	}
	// The 2xx count may include a response that ended as the run stopped,
	// so only the failures are counted.
	if string(pm[1]) != "h2" || string(rm[1]) != string(rm[2]) || string(rm[3]) != "0" || string(rm[4]) != "0" || string(rm[5]) != "0" ||
		string(sm[1]) != "0" || string(sm[2]) != "0" || string(sm[3]) != "0" {
		b.Fatalf("h2load %s: not all requests succeeded over h2 with 2xx:\n%s", url, out)
	}
	rps, _ := strconv.ParseFloat(string(fm[1]), 64)
	p99, err := logP99(logFile)
	if err != nil {
		b.Fatalf("h2load's request log: %v", err)
	}
	return result{rps: rps, p99: p99}
}

// logP99 is the 99th percentile of the third column of h2load's log: a
// request's time to the end of its response, in microseconds.
func logP99(name string) (time.Duration, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var ds []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Fields(sc.Text())
		if len(cols) != 3 {
			return 0, fmt.Errorf("line %q: want 3 columns (start, status, µs)", sc.Text())
		}
		us, err := strconv.ParseInt(cols[2], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		ds = append(ds, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if len(ds) == 0 {
		return 0, fmt.Errorf("%s is empty: h2load logged no request", name)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)*99/100], nil
}

// median takes the median run by requests per second, and the median p99
// and CPU per request each on its own.
func median(rs []result) result {
	rps := make([]float64, len(rs))
	p99 := make([]time.Duration, len(rs))
	for i, r := range rs {
		rps[i], p99[i] = r.rps, r.p99
	}
	sort.Float64s(rps)
	sort.Slice(p99, func(i, j int) bool { return p99[i] < p99[j] })
	cpu := make([]time.Duration, len(rs))
	for i, r := range rs {
		cpu[i] = r.cpuPerReq
	}
	slices.Sort(cpu)
	return result{rps: rps[len(rps)/2], p99: p99[len(p99)/2], cpuPerReq: cpu[len(cpu)/2]}
}

// runs lists each run's req/s, for the spread.
func runs(rs []result) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.FormatFloat(r.rps, 'f', 0, 64)
	}
	return strings.Join(s, "/")
}
