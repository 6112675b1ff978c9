package timeline_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

// A timeline begun after its run started (the Deploy target, after the
// program's start) covers the time before it with a phase of its own, so
// its critical path accounts for the whole run.
func TestTimelineSinceAnEarlierStart(t *testing.T) {
	c := &clock{}
	c.to(0.3)
	r := timeline.NewSince(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "start", c.now)
	s := r.Seq()
	s.Next("site")
	c.to(1)
	s.End()
	sum := r.Summary()
	if sum.Seconds != 1 || sum.CriticalSeconds != 1 || len(sum.Phases) != 2 || sum.Phases[0] != (timeline.Phase{Name: "start", Seconds: 0.3, Critical: true}) {
		t.Errorf("summary %+v", sum)
	}
	// A start that is not in the past starts the timeline now, with no phase.
	r = timeline.NewSince(c.now().Add(time.Second), "start", c.now)
	if sum := r.Summary(); sum.Seconds != 0 || len(sum.Phases) != 0 {
		t.Errorf("summary %+v", sum)
	}
}

// The process's start, as the kernel recorded it: before this test began,
// and no earlier than the test binary could have been started.
func TestProcessStartIsThisProcesssStart(t *testing.T) {
	before := time.Now()
	got, err := timeline.ProcessStart()
	if runtime.GOOS != "linux" {
		if err == nil {
			t.Errorf("ProcessStart on %s: %v, no error", runtime.GOOS, got)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got.After(before) || before.Sub(got) > time.Hour {
		t.Errorf("the process started at %v, %v before the test", got, before.Sub(got))
	}
	// A child started now: its start is within a few ticks of the moment
	// it was started.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command(exe, "-test.run=^TestProcessStartPrintsItsStart$", "-test.v").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var ns int64
	for _, l := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "started %d", &ns); err == nil {
			break
		}
	}
	if d := time.Unix(0, ns).Sub(start); ns == 0 || d < -50*time.Millisecond || d > time.Second {
		t.Errorf("a child started at %v says it started %v later:\n%s", start, d, out)
	}
}

// TestProcessStartPrintsItsStart is TestProcessStartIsThisProcesssStart's
// child: it prints when the kernel says it started.
func TestProcessStartPrintsItsStart(t *testing.T) {
	got, err := timeline.ProcessStart()
	if err != nil {
		t.Skip(err)
	}
	fmt.Printf("started %d\n", got.UnixNano())
}
