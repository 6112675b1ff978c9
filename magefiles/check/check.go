// Package check runs the project's quality gates in order: formatting, go vet,
// staticcheck and the whole test suite. `mage test` and CI run exactly this.
package check

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Staticcheck is pinned so every machine and CI judge the code alike.
const Staticcheck = "honnef.co/go/tools/cmd/staticcheck@v0.8.2"

// testTimeout covers the slowest package: real boots under software emulation.
const testTimeout = "45m"

// Gate is one quality check: a command run in the repository root.
type Gate struct {
	Name string
	Argv []string
}

// Gates lists the checks in the order they run. The magefiles themselves carry
// the mage build tag, so vet and staticcheck look at them with that tag too.
func Gates() []Gate {
	return []Gate{
		{"go vet", []string{"go", "vet", "./..."}},
		{"go vet (magefiles)", []string{"go", "vet", "-tags", "mage", "./magefiles"}},
		{"staticcheck", []string{"go", "run", Staticcheck, "./..."}},
		{"staticcheck (magefiles)", []string{"go", "run", Staticcheck, "-tags", "mage", "./magefiles"}},
		{"go test", []string{"go", "test", "-count=1", "-timeout", testTimeout, "./..."}},
	}
}

// Run checks formatting, then runs every gate, stopping at the first failure.
// Output goes straight to out, so go test's own summary lines end the log.
func Run(ctx context.Context, root string, out io.Writer) error {
	fmt.Fprintln(out, "== gofmt")
	if err := Gofmt(ctx, root); err != nil {
		return err
	}
	for _, g := range Gates() {
		fmt.Fprintf(out, "== %s: %s\n", g.Name, strings.Join(g.Argv, " "))
		cmd := exec.CommandContext(ctx, g.Argv[0], g.Argv[1:]...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("test: %s failed: %w; its output is above", g.Name, err)
		}
	}
	return nil
}

// Gofmt fails naming every Go file that gofmt would change.
func Gofmt(ctx context.Context, root string) error {
	cmd := exec.CommandContext(ctx, "gofmt", "-l", "magefiles", "hostinit", "mage.go")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	listed, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("test: gofmt failed: %w: %s", err, stderr.String())
	}
	if files := strings.Fields(string(listed)); len(files) > 0 {
		return fmt.Errorf("test: not gofmt'd: %s; run gofmt -w on them", strings.Join(files, ", "))
	}
	return nil
}
