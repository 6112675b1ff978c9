// Package testtool helps tests that drive real tools we did not write
// (jekyll, qemu, sfdisk, …). On a developer's machine a missing tool skips the
// test with the package to install; under CI (CI set) it fails, so a missing
// install step in .ci/run can never turn into silently skipped tests.
package testtool

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// Need returns the tool's path, or skips (fails under CI) naming the Debian
// package that provides it.
func Need(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// Disk tools (sfdisk, fsck.fat) live in sbin, which a user's PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
			return filepath.Join(dir, name)
		}
	}
	Missing(t, name+" not found on PATH; install it with `apt-get install "+debianPackage+"`")
	return ""
}

// Missing skips a test whose prerequisite is absent, saying what to install;
// under CI (CI set) it fails instead, since CI installs everything.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI must install it: see .ci/install)")
	}
	t.Skip(msg)
}

// CopyRepo copies the repository at repo into a new temporary directory the
// way a clone would hold it: the files git tracks, plus new files it does not
// ignore. Build output, caches and stray binaries in the working tree (a
// *.test from go test -c, say) stay behind, so a test's site build publishes
// exactly what CI's would. Without git, it copies everything but version
// control and build output.
func CopyRepo(t testing.TB, repo string) string {
	t.Helper()
	dst := t.TempDir()
	var files []string
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err == nil {
		files = strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	} else {
		err = filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repo, p)
			switch rel {
			case ".git", "_site", "_build", ".jekyll-cache", filepath.Join("_mirage", "htdocs"):
				return filepath.SkipDir
			}
			if !d.IsDir() {
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range files {
		src := filepath.Join(repo, rel)
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// Extract copies size bytes at off of the disk image img into a new sparse
// file (all-zero MiBs left as holes), for tools that take no offset, such as
// fsck.fat checking one partition.
func Extract(t testing.TB, img string, off, size int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < size; pos += int64(len(buf)) {
		n, err := in.ReadAt(buf[:min(int64(len(buf)), size-pos)], off+pos)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !sparse.IsZero(buf[:n]) {
			if _, err := out.WriteAt(buf[:n], pos); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}
