package image

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// needGRUB skips uefi tests where GRUB's EFI tools are missing.
func needGRUB(t testing.TB) {
	t.Helper()
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi/multiboot.mod"); err != nil {
		testtool.Missing(t, "GRUB's x86_64-efi modules are missing: install the Debian package grub-efi-amd64-bin to run this test")
	}
}

// run runs a tool and returns its standard output, failing the test on error.
func run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// randomKernel writes a kernel of n random bytes (incompressible, like a
// real one as far as gzip is concerned).
func randomKernel(t testing.TB, n int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kernel.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// withUnikernelReceipt records kernel as the Unikernel step's output in buildDir.
func withUnikernelReceipt(t testing.TB, buildDir, kernel string) {
	t.Helper()
	sum, err := receipt.HashFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if err := receipt.Write(buildDir, unikernel.ReceiptName, unikernel.Receipt{Kernel: kernel, KernelSHA256: sum, Target: "prebuilt", Prebuilt: true}); err != nil {
		t.Fatal(err)
	}
}

// testLog returns a logger whose output the test can read.
func testLog() (*logrus.Entry, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	return l.WithField("step", "image"), &buf
}

// mtoolsEnv lets mtools open images whose geometry fields it would query.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}
