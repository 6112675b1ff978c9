// Package e2e runs the Mage targets as a newcomer does, with `go run mage.go`
// in a fresh copy of the repository.
package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// freshClone copies the repository as a clone would have it: no build
// output, no receipts, no caches, and one commit holding it all (a deploy
// publishes what git tracks).
func freshClone(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := testtool.CopyRepo(t, repo)
	gitCommitAll(t, dir, "a fresh clone")
	return dir
}

// gitCommitAll commits every file in dir, making it a repository first if
// it is not one.
func gitCommitAll(t *testing.T, dir, message string) {
	t.Helper()
	testtool.Need(t, "git", "git")
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		gitIn(t, dir, "init", "-q", "-b", "main")
	}
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "-c", "user.name=Author", "-c", "user.email=author@example.com", "commit", "-q", "--allow-empty", "-m", message)
}

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// mage runs `go run mage.go ARGS` in dir with extra environment.
func mage(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run", "mage.go"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// compileMage writes the program `go run mage.go` runs to a file:
// mage.Main compiles the magefiles with a generated main into one program
// and execs it with the target's name, in the blog's root, with the
// environment unaltered (mage's RunCompiled); `-compile PATH` builds the
// same program and stops there. A test runs it to time the deploy alone
// (no compile in its life) and to kill the very process that deploys.
func compileMage(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mage-blog")
	if out, err := mage(t, dir, nil, "-compile", bin); err != nil {
		t.Fatalf("go run mage.go -compile: %v\n%s", err, out)
	}
	if out, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output(); err != nil || len(out) > 0 {
		t.Fatalf("compiling mage left the clone changed (%v):\n%s", err, out)
	}
	return bin
}

// runMage runs the compiled magefile as mage runs it: in dir, with the
// environment and extra env, args as the target; it returns the output and
// the process's whole life, from its start to its exit.
func runMage(t *testing.T, bin, dir string, env []string, args ...string) (string, time.Duration, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return out.String(), time.Since(start), err
}

func TestListShowsThePipelineTargets(t *testing.T) {
	dir := freshClone(t)
	out, err := mage(t, dir, nil, "-l")
	if err != nil {
		t.Fatalf("mage -l: %v\n%s", err, out)
	}
	for _, target := range []string{"site", "cert", "unikernel", "image", "bake", "launch", "swap", "deploy"} {
		line := regexp.MustCompile(`(?m)^\s+` + target + `\*?\s+\S.*$`)
		if !line.MatchString(out) {
			t.Errorf("mage -l does not list %s with a summary:\n%s", target, out)
		}
	}
	help, err := mage(t, dir, nil, "-h", "unikernel")
	if err != nil || !strings.Contains(help, "UNIKERNEL=/path/to/kernel") || !strings.Contains(help, "mirage_target") {
		t.Errorf("mage -h unikernel does not explain its settings and overrides: %v\n%s", err, help)
	}
}

func TestSiteOnAFreshClone(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	dir := freshClone(t)
	out, err := mage(t, dir, nil, "site")
	if err != nil {
		t.Fatalf("mage site: %v\n%s", err, out)
	}
	if !strings.Contains(out, "step=site") || !strings.Contains(out, "mage serve") {
		t.Errorf("mage site did not log with a step field and say how to preview:\n%s", out)
	}
	index, err := os.ReadFile(filepath.Join(dir, "_site", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	posts, _ := filepath.Glob(filepath.Join(dir, "_posts", "*.md"))
	for _, p := range posts {
		slug := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}-`).ReplaceAllString(strings.TrimSuffix(filepath.Base(p), ".md"), "")
		if !strings.Contains(string(index), slug+`/"`) {
			t.Errorf("_site/index.html does not link the post %s", slug)
		}
	}
	// Only the blog is published: nothing that is part of the repository's machinery.
	entries, _ := os.ReadDir(filepath.Join(dir, "_site"))
	for _, e := range entries {
		switch e.Name() {
		case "go.mod", "go.sum", "mage.go", "magefiles", "README.md", "Gemfile", "_mirage", ".ci", ".travis.yml", ".github":
			t.Errorf("_site publishes the repository file %s", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "_build", "site.json")); err != nil {
		t.Errorf("no receipt: %v", err)
	}
}

func TestMissingMirageNamesBothWaysOut(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	dir := freshClone(t)
	// A PATH with the tools the earlier steps need but no mirage.
	bin := t.TempDir()
	for _, tool := range []string{"jekyll", "go", "make"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	// https: false, a rehearsal without AWS: the Cert step passes the build on.
	out, err := mage(t, dir, []string{"PATH=" + bin + ":/usr/bin:/bin", "DEPLOY_HTTPS=false"}, "unikernel")
	if err == nil {
		t.Fatalf("mage unikernel succeeded without mirage:\n%s", out)
	}
	for _, want := range []string{"mirage not found on PATH", "opam install", "UNIKERNEL=/path/to/kernel"} {
		if !strings.Contains(out, want) {
			t.Errorf("error does not say %q:\n%s", want, out)
		}
	}
}

func TestBadSettingsAreAllReportedBeforeAnyWork(t *testing.T) {
	dir := freshClone(t)
	out, err := mage(t, dir, []string{"DEPLOY_TTL=soon", "DEPLOY_BOOT=bios"}, "site")
	if err == nil {
		t.Fatalf("bad settings accepted:\n%s", out)
	}
	for _, want := range []string{"ttl (from DEPLOY_TTL)", "boot (from DEPLOY_BOOT)"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "_site")); !os.IsNotExist(err) {
		t.Error("a build ran despite invalid settings")
	}
}
