package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// simClock is simulated time alone: After moves it on by the wait and
// fires at once, or never when stuck (a wait only cancellation ends).
type simClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	stuck bool
}

func newSimClock() *simClock { return &simClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)} }

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.stuck {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch
}

// advance is time a look itself takes.
func (c *simClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// looksAt records when each look happened, relative to the start.
func looksAt(c *simClock, doneAt int, took time.Duration) (func(context.Context) (bool, error), *[]time.Duration) {
	start := c.Now()
	var at []time.Duration
	return func(context.Context) (bool, error) {
		at = append(at, c.Now().Sub(start))
		c.advance(took)
		return len(at) == doneAt, nil
	}, &at
}

func TestPaceLooksAtOnceThenEveryInterval(t *testing.T) {
	c := newSimClock()
	look, at := looksAt(c, 3, 0)
	p := fleet.Pace{Every: time.Second, Max: time.Minute}
	if err := p.Wait(context.Background(), c, look); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, time.Second, 2 * time.Second}
	if fmt.Sprint(*at) != fmt.Sprint(want) {
		t.Fatalf("looks at %v, want %v", *at, want)
	}
}

func TestPaceFirstLookAfterFirst(t *testing.T) {
	c := newSimClock()
	look, at := looksAt(c, 2, 0)
	if err := fleet.InstanceRunning.Wait(context.Background(), c, look); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{fleet.InstanceRunning.First, fleet.InstanceRunning.First + fleet.InstanceRunning.Every}
	if fmt.Sprint(*at) != fmt.Sprint(want) {
		t.Fatalf("looks at %v, want %v (RunInstances answered pending: no look at once)", *at, want)
	}
	if fleet.InstanceRunning.AtOnce().First != 0 {
		t.Fatal("AtOnce does not look at once")
	}
}

// TestPaceKeepsTicksFromTheStart: a look that takes part of the interval
// does not push the next one back; one that takes longer is followed at once.
func TestPaceKeepsTicksFromTheStart(t *testing.T) {
	c := newSimClock()
	look, at := looksAt(c, 3, 300*time.Millisecond)
	if err := (fleet.Pace{Every: time.Second, Max: time.Minute}).Wait(context.Background(), c, look); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{0, time.Second, 2 * time.Second}; fmt.Sprint(*at) != fmt.Sprint(want) {
		t.Fatalf("looks taking 300 ms each at %v, want %v", *at, want)
	}
	c = newSimClock()
	look, at = looksAt(c, 3, 2500*time.Millisecond)
	if err := (fleet.Pace{Every: time.Second, Max: time.Minute}).Wait(context.Background(), c, look); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{0, 2500 * time.Millisecond, 5 * time.Second}; fmt.Sprint(*at) != fmt.Sprint(want) {
		t.Fatalf("looks taking 2.5 s each at %v, want %v (each right after the last)", *at, want)
	}
}

func TestPaceGivesUpAtMaxAfterALastLook(t *testing.T) {
	c := newSimClock()
	look, at := looksAt(c, -1, 0)
	p := fleet.Pace{Every: 2 * time.Second, Max: 5 * time.Second}
	err := p.Wait(context.Background(), c, look)
	if !errors.Is(err, fleet.ErrWaitTimeout) {
		t.Fatalf("err = %v, want ErrWaitTimeout", err)
	}
	if want := []time.Duration{0, 2 * time.Second, 4 * time.Second, 5 * time.Second}; fmt.Sprint(*at) != fmt.Sprint(want) {
		t.Fatalf("looks at %v, want %v (the last at Max)", *at, want)
	}
}

func TestPaceReturnsTheLooksError(t *testing.T) {
	boom := errors.New("AccessDenied")
	n := 0
	err := fleet.SnapshotCompleted.Wait(context.Background(), newSimClock(), func(context.Context) (bool, error) {
		n++
		if n == 2 {
			return false, boom
		}
		return false, nil
	})
	if !errors.Is(err, boom) || n != 2 {
		t.Fatalf("err = %v after %d looks, want the second look's error", err, n)
	}
}

func TestPaceStopsWhenCancelled(t *testing.T) {
	c := newSimClock()
	c.stuck = true
	ctx, cancel := context.WithCancel(context.Background())
	looks := 0
	done := make(chan error, 1)
	go func() {
		done <- fleet.ChangeInsync.Wait(ctx, c, func(context.Context) (bool, error) { looks++; return false, nil })
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || looks != 0 {
			t.Fatalf("err = %v after %d looks, want cancelled before the first look (ChangeInsync waits first)", err, looks)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end when its context did")
	}
}

func TestPaceScaledKeepsTheLooks(t *testing.T) {
	count := func(p fleet.Pace) int {
		n := 0
		_ = p.Wait(context.Background(), newSimClock(), func(context.Context) (bool, error) { n++; return false, nil })
		return n
	}
	p := fleet.NewlyListed
	s := p.Scaled(5 * time.Millisecond)
	if s.Every != 5*time.Millisecond || s.First != 5*time.Millisecond || count(s) != count(p) {
		t.Fatalf("scaled %+v makes %d looks, %+v makes %d", s, count(s), p, count(p))
	}
	if p.Scaled(0) != p {
		t.Fatal("Scaled(0) changed the pace")
	}
	if err := (fleet.Pace{}).Wait(context.Background(), nil, nil); err == nil {
		t.Fatal("a pace without an interval was accepted")
	}
}

// BenchmarkWaitLoss measures what a wait loses: the time from the moment
// what it waits for happens to the look that sees it, for events spread
// evenly over a minute, at the SDK waiters' first intervals (15 s for
// instances, snapshots and images, 30 s for Route53; their later intervals
// only grow), at the health gate's poll before (3 s) and now (launch's
// defaultHealthPoll, 0.5 s), and at this package's paces. Reported as
// lost-s/wait.
func BenchmarkWaitLoss(b *testing.B) {
	for _, tc := range []struct {
		name string
		pace fleet.Pace
	}{
		{"sdk-ec2-15s", fleet.Pace{First: 15 * time.Second, Every: 15 * time.Second, Max: time.Hour}},
		{"sdk-route53-30s", fleet.Pace{First: 30 * time.Second, Every: 30 * time.Second, Max: time.Hour}},
		{"gate-before-3s", fleet.Pace{Every: 3 * time.Second, Max: time.Hour}},
		{"SnapshotCompleted", fleet.SnapshotCompleted},
		{"ImageAvailable", fleet.ImageAvailable},
		{"InstanceRunning", fleet.InstanceRunning},
		{"ChangeInsync", fleet.ChangeInsync},
		{"gate-0.5s", fleet.Pace{Every: 500 * time.Millisecond, Max: time.Hour}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const events = 600 // one every 100 ms over a minute
			var lost time.Duration
			for i := 0; i < b.N; i++ {
				lost = 0
				for e := 0; e < events; e++ {
					ready := time.Duration(e) * 100 * time.Millisecond
					c := newSimClock()
					start := c.Now()
					if err := tc.pace.Wait(context.Background(), c, func(context.Context) (bool, error) {
						return c.Now().Sub(start) >= ready, nil
					}); err != nil {
						b.Fatal(err)
					}
					lost += c.Now().Sub(start) - ready
				}
			}
			b.ReportMetric((lost / events).Seconds(), "lost-s/wait")
		})
	}
}
