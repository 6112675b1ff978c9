// Package console is the init's log: one line per event on the serial
// console, which is what EC2's GetConsoleOutput and QEMU's -serial show.
// Each line carries the time since the kernel started, like the kernel's own
// messages, so the two read as one timeline.
package console

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts every line the init writes, so its steps stand out among the
// kernel's messages (and tests can find them).
const Prefix = "hostinit: "

// Log writes timestamped lines.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Duration
}

// New logs to w with uptimes from the kernel's boot clock.
func New(w io.Writer) *Log { return &Log{w: w, now: Uptime} }

// NewWithClock logs to w with a given clock, for tests.
func NewWithClock(w io.Writer, now func() time.Duration) *Log { return &Log{w: w, now: now} }

// Uptime is the time since the kernel started (CLOCK_BOOTTIME).
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Printf writes one line.
func (l *Log) Printf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "[%10.6f] %s%s\n", l.now().Seconds(), Prefix, msg)
}

// Step logs the start of a step and returns the function that logs its end
// with its duration, done(nil) or done(err), and returns that duration.
func (l *Log) Step(name string) func(error) time.Duration {
	start := l.now()
	l.Printf("%s ...", name)
	return func(err error) time.Duration {
		took := (l.now() - start).Round(time.Millisecond)
		if err != nil {
			l.Printf("%s FAILED after %s: %v", name, took, err)
		} else {
			l.Printf("%s done in %s", name, took)
		}
		return took
	}
}

// ReadyPrefix starts the line that sums up a boot (Timeline.Ready).
const ReadyPrefix = "ready: "

// Timeline collects how long the init's phases took, for one line at the
// end of the boot: the time from the init's start to serving, and each
// phase (phases may overlap: the site loads while the network comes up).
type Timeline struct {
	log   *Log
	start time.Duration
	mu    sync.Mutex
	parts []string
}

// TimelineSince starts a timeline at start, an uptime (the init's start).
func (l *Log) TimelineSince(start time.Duration) *Timeline {
	return &Timeline{log: l, start: start}
}

// Add records a phase.
func (t *Timeline) Add(phase string, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.parts = append(t.parts, phase+" "+took.Round(time.Millisecond).String())
}

// Ready logs the summary as the payload starts, e.g. "ready: serving 812ms
// after init started (mount 11ms, modules 312ms, …)".
func (t *Timeline) Ready(what string) {
	t.mu.Lock()
	parts := strings.Join(t.parts, ", ")
	t.mu.Unlock()
	t.log.Printf("%s%s %s after init started (%s)", ReadyPrefix, what, (t.log.now() - t.start).Round(time.Millisecond), parts)
}
