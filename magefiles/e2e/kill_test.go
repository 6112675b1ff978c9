package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// TestKilledMageDeployConverges kills `mage deploy` itself outright: the
// program `go run mage.go deploy` execs (compileMage), deploying this
// repository's blog with https on (Pebble as its CA) against the AWS
// harness, is sent SIGKILL with the processes it started (as a CI runner
// dies), then run again. Kills land at a random AWS call of a deploy, at a
// random moment before it creates anything in AWS (while the site, the
// certificate and the image are built), and, on the first deploy, during
// the certificate's order. Every kill is checked to have killed the process
// (its wait status: signalled, SIGKILL), not to have found it gone. After
// each rerun: one instance running, behind the site's one address, serving
// the new build; one AMI and one snapshot per build deployed; no lease, no
// challenge record, no record but the site's A record; and a reader got the
// old or the new build at every AWS call and every millisecond.
func TestKilledMageDeployConverges(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points drawn with seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	// New things unlisted for a look (EC2's eventual consistency: what a
	// rerun after a kill must not take for missing) and a new snapshot
	// "not found" for a few calls; nothing pending, which would only cost
	// each wait a second of the real binary's pace.
	e := fleettest.NewEnv(t, false, awsharness.Options{PendingDescribes: -1})
	dir := freshClone(t)
	e.C.Root = dir // the stand-in serves the certificate this blog's Cert step leaves
	ca := e.HTTPS()
	bin := compileMage(t, dir)
	env := []string{
		"DEPLOY_DOMAIN=" + e.C.Domain, "DEPLOY_SITE=" + e.C.Site, "DEPLOY_MIRAGE_TARGET=none", "DEPLOY_HOST_KERNEL=" + kernel, "UNIKERNEL=",
		"DEPLOY_HEALTH_URL=" + e.C.HealthURL, "DEPLOY_HEALTH_TIMEOUT=60s", "DEPLOY_TTL=" + strconv.Itoa(int(e.C.TTL)), "DEPLOY_GRACE=0",
		"DEPLOY_LEASE_WAIT=60s",
		"DEPLOY_ACME_DIRECTORY=" + ca.Directory, "DEPLOY_ACME_ROOTS=" + ca.RootsFile, "DEPLOY_ACME_RESOLVERS=" + ca.DNS,
	}
	p := &killer{bin: bin, dir: dir, env: env}
	e.H.Calls.OnCall(p.onCall)
	builds := 0

	// The first deploy, killed while it orders the certificate: at the
	// challenge record's creation or at the first parameter it stores.
	at := []killPoint{{action: "route53:ChangeResourceRecordSets", nth: 1}, {action: "ssm:PutParameter", nth: 1}}[rng.IntN(2)]
	out, r := p.run(t, at)
	if !r.killed {
		t.Fatalf("the first deploy was not killed at %s (%v):\n%s", at, r.err, lastLines(out, 20))
	}
	t.Logf("first deploy killed at %s, after %d calls, %.1f s", at, r.calls, r.took.Seconds())
	if out, r := p.run(t, killPoint{}); r.err != nil {
		t.Fatalf("the deploy after the kill: %v\n%s", r.err, lastLines(out, 30))
	}
	builds++
	orders := ca.Orders() // the killed run's order among them, when it got that far
	if orders < 1 {
		t.Fatalf("no certificate was ordered")
	}
	prev := siteBuild(t, dir)
	wantConverged(t, e, prev, builds, "the first deploy")

	var calls int         // of a deploy of a new build, not killed
	var beforeAWS float64 // seconds from its start to its first call that is not a read
	kinds := []string{"", "call", "before AWS", "call", "before AWS"}
	for trial, kind := range kinds {
		write(t, filepath.Join(dir, "_posts", fmt.Sprintf("2026-12-01-killed-%d.md", trial)), fmt.Sprintf("---\ntitle: Killed %d\n---\nA post for trial %d.\n", trial, trial))
		gitCommitAll(t, dir, fmt.Sprintf("trial %d", trial))
		w := e.Watch(prev)
		var at killPoint
		switch kind {
		case "call":
			at.call = 1 + rng.IntN(calls)
		case "before AWS":
			at.after = time.Duration(rng.Float64() * beforeAWS * float64(time.Second))
		}
		out, r := p.run(t, at)
		switch {
		case kind == "":
			if r.err != nil {
				t.Fatalf("a deploy nobody killed: %v\n%s", r.err, lastLines(out, 30))
			}
			calls, beforeAWS = r.calls, r.firstWrite.Seconds()
			t.Logf("%s", timelineLine(out))
			t.Logf("a deploy of a new build: %d AWS calls, the first that is not a read after %.1f s, %.1f s in all", calls, beforeAWS, r.took.Seconds())
		case !r.killed:
			t.Fatalf("trial %d: the kill %s did not land (%v):\n%s", trial, at, r.err, lastLines(out, 20))
		default:
			t.Logf("trial %d: killed %s, after %d calls (%d not reads), %.1f s; its last line: %s", trial, at, r.calls, r.writes, r.took.Seconds(), lastLines(out, 1))
			out, r := p.run(t, killPoint{})
			if r.err != nil {
				t.Fatalf("trial %d: the deploy after the kill %s: %v\n%s", trial, at, r.err, lastLines(out, 30))
			}
			t.Logf("trial %d: the deploy after the kill: %s", trial, timelineLine(out))
		}
		builds++
		build := siteBuild(t, dir)
		if build == prev {
			t.Fatalf("trial %d: the new post did not change the build (%s)", trial, build)
		}
		w.Allow(build)
		w.Stop(t)
		wantConverged(t, e, build, builds, fmt.Sprintf("trial %d (killed %s)", trial, at))
		prev = build
	}
	if ca.Orders() != orders {
		t.Errorf("%d certificate orders after the first deploy's %d; the stored certificate should have served every deploy after the first", ca.Orders(), orders)
	}
}

// wantConverged checks what the deploys left: build live behind the site's
// one address on the one instance running, an AMI and a snapshot for each
// of the builds deployed, and in the zone nothing but the site's A record
// (no lease, no challenge).
func wantConverged(t *testing.T, e *fleettest.Env, build string, builds int, what string) {
	t.Helper()
	a := e.Address()
	e.WantLive(a.InstanceID, build)
	insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
	if !slices.Equal(insts, []string{a.InstanceID}) || len(amis) != builds || len(snaps) != builds || len(fleettest.Addresses(e.H, e.C.Site)) != 1 {
		t.Fatalf("%s: instances %v (want only %s), AMIs %v and snapshots %v (want %d each), addresses %v", what, insts, a.InstanceID, amis, snaps, builds, fleettest.Addresses(e.H, e.C.Site))
	}
	if h, found, err := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); err != nil || found {
		t.Fatalf("%s: a lease is left: %+v, %v", what, h, err)
	}
	out, err := e.R53.ListResourceRecordSets(context.Background(), &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(e.ZoneOf().ID)})
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range out.ResourceRecordSets {
		name, typ := aws.ToString(rr.Name), string(rr.Type)
		if typ != "NS" && typ != "SOA" && (name != fleet.FQDN(e.C.Domain) || typ != "A") {
			t.Errorf("%s: the zone holds %s %s", what, name, typ)
		}
	}
}

// timelineLine is the timeline line of a run's output.
func timelineLine(out string) string {
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "timeline:") {
			line = l
		}
	}
	return line
}

// siteBuild is the build id the site's receipt names.
func siteBuild(t *testing.T, dir string) string {
	t.Helper()
	var rc struct {
		BuildID string `json:"build_id"`
	}
	readJSON(t, filepath.Join(dir, "_build", "site.json"), &rc)
	return rc.BuildID
}

// killPoint is where a run is killed: as the call-th AWS call arrives, as
// the nth call of action arrives, or after a delay from its start; the
// zero killPoint kills nothing.
type killPoint struct {
	call   int
	action string
	nth    int
	after  time.Duration
}

func (k killPoint) String() string {
	switch {
	case k.call > 0:
		return fmt.Sprintf("at AWS call %d", k.call)
	case k.action != "":
		return fmt.Sprintf("at %s #%d", k.action, k.nth)
	case k.after > 0:
		return fmt.Sprintf("%.2f s after its start, before AWS", k.after.Seconds())
	}
	return "nowhere"
}

// killer runs the compiled mage deploy and kills it, with every process it
// started, at a kill point. A kill at a call is sent as the call arrives,
// before it is served: the call may or may not take effect.
type killer struct {
	bin, dir string
	env      []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	start   time.Time
	at      killPoint
	n       int            // calls of this run
	writes  int            // calls of this run that are not reads
	first   time.Duration  // from the start to the first call that is not a read
	actions map[string]int // calls of this run by action
	killed  bool
}

// runResult is what one run did.
type runResult struct {
	err           error
	killed        bool // by SIGKILL, as its wait status says
	calls, writes int
	firstWrite    time.Duration
	took          time.Duration
}

func (p *killer) onCall(c awsharness.Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.n++
	p.actions[c.Action()]++
	if !readOnly(c.Operation) {
		if p.writes == 0 {
			p.first = time.Since(p.start)
		}
		p.writes++
	}
	if p.at.call > 0 && p.n == p.at.call || p.at.action != "" && c.Action() == p.at.action && p.actions[c.Action()] == p.at.nth {
		p.kill()
	}
}

// kill sends SIGKILL to the run's process group: mage and what it started
// (jekyll, git, the image's tools), as when the machine running it dies.
// p.mu is held.
func (p *killer) kill() {
	if p.cmd == nil || p.killed {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err == nil {
		p.killed = true
	}
}

func (p *killer) run(t *testing.T, at killPoint) (string, runResult) {
	t.Helper()
	cmd := exec.Command(p.bin, "deploy")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p.mu.Lock()
	p.cmd, p.at, p.n, p.writes, p.first, p.actions, p.killed = cmd, at, 0, 0, 0, map[string]int{}, false
	p.start = time.Now()
	err := cmd.Start()
	if err != nil {
		p.cmd = nil
		p.mu.Unlock()
		return "", runResult{err: fmt.Errorf("starting %s deploy: %w", p.bin, err)}
	}
	p.mu.Unlock()
	if at.after > 0 {
		timer := time.AfterFunc(at.after, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.kill()
		})
		defer timer.Stop()
	}
	err = cmd.Wait()
	// Whatever the run started and left is gone before the next run.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
	r := runResult{err: err, calls: p.n, writes: p.writes, firstWrite: p.first, took: time.Since(p.start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		r.killed = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && p.killed
	}
	if p.killed && !r.killed {
		r.err = fmt.Errorf("SIGKILL was sent, but the process ended otherwise: %v", err)
	}
	return strings.TrimSpace(out.String()), r
}
