package timeline

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// architecture Linux and Go share (proc(5): "clock ticks
// (divide by sysconf(_SC_CLK_TCK))", which is USER_HZ).
const userHZ = 100

// ProcessStart is when this process was started (its exec), from the
// kernel's record of it: /proc/self/stat's starttime, clock ticks since
// boot (proc(5)), set against CLOCK_BOOTTIME now. Good to a tick (10 ms).
// It is what a timeline of a whole command starts from: the program's
// loading, the Go runtime's and every package's initialisation and the
// command's own dispatch come before any phase it records.
func ProcessStart() (time.Time, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return time.Time{}, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// the fields after the last ")" are state (3) onwards, so starttime
	// (22) is the 20th of them.
	i := bytes.LastIndexByte(b, ')')
	var fields [][]byte
	if i >= 0 {
		fields = bytes.Fields(b[i+1:])
	}
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/self/stat: unexpected format %q", b)
	}
	ticks, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/self/stat starttime: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	age := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/userHZ
	if age < 0 {
		age = 0
	}
	return now.Add(-age), nil
}
