// Package timeline records how long each phase of a deploy took, and which
// of them made it last as long as it did.
//
// Phases run one after another or side by side (the security group and
// the site's address are made ready while Bake uploads). The wall time is
// then the critical path: walking back from the end, the phase that ended
// last before the point reached, then the one that ended last before that
// one started, and so on to the beginning. Those phases, added up, are the
// wall time but for the moments no phase covers (the few calls between two
// steps); a timeline whose critical path falls short of the wall by more
// than a little is missing a phase. Phases off the critical path ran beside
// one that is on it, and finished earlier.
package timeline

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Recorder collects a deploy's phases; a nil Recorder records nothing, so
// a step run on its own needs none. It is safe for concurrent use.
type Recorder struct {
	now   func() time.Time
	start time.Time

	mu    sync.Mutex
	spans []span
	marks map[string]time.Time
}

type span struct {
	phase    string
	from, to time.Time
}

// New starts a timeline now, on the clock now (time.Now in production; the
// tests' clock, whose waits take no real time, in tests).
func New(now func() time.Time) *Recorder {
	return &Recorder{now: now, start: now(), marks: map[string]time.Time{}}
}

// NewSince starts a timeline at start, which has passed (a process's
// start: see ProcessStart), on the clock now, with phase covering the time
// from start until now, so a timeline begun late still accounts for all of
// the run's time.
func NewSince(start time.Time, phase string, now func() time.Time) *Recorder {
	r := &Recorder{now: now, start: start, marks: map[string]time.Time{}}
	if t := now(); t.After(start) {
		r.Add(phase, start, t)
	} else {
		r.start = t
	}
	return r
}

// Add records that phase ran from from to to.
func (r *Recorder) Add(phase string, from, to time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.spans = append(r.spans, span{phase: phase, from: from, to: to})
	r.mu.Unlock()
}

// Begin starts phase now and returns what ends it.
func (r *Recorder) Begin(phase string) (end func()) {
	if r == nil {
		return func() {}
	}
	from := r.now()
	var once sync.Once
	return func() { once.Do(func() { r.Add(phase, from, r.now()) }) }
}

// Mark notes a moment by name ("live": the address points at the new build).
func (r *Recorder) Mark(name string) {
	if r == nil {
		return
	}
	t := r.now()
	r.mu.Lock()
	r.marks[name] = t
	r.mu.Unlock()
}

// Now is the recorder's clock; the zero time for a nil recorder.
func (r *Recorder) Now() time.Time {
	if r == nil {
		return time.Time{}
	}
	return r.now()
}

// Seq records phases that follow one another: each Next ends the phase
// before it at the instant the next begins, so a step's phases leave no gap.
type Seq struct {
	r     *Recorder
	mu    sync.Mutex
	phase string
	from  time.Time
}

// Seq starts a sequence with no phase yet; nil for a nil recorder.
func (r *Recorder) Seq() *Seq {
	if r == nil {
		return nil
	}
	return &Seq{r: r}
}

// Next ends the current phase, if any, and begins phase ("" begins none).
func (s *Seq) Next(phase string) {
	if s == nil {
		return
	}
	now := s.r.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != "" {
		s.r.Add(s.phase, s.from, now)
	}
	s.phase, s.from = phase, now
}

// End ends the current phase; a second End does nothing.
func (s *Seq) End() { s.Next("") }

// Phase is one phase in a summary, in seconds from the timeline's start.
type Phase struct {
	Name     string  `json:"name"`
	Start    float64 `json:"start"`
	Seconds  float64 `json:"seconds"`
	Critical bool    `json:"critical"` // on the critical path
	// Beside names the critical phase an off-path phase overlapped the
	// longest: it ran alongside that one.
	Beside string `json:"beside,omitempty"`
}

// Summary is a finished timeline: what the receipt holds and the line says.
type Summary struct {
	Seconds         float64 `json:"seconds"`                // wall time, from the start to the summary
	LiveSeconds     float64 `json:"live_seconds,omitempty"` // from the start to the moment marked "live"; 0 when not reached
	CriticalSeconds float64 `json:"critical_seconds"`       // the critical path's phases added up
	Phases          []Phase `json:"phases"`                 // by start
}

// Summary ends the timeline now and finds its critical path.
func (r *Recorder) Summary() Summary {
	if r == nil {
		return Summary{}
	}
	end := r.now()
	r.mu.Lock()
	spans := slices.Clone(r.spans)
	live, hasLive := r.marks["live"]
	r.mu.Unlock()
	slices.SortStableFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })

	critical := make([]bool, len(spans))
	cursor := end
	for {
		best := -1
		for i, sp := range spans {
			if critical[i] || sp.to.After(cursor) {
				continue
			}
			if best < 0 || sp.to.After(spans[best].to) || sp.to.Equal(spans[best].to) && sp.from.Before(spans[best].from) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		critical[best] = true
		cursor = spans[best].from
		if !cursor.After(r.start) {
			break
		}
	}

	s := Summary{Seconds: secs(end.Sub(r.start))}
	if hasLive {
		s.LiveSeconds = secs(live.Sub(r.start))
	}
	var total time.Duration
	for i, sp := range spans {
		p := Phase{Name: sp.phase, Start: secs(sp.from.Sub(r.start)), Seconds: secs(sp.to.Sub(sp.from)), Critical: critical[i]}
		if critical[i] {
			total += sp.to.Sub(sp.from)
		} else {
			p.Beside = besideOf(sp, spans, critical)
		}
		s.Phases = append(s.Phases, p)
	}
	s.CriticalSeconds = secs(total)
	return s
}

// besideOf is the critical phase sp overlapped the longest: the one it ran
// beside.
func besideOf(sp span, spans []span, critical []bool) string {
	best, most := "", time.Duration(0)
	for j, c := range spans {
		if !critical[j] {
			continue
		}
		if o := minTime(sp.to, c.to).Sub(maxTime(sp.from, c.from)); o > most {
			best, most = c.phase, o
		}
	}
	return best
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func secs(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / float64(time.Second) }

// Line is the summary in one line: the critical path in order, each
// phase that ran beside one in parentheses after it, and where the site
// went live.
func (s Summary) Line() string {
	var b strings.Builder
	switch {
	case s.LiveSeconds > 0:
		fmt.Fprintf(&b, "timeline: live after %.1f s, done after %.1f s:", s.LiveSeconds, s.Seconds)
	default:
		fmt.Fprintf(&b, "timeline: %.1f s, not live:", s.Seconds)
	}
	liveShown := false
	first := true
	for _, p := range s.Phases {
		if !p.Critical {
			continue
		}
		if s.LiveSeconds > 0 && !liveShown && p.Start >= s.LiveSeconds {
			b.WriteString(" → [live]")
			liveShown = true
		}
		if !first {
			b.WriteString(" →")
		}
		first = false
		fmt.Fprintf(&b, " %s %.1f", p.Name, p.Seconds)
		var beside []string
		for _, q := range s.Phases {
			if !q.Critical && q.Beside == p.Name && q.Start < p.Start+p.Seconds && q.Start+q.Seconds > p.Start {
				beside = append(beside, fmt.Sprintf("%s %.1f", q.Name, q.Seconds))
			}
		}
		if len(beside) > 0 {
			fmt.Fprintf(&b, " (beside it: %s)", strings.Join(beside, ", "))
		}
	}
	if s.LiveSeconds > 0 && !liveShown {
		b.WriteString(" → [live]")
	}
	fmt.Fprintf(&b, "; critical path %.1f s of %.1f s", s.CriticalSeconds, s.Seconds)
	return b.String()
}
