package awsharness

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// BuildServer stands in for booted instances, which in the emulator serve
// nothing: GET /{instance-id}/ answers, for a running instance, a page with
// the build-id meta tag of the build tagged on that instance (tag BuildTag),
// and /{instance-id}/build-id.txt the id alone. A health_url of
// HealthURL() aims Launch's health gate at it.
type BuildServer struct {
	URL      string
	BuildTag string // the instance tag holding the build id

	h      *Harness
	mu     sync.Mutex
	broken map[string]brokenBuild
}

type brokenBuild struct {
	status int
	serves string
}

// StartBuildServer runs a BuildServer for the test.
func (h *Harness) StartBuildServer(t testing.TB, buildTag string) *BuildServer {
	t.Helper()
	b := &BuildServer{BuildTag: buildTag, h: h, broken: map[string]brokenBuild{}}
	srv := httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

// HealthURL is the health_url template that reaches this server.
func (b *BuildServer) HealthURL() string { return b.URL + "/{{.InstanceID}}/" }

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
	state, tags, found, err := b.h.Model.InstanceState(r.Context(), id)
	if err != nil || !found || state != "running" {
		http.Error(w, "no running instance "+id, http.StatusBadGateway)
		return
	}
	build := ""
	for _, t := range tags {
		if t.Key == b.BuildTag {
			build = t.Value
		}
	}
	b.mu.Lock()
	br, broken := b.broken[build]
	b.mu.Unlock()
	if broken {
		if br.status != http.StatusOK {
			http.Error(w, "broken (awsharness)", br.status)
			return
		}
		build = br.serves
	}
	if rest == "build-id.txt" {
		fmt.Fprintln(w, build)
		return
	}
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n  <meta name=\"build-id\" content=\"%s\">\n<title>blog</title></head><body>%s</body></html>\n", html.EscapeString(build), id)
}
