package timeline_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// clock is time that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) to(sec float64) {
	c.mu.Lock()
	c.t = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(sec * float64(time.Second)))
	c.mu.Unlock()
}

// deploy plays a deploy's shape: a sequence, three phases side by side
// (the bake the longest), then a sequence again, with a gap of 0.5 s that
// no phase covers.
func deploy(c *clock) *timeline.Recorder {
	c.to(0)
	r := timeline.New(c.now)
	seq := r.Seq()
	seq.Next("site")
	c.to(2)
	seq.Next("lease")
	c.to(2.5)
	seq.End()
	endSG := r.Begin("security group")
	endAddr := r.Begin("address")
	bake := r.Seq()
	bake.Next("upload")
	c.to(3)
	endAddr()
	c.to(4)
	endSG()
	c.to(5.5)
	bake.Next("ami")
	c.to(9)
	bake.End()
	c.to(9.5) // between two steps: no phase
	launch := r.Seq()
	launch.Next("launch")
	c.to(20)
	launch.Next("cutover")
	c.to(21)
	r.Mark("live")
	launch.Next("tidy")
	c.to(22)
	launch.End()
	return r
}

func TestCriticalPathWalksBackFromTheEnd(t *testing.T) {
	c := &clock{}
	s := deploy(c).Summary()
	var path []string
	beside := map[string]string{}
	for _, p := range s.Phases {
		if p.Critical {
			path = append(path, p.Name)
		} else {
			beside[p.Name] = p.Beside
		}
	}
	if got, want := strings.Join(path, " "), "site lease upload ami launch cutover tidy"; got != want {
		t.Fatalf("critical path %q, want %q", got, want)
	}
	if beside["security group"] != "upload" || beside["address"] != "upload" {
		t.Fatalf("off the path: %v, want both beside upload", beside)
	}
	if s.Seconds != 22 || s.LiveSeconds != 21 || s.CriticalSeconds != 21.5 {
		t.Fatalf("wall %v, live %v, critical %v; want 22, 21, 21.5 (0.5 s between bake and launch is no phase's)", s.Seconds, s.LiveSeconds, s.CriticalSeconds)
	}
	line := s.Line()
	for _, want := range []string{
		"live after 21.0 s, done after 22.0 s",
		"upload 3.0 (beside it: address 0.5, security group 1.5) → ami 3.5",
		"cutover 1.0 → [live] → tidy 1.0",
		"critical path 21.5 s of 22.0 s",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}

// TestCriticalPathFollowsTheLongerBranch: when a branch beside the bake
// ends after it, that branch is what the next phase waited for.
func TestCriticalPathFollowsTheLongerBranch(t *testing.T) {
	c := &clock{}
	c.to(0)
	r := timeline.New(c.now)
	endSG := r.Begin("security group")
	endBake := r.Begin("upload")
	c.to(1)
	endBake()
	c.to(3)
	endSG()
	endLaunch := r.Begin("launch")
	c.to(4)
	endLaunch()
	s := r.Summary()
	for _, p := range s.Phases {
		if want := p.Name != "upload"; p.Critical != want {
			t.Errorf("%s critical %v, want %v", p.Name, p.Critical, want)
		}
	}
	if s.CriticalSeconds != 4 || s.LiveSeconds != 0 || !strings.HasPrefix(s.Line(), "timeline: 4.0 s, not live:") {
		t.Fatalf("summary %+v, line %q", s, s.Line())
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *timeline.Recorder
	r.Begin("x")()
	r.Mark("live")
	r.Seq().Next("y")
	r.Seq().End()
	if s := r.Summary(); len(s.Phases) != 0 || s.Seconds != 0 {
		t.Fatalf("nil recorder summary %+v", s)
	}
}
