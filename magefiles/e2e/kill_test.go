package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
)

// TestKilledDeployConverges builds the deploy as a program (testdata/deployer:
// the deploy.Run that `mage deploy` runs) and kills it with SIGKILL at random
// points of a v1 → v2 deploy, in a subprocess talking to the emulator as
// the real one does; then runs it again. The rerun converges: v2 is live
// behind the site's one address, nothing is leaked (instances, AMIs,
// snapshots, addresses, the lease), and a reader got v1 or v2 at every
// moment of both runs.
func TestKilledDeployConverges(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "deployer")
	build := exec.Command("go", "build", "-o", bin, "./testdata/deployer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the deployer: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points drawn with seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	calls := 0 // of a v2 deploy that is not killed
	for trial := range 7 {
		e := fleettest.NewEnv(t, trial%2 == 1, awsharness.Options{})
		fleettest.Bake(t, e.H, e.C, "build1")
		lr1, _ := e.MustDeploy()
		if err := os.WriteFile(filepath.Join(e.C.Root, "_config.yml"), []byte("title: killed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fleettest.WriteImage(t, e.C, "build2")
		env := []string{"DEPLOY_DOMAIN=" + e.C.Domain, "DEPLOY_SITE=" + e.C.Site, "DEPLOY_HEALTH_URL=" + e.Builds.HealthURL(),
			"DEPLOY_BOOT=uefi", "DEPLOY_HEALTH_TIMEOUT=10s", "DEPLOY_GRACE=0", "DEPLOY_LEASE_WAIT=30s", "DEPLOY_UPLOAD_CONCURRENCY=4", "LOG_LEVEL=debug",
			"DEPLOY_HTTPS=false"} // the fleettest site serves plain HTTP; an https deploy is TestMageDeployAgainstTheEmulator's
		p := &proc{bin: bin, dir: e.C.Root, env: env}
		e.H.Calls.OnCall(p.onCall)

		w := e.Watch("build1", "build2")
		killAt := 0
		if trial > 0 {
			killAt = 1 + rng.IntN(calls)
		}
		out, err := p.run(t, killAt)
		switch {
		case trial == 0:
			if err != nil {
				t.Fatalf("a deploy nobody killed: %v\n%s", err, out)
			}
			calls = p.calls()
			t.Logf("a v2 deploy makes %d AWS calls", calls)
		case p.wasKilled():
			t.Logf("trial %d: killed at call %d of %d", trial, killAt, calls)
			if out, err := p.run(t, 0); err != nil {
				t.Fatalf("trial %d: the run after the kill at call %d: %v\n%s", trial, killAt, err, out)
			}
		default:
			t.Logf("trial %d: the deploy ended (%v) before call %d", trial, err, killAt)
		}
		w.Stop(t)

		a := e.Address()
		if a.InstanceID == lr1.InstanceID {
			t.Fatalf("trial %d: v1's instance is still live", trial)
		}
		e.WantLive(a.InstanceID, "build2")
		insts, amis, snaps := fleettest.Leftovers(t, e.H, e.C.Site)
		if !slices.Equal(insts, []string{a.InstanceID}) || len(amis) != 2 || len(snaps) != 2 || len(fleettest.Addresses(e.H, e.C.Site)) != 1 {
			t.Fatalf("trial %d (killed at call %d): instances %v (want only %s), AMIs %v, snapshots %v, addresses %v", trial, killAt, insts, a.InstanceID, amis, snaps, fleettest.Addresses(e.H, e.C.Site))
		}
		if h, found, err := fleet.ReadLease(context.Background(), e.R53, e.ZoneOf(), e.C.Domain); err != nil || found {
			t.Fatalf("trial %d: a lease is left: %+v, %v", trial, h, err)
		}
	}
}

// proc runs the deployer and kills it at a chosen AWS call, as the call
// arrives (it may or may not take effect: the emulator serves it).
type proc struct {
	bin, dir string
	env      []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	n      int
	killAt int
	killed bool
}

func (p *proc) onCall(awsharness.Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.killAt > 0 && p.n == p.killAt && p.cmd != nil && p.cmd.Process != nil {
		if err := p.cmd.Process.Kill(); err == nil { // SIGKILL: no cleanup runs
			p.killed = true
		}
	}
}

func (p *proc) run(t *testing.T, killAt int) (string, error) {
	t.Helper()
	cmd := exec.Command(p.bin, "-dir", p.dir)
	cmd.Env = append(os.Environ(), p.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p.mu.Lock()
	p.cmd, p.n, p.killAt, p.killed = cmd, 0, killAt, false
	err := cmd.Start()
	p.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("starting the deployer: %w", err)
	}
	err = cmd.Wait()
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return out.String(), err
}

func (p *proc) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *proc) wasKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}
