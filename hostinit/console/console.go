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
// with its duration: done(nil) or done(err).
func (l *Log) Step(name string) func(error) {
	start := l.now()
	l.Printf("%s ...", name)
	return func(err error) {
		took := (l.now() - start).Round(time.Millisecond)
		if err != nil {
			l.Printf("%s FAILED after %s: %v", name, took, err)
			return
		}
		l.Printf("%s done in %s", name, took)
	}
}
