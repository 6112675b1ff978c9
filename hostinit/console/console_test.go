package console

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLinesCarryUptimeAndDurations(t *testing.T) {
	var b strings.Builder
	now := time.Duration(0)
	l := NewWithClock(&b, func() time.Duration { return now })
	now = 1500 * time.Millisecond
	done := l.Step("loading modules")
	now += 250 * time.Millisecond
	done(nil)
	fail := l.Step("DHCP")
	now += time.Second
	fail(errors.New("no offer"))
	want := "[  1.500000] hostinit: loading modules ...\n" +
		"[  1.750000] hostinit: loading modules done in 250ms\n" +
		"[  1.750000] hostinit: DHCP ...\n" +
		"[  2.750000] hostinit: DHCP FAILED after 1s: no offer\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTimelineSumsUpTheBoot(t *testing.T) {
	var b strings.Builder
	now := 2 * time.Second
	l := NewWithClock(&b, func() time.Duration { return now })
	tl := l.TimelineSince(now)
	done := l.Step("loading modules")
	now += 300 * time.Millisecond
	tl.Add("modules", done(nil))
	tl.Add("entropy", 0)
	now += 212 * time.Millisecond
	tl.Ready("serving")
	want := "[  2.512000] hostinit: ready: serving 512ms after init started (modules 300ms, entropy 0s)\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", got, want)
	}
}

func TestUptimeIsTheBootClock(t *testing.T) {
	if Uptime() <= 0 {
		t.Error("CLOCK_BOOTTIME gave no time")
	}
}
