// Package tool runs the external programs the steps drive (jekyll, mirage,
// make, qemu), streaming their output through the step's logger and stopping
// them when the build is cancelled.
package tool

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/logx"
)

// stopGrace is how long a cancelled tool gets to exit after SIGINT before it
// is killed: enough for jekyll or make to remove their temporary files.
const stopGrace = 10 * time.Second

// Find resolves name on PATH, or fails with how to install it.
func Find(step, name, install string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: %s not found on PATH; %s", step, name, install)
	}
	return p, nil
}

// Run runs name with args in dir, logging each output line at info level
// with a tool field. On cancellation the tool gets SIGINT, then SIGKILL.
func Run(ctx context.Context, log *logrus.Entry, dir, name string, args ...string) error {
	return RunEnv(ctx, log, dir, nil, name, args...)
}

// RunEnv is Run with extra environment variables (KEY=value) for the tool.
func RunEnv(ctx context.Context, log *logrus.Entry, dir string, env []string, name string, args ...string) error {
	out := logx.Writer(log, filepath.Base(name))
	defer out.Close()
	return RunTo(ctx, out, dir, env, name, args...)
}

// RunTo is RunEnv with the tool's output (stdout and stderr) going to out,
// for a step that reads what the tool says.
func RunTo(ctx context.Context, out io.Writer, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = stopGrace
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s stopped: %w", filepath.Base(name), context.Cause(ctx))
		}
		return err
	}
	return nil
}
