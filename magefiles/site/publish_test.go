package site

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// gitCommit commits everything in root (a new repository the first time).
func gitCommit(t *testing.T, root, message string) {
	t.Helper()
	testtool.Need(t, "git", "git")
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		runGit(t, root, "init", "-q", "-b", "main")
	}
	runGit(t, root, "add", "-A")
	runGit(t, root, "-c", "user.name=Author", "-c", "user.email=author@example.com", "commit", "-q", "-m", message)
}

func runGit(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", root}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func publishOptions(root string, logs *bytes.Buffer) Options {
	o := options(root, logs)
	o.Publish = true
	return o
}

func TestPublishBuildsTheCommitAndNothingElse(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{".gitignore": "_site/\n_build/\nprivate.txt\n", "private.txt": "ignored by git\n"})
	gitCommit(t, root, "blog")
	head := runGit(t, root, "rev-parse", "HEAD")

	var logs bytes.Buffer
	r, err := Build(context.Background(), publishOptions(root, &logs))
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if !r.Published || r.Commit != head {
		t.Errorf("receipt = %+v, want published commit %s", r, head)
	}
	site := filepath.Join(root, "_site")
	if _, err := os.Stat(filepath.Join(site, "private.txt")); err == nil {
		t.Error("a file git ignores was published")
	}
	if _, err := os.Stat(filepath.Join(site, "2024", "01", "02", "first.html")); err != nil {
		t.Errorf("a committed post is missing: %v", err)
	}
	assertOnlyBlogFiles(t, site)

	// The same sources previewed from the working tree give the same build
	// (the preview reads the working tree as jekyll does, ignored files too).
	if err := os.Remove(filepath.Join(root, "private.txt")); err != nil {
		t.Fatal(err)
	}
	preview, err := Build(context.Background(), options(root, &logs))
	if err != nil || !preview.Skipped || preview.BuildID != r.BuildID {
		t.Errorf("preview of the same sources: %+v, %v", preview, err)
	}

	// A deploy setting changed without a commit publishes the same site.
	writeTree(t, root, map[string]string{"_config.yml": strings.Replace(fixture["_config.yml"], "blog.example.com", "www.example.com", 1)})
	again, err := Build(context.Background(), publishOptions(root, &logs))
	if err != nil || again.BuildID != r.BuildID {
		t.Errorf("deploy-only change: %+v, %v", again, err)
	}
}

// Must show: an untracked file stops a deploy. An edited post does too: the
// deploy would publish the commit without the edit.
func TestPublishStopsOnFilesTheCommitDoesNotHold(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{".gitignore": "_site/\n_build/\n"})
	gitCommit(t, root, "blog")

	writeTree(t, root, map[string]string{
		"notes.txt":                  "not for the world\n",
		"_posts/2024-01-02-first.md": "---\nlayout: default\ntitle: First post\n---\nEdited, not committed.\n",
		"magefiles/wip.go":           "package main // tooling: not a source\n",
	})
	var logs bytes.Buffer
	_, err := Build(context.Background(), publishOptions(root, &logs))
	if err == nil {
		t.Fatal("a deploy with an untracked file and an uncommitted edit went ahead")
	}
	for _, want := range []string{"not tracked by git", "notes.txt", "changed since the commit", "_posts/2024-01-02-first.md", "git add", ".gitignore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "wip.go") {
		t.Errorf("tooling files stopped the deploy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "_site")); err == nil {
		t.Error("jekyll ran")
	}

	// The preview builds the working tree and says which files git lacks.
	logs.Reset()
	r, err := Build(context.Background(), options(root, &logs))
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	if len(r.Untracked) != 1 || r.Untracked[0] != "notes.txt" || !strings.Contains(logs.String(), "notes.txt") {
		t.Errorf("preview receipt untracked = %v; log:\n%s", r.Untracked, logs.String())
	}
	if _, err := os.Stat(filepath.Join(root, "_site", "notes.txt")); err != nil {
		t.Errorf("the preview left out the untracked file: %v", err)
	}
}

// Must show: a file over the limit and an AWS-key-shaped file stop a deploy,
// each named with the fix.
func TestPublishStopsOnLargeFilesAndSecrets(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	cases := map[string]struct {
		files map[string]string
		want  []string
	}{
		"over the size limit": {map[string]string{"assets/big.bin": strings.Repeat("x", 3<<10)},
			[]string{"assets/big.bin is 0.0 MiB, over the 2KiB limit (deploy.max_file_size)", "max_file_size"}},
		"AWS access key": {map[string]string{"credentials.json": `{"aws_access_key_id": "AKIA` + "QWERTYUIOPASDFGH" + `"}`},
			[]string{"credentials.json holds an AWS access key id (AKIA…)", "git rm --cached", "rotate"}},
		"AWS secret key": {map[string]string{"deploy.txt": "aws_secret_access_key = " + strings.Repeat("k", 36) + "/a+B\n"},
			[]string{"deploy.txt holds an AWS secret access key"}},
		"private key": {map[string]string{"assets/id_rsa.pem": "-----BEGIN OPENSSH PRIVATE KEY-----\n" + strings.Repeat("b3BlbnNzaC1rZXktdjEAAAAA", 4) + "\n-----END OPENSSH PRIVATE KEY-----\n"},
			[]string{"assets/id_rsa.pem holds a private key"}},
		".env file": {map[string]string{"production.env": "DATABASE_URL=postgres://u:p@h/db\n"},
			[]string{"production.env is a .env-style file"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, fixture)
			writeTree(t, root, c.files)
			gitCommit(t, root, "blog")
			var logs bytes.Buffer
			o := publishOptions(root, &logs)
			o.MaxFileSize = 2 << 10
			_, err := Build(context.Background(), o)
			if err == nil {
				t.Fatal("the deploy went ahead")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
			// The preview warns instead.
			logs.Reset()
			o.Publish = false
			if _, err := Build(context.Background(), o); err != nil {
				t.Fatalf("preview: %v", err)
			}
			if !strings.Contains(logs.String(), "a deploy stops on it") {
				t.Errorf("the preview did not warn:\n%s", logs.String())
			}
		})
	}
}

// AWS's documentation examples are not secrets, and a post may quote them.
func TestDocumentationExampleKeysAreNotSecrets(t *testing.T) {
	post := "Set AKIAIOSFODNN7EXAMPLE and aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, " +
		"and a key looks like -----BEGIN RSA PRIVATE KEY----- ... -----END RSA PRIVATE KEY-----."
	if f := screenContent("_posts/2024-01-01-keys.md", []byte(post)); f != nil {
		t.Errorf("flagged %+v", f)
	}
}

// GitHub Pages can publish from docs/: the blog is a subdirectory of its
// repository, and its paths are its own.
func TestPublishABlogInASubdirectory(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	repo := t.TempDir()
	root := filepath.Join(repo, "docs")
	writeTree(t, root, fixture)
	writeTree(t, repo, map[string]string{"src/main.c": "int main() { return 0; }\n", ".gitignore": "_site/\n_build/\n"})
	gitCommit(t, repo, "project with its blog in docs/")
	writeTree(t, repo, map[string]string{"src/wip.c": "/* untracked, outside the blog */\n"})

	var logs bytes.Buffer
	r, err := Build(context.Background(), publishOptions(root, &logs))
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if _, err := os.Stat(filepath.Join(root, "_site", "2024", "01", "02", "first.html")); err != nil || r.Sources != 5 {
		t.Errorf("the blog in docs/ was not built from its own files (%d sources): %v", r.Sources, err)
	}
	writeTree(t, root, map[string]string{"stray.txt": "untracked, in the blog\n"})
	if _, err := Build(context.Background(), publishOptions(root, &logs)); err == nil || !strings.Contains(err.Error(), "not tracked by git (a deploy never publishes them): stray.txt") {
		t.Errorf("an untracked file in docs/: %v", err)
	}
}

func TestPublishWithoutACommitSaysHowToMakeOne(t *testing.T) {
	testtool.Need(t, "git", "git")
	root := t.TempDir()
	writeTree(t, root, fixture)
	var logs bytes.Buffer
	_, err := Build(context.Background(), publishOptions(root, &logs))
	if err == nil || !strings.Contains(err.Error(), "git init && git add -A && git commit") {
		t.Fatalf("error = %v", err)
	}
}

// Bundler reads the working tree's Gemfile and Gemfile.lock, not the
// commit's: a deploy with Bundler stops, before staging or running anything,
// unless they are the commit's, saying which file and how to fix it.
func TestPublishWithBundlerNeedsTheCommittedGemfileAndLock(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{".gitignore": "_site/\n_build/\n", "Gemfile.lock": lockPinning("3.9.5")})
	gitCommit(t, root, "blog")
	calls := bundleOnPath(t)
	stage := filepath.Join(root, "_build", stageDir)
	refused := func(want ...string) {
		t.Helper()
		if err := os.RemoveAll(stage); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		_, err := Build(context.Background(), publishOptions(root, &logs))
		for _, w := range append(want, "Bundler", "git add Gemfile Gemfile.lock && git commit", "git checkout -- Gemfile.lock") {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error %v does not say %q", err, w)
			}
		}
		if _, err := os.Stat(stage); err == nil {
			t.Errorf("the commit was staged before the deploy was refused")
		}
		if _, err := os.Stat(calls); err == nil {
			t.Errorf("bundle ran:\n%s", readFile(t, calls))
		}
	}

	writeTree(t, root, map[string]string{"Gemfile.lock": lockPinning("3.9.6")})
	refused("Gemfile.lock (changed since the commit)")
	runGit(t, root, "add", "Gemfile.lock") // staged is not committed
	refused("Gemfile.lock (changed since the commit)")
	runGit(t, root, "reset", "-q", "HEAD", "Gemfile.lock")
	runGit(t, root, "checkout", "--", "Gemfile.lock")
	writeTree(t, root, map[string]string{"Gemfile": "gem 'github-pages'\ngem 'jekyll-sitemap'\n"})
	refused("Gemfile (changed since the commit)")
	runGit(t, root, "checkout", "--", "Gemfile")

	var logs bytes.Buffer
	r, err := Build(context.Background(), publishOptions(root, &logs))
	if err != nil || r.Jekyll != "bundle exec jekyll" || !strings.Contains(readFile(t, calls), "jekyll build --source "+stage) {
		t.Fatalf("the commit's Gemfile and lock: %+v, %v\n%s", r, err, logs.String())
	}
	if err := os.Remove(calls); err != nil {
		t.Fatal(err)
	}

	// A lock the commit does not hold: .gitignore lists it (as GitHub
	// Pages' template does), or git does not track it.
	writeTree(t, root, map[string]string{".gitignore": "_site/\n_build/\nGemfile.lock\n"})
	runGit(t, root, "rm", "-q", "--cached", "Gemfile.lock")
	gitCommit(t, root, "ignore the lock")
	refused("Gemfile.lock (not in the commit: .gitignore lists it)")
	writeTree(t, root, map[string]string{".gitignore": "_site/\n_build/\n"})
	runGit(t, root, "add", ".gitignore")
	runGit(t, root, "-c", "user.name=Author", "-c", "user.email=author@example.com", "commit", "-q", "-m", "the lock is not ignored, nor tracked")
	refused("Gemfile.lock (not in the commit: git does not track it)")
}
