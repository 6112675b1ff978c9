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

func TestUptimeIsTheBootClock(t *testing.T) {
	if Uptime() <= 0 {
		t.Error("CLOCK_BOOTTIME gave no time")
	}
}
