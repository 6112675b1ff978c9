package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	// defaultHealthPoll is the pause between two looks at a booting
	// candidate: the host layout serves about 10 s after boot starts, so a
	// few seconds between polls costs little and keeps the log short.
	defaultHealthPoll = 3 * time.Second
	// healthAttemptTimeout bounds one request: a page that has not arrived
	// in 10 s is not "up", whatever comes later.
	healthAttemptTimeout = 10 * time.Second
	// maxPage is how much of an answer is read looking for the build id.
	maxPage = 1 << 20
)

// Gate polls a candidate's URL until it serves the wanted build.
type Gate struct {
	Client  *http.Client  // default: a client with no redirects to other hosts' trouble
	Poll    time.Duration // between attempts; default defaultHealthPoll
	Timeout time.Duration // the whole gate; health_timeout
	Log     *logrus.Entry
}

// ErrUnhealthy is wrapped by the error of a gate that timed out.
var ErrUnhealthy = errors.New("the instance did not serve the new build in time")

// Wait returns nil once url answers 200 and serves buildID: the build-id meta
// tag of the page or, if the page has none, /build-id.txt beside it. It
// fails with ErrUnhealthy, naming the last answer, after Timeout, and with
// ctx's error as soon as ctx is done.
func (g Gate) Wait(ctx context.Context, u, buildID string) error {
	client := g.Client
	if client == nil {
		client = &http.Client{}
	}
	poll := g.Poll
	if poll <= 0 {
		poll = defaultHealthPoll
	}
	gctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	last := "no answer yet"
	start := time.Now()
	for {
		ok, seen := check(gctx, client, u, buildID)
		if ok {
			if g.Log != nil {
				g.Log.Infof("%s serves build %s (after %s)", u, buildID, time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if gctx.Err() != nil && last != "no answer yet" {
			seen = last // the deadline cut this attempt short: the answer before says more
		}
		if seen != last && g.Log != nil {
			g.Log.Infof("waiting for %s to serve build %s: %s", u, buildID, seen)
		}
		last = seen
		select {
		case <-gctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s did not serve build %s within %s; last answer: %s", ErrUnhealthy, u, buildID, g.Timeout, last)
		case <-tick.C:
		}
	}
}

// check makes one attempt; seen describes the answer for the log.
func check(ctx context.Context, client *http.Client, u, want string) (ok bool, seen string) {
	status, body, err := get(ctx, client, u)
	switch {
	case err != nil:
		return false, err.Error()
	case status != http.StatusOK:
		return false, fmt.Sprintf("HTTP %d", status)
	}
	got, found := MetaBuildID(body)
	if !found {
		base, err := url.Parse(u)
		if err != nil {
			return false, err.Error()
		}
		txt := base.ResolveReference(&url.URL{Path: "build-id.txt"}).String()
		status, body, err := get(ctx, client, txt)
		switch {
		case err != nil:
			return false, "no build-id meta tag, and " + err.Error()
		case status != http.StatusOK:
			return false, fmt.Sprintf("no build-id meta tag, and %s answers HTTP %d", txt, status)
		}
		got = strings.TrimSpace(string(body))
	}
	if got != want {
		return false, fmt.Sprintf("HTTP 200 but build %q, not %s (still the old site?)", got, want)
	}
	return true, "serving " + want
}

func get(ctx context.Context, client *http.Client, u string) (int, []byte, error) {
	actx, cancel := context.WithTimeout(ctx, healthAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Cache-Control", "no-cache")
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
