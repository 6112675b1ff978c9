package spt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/hostinit/console"
)

// TestSuperviseRestartsADyingTender runs a "tender" that exits at once and
// counts its runs: it is restarted after a second, then after two, and
// Supervise returns when its context ends.
func TestSuperviseRestartsADyingTender(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := filepath.Join(dir, "tender")
	os.WriteFile(script, []byte("#!/bin/sh\necho run >> "+count+"\nexit 3\n"), 0o755)
	var logs strings.Builder
	log := console.NewWithClock(&logs, func() time.Duration { return 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	Supervise(ctx, log, []string{script, "--net:service=tap0"}, nil)
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Supervise returned %s after its context ended", took)
	}
	b, _ := os.ReadFile(count)
	if runs := strings.Count(string(b), "run"); runs != 2 {
		t.Errorf("%d runs in 2.5 s; want 2 (restart after 1 s, then a 2 s back-off)", runs)
	}
	for _, want := range []string{"starting [" + script + " --net:service=tap0]", "exited after", "exit status 3", "restarting in 1s", "restarting in 2s"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestSuperviseGivesTheEnvironment: the tender sees the plan's environment
// besides the init's.
func TestSuperviseGivesTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	script := filepath.Join(dir, "tender")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$LD_LIBRARY_PATH $HOME\" > "+seen+"\nexec sleep 60\n"), 0o755)
	t.Setenv("HOME", "/root-of-init")
	var logs strings.Builder
	log := console.NewWithClock(&logs, func() time.Duration { return 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	Supervise(ctx, log, []string{script}, []string{"LD_LIBRARY_PATH=/usr/lib/solo5-spt"})
	b, _ := os.ReadFile(seen)
	if got := strings.TrimSpace(string(b)); got != "/usr/lib/solo5-spt /root-of-init" {
		t.Errorf("the tender saw %q; want its library path and the init's environment", got)
	}
	if !strings.Contains(logs.String(), "starting ["+script+"] with [LD_LIBRARY_PATH=/usr/lib/solo5-spt]") {
		t.Errorf("log:\n%s", logs.String())
	}
}
