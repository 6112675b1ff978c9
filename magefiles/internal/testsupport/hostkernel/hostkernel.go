// Package hostkernel finds the unpacked Debian cloud kernel the host layout's
// tests use: $HOST_KERNEL, else deploy.host_kernel's default, where .ci/install
// unpacks it. Missing, a test skips with the fix; under CI (CI set) it fails,
// so a broken install step cannot hide behind skipped tests.
package hostkernel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// Root returns the kernel package root or skips (fails under CI).
func Root(t testing.TB) string {
	t.Helper()
	root := os.Getenv("HOST_KERNEL")
	if root == "" {
		root = config.DefaultHostKernel
	}
	if m, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*")); len(m) > 0 {
		return root
	}
	testtool.Missing(t, "no Debian cloud kernel at "+root+" (set HOST_KERNEL, or run `bash .ci/install`, whose .ci/host-kernel downloads the pinned linux-image-*-cloud-amd64 package and unpacks it there with dpkg -x)")
	return ""
}

// Modules returns the lib/modules/<release> directory of the kernel at root.
func Modules(t testing.TB, root string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(m) != 1 {
		t.Fatalf("want one lib/modules/<release> under %s, found %v", root, m)
	}
	return m[0]
}
