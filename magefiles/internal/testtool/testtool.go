// Package testtool helps tests that drive real tools we did not write
// (jekyll, qemu, sfdisk, …). On a developer's machine a missing tool skips the
// test with the package to install; under CI (CI set) it fails, so a missing
// install step in .ci/run can never turn into silently skipped tests.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the tool's path, or skips (fails under CI) naming the Debian
// package that provides it.
func Need(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found on PATH; install it with `apt-get install " + debianPackage + "`"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI must install it: see .ci/run)")
	}
	t.Skip(msg)
	return ""
}
