//go:build !linux

package timeline

import (
	"errors"
	"time"
)

// ProcessStart is when this process was started; only Linux tells.
func ProcessStart() (time.Time, error) {
	return time.Time{}, errors.New("the process's start time is read from /proc, on Linux only")
}
