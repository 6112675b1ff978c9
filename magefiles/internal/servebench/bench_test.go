// Package servebench measures the host image's built-in server
// (hostinit/static) against nginx on the same _site: this repository's blog
// built by jekyll. Run it with
//
//	go test -run '^$' -bench . -benchtime 1x ./magefiles/internal/servebench/
//
// It needs Debian's nginx-light and wrk (.ci/install installs both); without
// them it is skipped with a message.
package servebench

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/hostinit/static"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// The load: wrk with one thread (the machine has two cores, shared by the
// server under test and the load generator) and 50 keep-alive connections,
// for runDuration per run; rounds runs per server and path, the two servers
// alternating so drift in the machine's load touches both alike.
const (
	connections = 50
	runDuration = 5 * time.Second
	rounds      = 3
)

// targets are the three loads of the issue: a small page, the same page
// gzipped, and a 20–100 KB body (the feed, 27 KB).
var targets = []struct {
	name, path string
	gzip       bool
}{
	{"page", "/", false},
	{"page-gzip", "/", true},
	{"feed-27KB", "/feed.xml", false},
}

func BenchmarkAgainstNginx(b *testing.B) {
	nginx := testtool.Need(b, "nginx", "nginx-light")
	wrk := testtool.Need(b, "wrk", "wrk")
	siteDir := buildSite(b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	goURL := startBuiltin(b, ctx, siteDir)
	nginxURL := startNginx(b, nginx, siteDir)

	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			checkSameBody(b, goURL+tg.path, nginxURL+tg.path, tg.gzip)
			var ours, theirs []result
			for i := range rounds {
				// Alternate who goes first, so neither always runs on a
				// machine just warmed (or loaded) by the other.
				order := []string{goURL, nginxURL}
				if i%2 == 1 {
					order = []string{nginxURL, goURL}
				}
				for _, base := range order {
					r := runWrk(b, wrk, base+tg.path, tg.gzip)
					if base == goURL {
						ours = append(ours, r)
					} else {
						theirs = append(theirs, r)
					}
				}
			}
			o, t := median(ours), median(theirs)
			b.ReportMetric(o.rps, "req/s")
			b.ReportMetric(t.rps, "nginx-req/s")
			b.ReportMetric(o.rps/t.rps, "x-nginx-req/s")
			b.ReportMetric(float64(o.p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(t.p99.Microseconds()), "nginx-p99-µs")
			b.ReportMetric(float64(o.p99)/float64(t.p99), "x-nginx-p99")
			b.Logf("%s: built-in %.0f req/s p99 %s; nginx %.0f req/s p99 %s; ratio req/s %.2f, p99 %.2f (median of %d interleaved %s runs, %d connections)",
				tg.name, o.rps, o.p99, t.rps, t.p99, o.rps/t.rps, float64(o.p99)/float64(t.p99), rounds, runDuration, connections)
		})
	}
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

func startBuiltin(b *testing.B, ctx context.Context, siteDir string) string {
	srv, err := static.Load(siteDir, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeListener(ctx, ln)
	return "http://" + ln.Addr().String()
}

// nginxConf is nginx as a careful operator would set it up for this site:
// Debian's defaults (sendfile, tcp_nopush, gzip) plus gzip_static over the
// same precompressed files the built-in server sends, reuseport (without
// it one of the two workers takes most connections, and the p99 of its
// clients suffers), no access log (the
// built-in server keeps none), keep-alive without a request limit, and the
// built-in server's headers, so both send the same bytes.
const nginxConf = `
%s
worker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 4096; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	gzip on;
	gzip_static on;
	gzip_vary on;
	gzip_types text/css application/atom+xml application/json image/svg+xml text/javascript;
	server_tokens off;
	server {
		listen 127.0.0.1:%[3]d reuseport;
		root %[4]s;
		add_header Cache-Control "no-cache";
		add_header X-Content-Type-Options nosniff;
		add_header Referrer-Policy strict-origin-when-cross-origin;
		add_header Content-Security-Policy "base-uri 'self'; object-src 'none'; frame-ancestors 'self'";
		error_page 404 /404.html;
	}
}
`

func startNginx(b *testing.B, nginx, siteDir string) string {
	dir := b.TempDir()
	root := filepath.Join(dir, "site")
	if err := precompressedCopy(siteDir, root); err != nil {
		b.Fatal(err)
	}
	port := freePort(b)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must read the test's private temporary directory
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, user, dir, port, root), 0o644); err != nil {
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
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/")
		if err == nil {
			resp.Body.Close()
			return url
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// checkSameBody makes sure both servers answer the path alike, so the
// comparison is of equal work.
func checkSameBody(b *testing.B, ours, theirs string, gz bool) {
	get := func(url string) (int, string, int) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		} else {
			req.Header.Set("Accept-Encoding", "identity")
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Encoding"), body.Len()
	}
	s1, e1, n1 := get(ours)
	s2, e2, n2 := get(theirs)
	if s1 != 200 || s2 != 200 || e1 != e2 || n1 != n2 {
		b.Fatalf("the servers answer differently: built-in %d %q %d bytes, nginx %d %q %d bytes", s1, e1, n1, s2, e2, n2)
	}
}

type result struct {
	rps float64
	p99 time.Duration
}

var (
	rpsLine = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	p99Line = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
	errLine = regexp.MustCompile(`(?m)^\s+(Non-2xx or 3xx responses|Socket errors):.*$`)
)

func runWrk(b *testing.B, wrk, url string, gz bool) result {
	enc := "identity"
	if gz {
		enc = "gzip"
	}
	args := []string{"-t1", fmt.Sprintf("-c%d", connections), fmt.Sprintf("-d%ds", int(runDuration.Seconds())), "--latency", "-H", "Accept-Encoding: " + enc, url}
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

// median takes the median run by requests per second and the median p99
// on its own.
func median(rs []result) result {
	rps := make([]float64, len(rs))
	p99 := make([]time.Duration, len(rs))
	for i, r := range rs {
		rps[i], p99[i] = r.rps, r.p99
	}
	sort.Float64s(rps)
	sort.Slice(p99, func(i, j int) bool { return p99[i] < p99[j] })
	return result{rps: rps[len(rps)/2], p99: p99[len(p99)/2]}
}
