package site

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// A deploy publishes what git holds: the files of the HEAD commit, read
// from git's objects (not the working tree), so what goes live is exactly
// what was committed and its commit can be named.

// gitEntry is one file of the HEAD commit.
type gitEntry struct {
	Mode   string // 100644, 100755, 120000 (symlink), 160000 (submodule)
	Object string
	Size   int64 // -1 for submodules
	Path   string
}

// git runs git in root and returns its standard output.
func git(ctx context.Context, root string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", root}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("git not found on PATH; install it with `sudo apt-get install git`")
		}
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// headCommit is HEAD's commit id, or an error saying how to make one.
func headCommit(ctx context.Context, root string) (string, error) {
	out, err := git(ctx, root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if err != nil {
		if _, lookErr := exec.LookPath("git"); lookErr != nil {
			return "", fmt.Errorf("site: a deploy publishes what git tracks, and git is not installed: `sudo apt-get install git`")
		}
		return "", fmt.Errorf("site: a deploy publishes the files of the current git commit, and %s has none (%v); "+
			"commit the blog first: `git init && git add -A && git commit -m 'My blog'`", root, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// headFiles lists every file of HEAD with its size, without reading them.
func headFiles(ctx context.Context, root string) ([]gitEntry, error) {
	// Without --full-tree, a blog in a subdirectory of its repository
	// (GitHub Pages' docs/) lists its own files, relative to itself.
	out, err := git(ctx, root, "ls-tree", "-r", "-l", "-z", "HEAD")
	if err != nil {
		return nil, fmt.Errorf("site: listing the files of HEAD: %w", err)
	}
	var entries []gitEntry
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if rec == "" {
			continue
		}
		// <mode> SP <type> SP <object> SP+ <size> TAB <path>
		meta, p, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("site: unexpected git ls-tree output %q", rec)
		}
		size := int64(-1)
		if f[3] != "-" {
			if size, err = strconv.ParseInt(f[3], 10, 64); err != nil {
				return nil, fmt.Errorf("site: unexpected size in git ls-tree output %q", rec)
			}
		}
		entries = append(entries, gitEntry{Mode: f[0], Object: f[2], Size: size, Path: p})
	}
	return entries, nil
}

// worktreeChanges lists the paths under root git status reports, relative
// to root: untracked (not ignored) files, and tracked ones that differ from
// HEAD (staged or not).
func worktreeChanges(ctx context.Context, root string) (untracked, changed []string, err error) {
	prefix, err := git(ctx, root, "rev-parse", "--show-prefix")
	if err != nil {
		return nil, nil, fmt.Errorf("site: %w", err)
	}
	out, err := git(ctx, root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", ".")
	if err != nil {
		return nil, nil, fmt.Errorf("site: reading git status: %w", err)
	}
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if len(rec) < 4 {
			continue
		}
		// Porcelain paths are relative to the repository's top.
		code := rec[:2]
		p, ok := strings.CutPrefix(rec[3:], strings.TrimSpace(string(prefix)))
		if !ok {
			continue
		}
		if code == "??" {
			untracked = append(untracked, p)
		} else {
			changed = append(changed, p)
		}
	}
	return untracked, changed, nil
}

// untrackedFiles lists the files git does not track and does not ignore;
// nil when root is not a git working tree.
func untrackedFiles(ctx context.Context, root string) []string {
	out, err := git(ctx, root, "ls-files", "-z", "--others", "--exclude-standard")
	if err != nil {
		return nil
	}
	var files []string
	for p := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if p != "" {
			files = append(files, p)
		}
	}
	return files
}

// catFiles streams the blobs of entries, in order, to fn through one
// `git cat-file --batch`.
func catFiles(ctx context.Context, root string, entries []gitEntry, fn func(e gitEntry, data []byte) error) error {
	cmd := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "--batch")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("site: starting git cat-file: %w", err)
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, e := range entries {
			fmt.Fprintln(w, e.Object)
		}
		w.Flush()
		stdin.Close()
	}()
	r := bufio.NewReader(stdout)
	var readErr error
	for _, e := range entries {
		// <object> SP <type> SP <size> LF <contents> LF
		header, err := r.ReadString('\n')
		if err != nil {
			readErr = fmt.Errorf("site: reading %s from git: %w", e.Path, err)
			break
		}
		f := strings.Fields(header)
		if len(f) != 3 {
			readErr = fmt.Errorf("site: reading %s from git: %s", e.Path, strings.TrimSpace(header))
			break
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			readErr = fmt.Errorf("site: reading %s from git: bad size in %q", e.Path, header)
			break
		}
		data := make([]byte, size+1)
		if _, err := io.ReadFull(r, data); err != nil {
			readErr = fmt.Errorf("site: reading %s from git: %w", e.Path, err)
			break
		}
		if err := fn(e, data[:size]); err != nil {
			readErr = err
			break
		}
	}
	if readErr != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return readErr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("site: git cat-file: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// clearDir empties dir, making it when missing.
func clearDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("site: clearing %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	return nil
}

func writeStaged(dir string, e gitEntry, data []byte) error {
	p := filepath.Join(dir, filepath.FromSlash(e.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("site: staging %s: %w", e.Path, err)
	}
	mode := os.FileMode(0o644)
	if e.Mode == "100755" {
		mode = 0o755
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("site: staging %s: %w", e.Path, err)
	}
	return nil
}

// gemfilesAsCommitted fails, saying which and how to fix it, unless the
// Gemfile and Gemfile.lock in root are HEAD's: `bundle exec` reads them from
// the working tree, so a deploy that builds the commit with Bundler would
// otherwise take its gems from uncommitted edits, or from a lock git does not
// hold at all (untracked, or listed in .gitignore as GitHub Pages' template
// does).
func gemfilesAsCommitted(ctx context.Context, root string) error {
	commit, err := headCommit(ctx, root)
	if err != nil {
		return err
	}
	prefix, err := git(ctx, root, "rev-parse", "--show-prefix")
	if err != nil {
		return fmt.Errorf("site: %w", err)
	}
	out, err := git(ctx, root, "status", "--porcelain=v1", "-z", "--ignored=matching", "--untracked-files=all", "--no-renames", "--", "Gemfile", "Gemfile.lock")
	if err != nil {
		return fmt.Errorf("site: reading git status of Gemfile and Gemfile.lock: %w", err)
	}
	var differ []string
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if len(rec) < 4 {
			continue
		}
		p, ok := strings.CutPrefix(rec[3:], strings.TrimSpace(string(prefix)))
		if !ok {
			continue
		}
		switch code := rec[:2]; {
		case code == "??":
			p += " (not in the commit: git does not track it)"
		case code == "!!":
			p += " (not in the commit: .gitignore lists it)"
		case strings.Contains(code, "D"):
			p += " (deleted since the commit)"
		default:
			p += " (changed since the commit)"
		}
		differ = append(differ, p)
	}
	if len(differ) == 0 {
		return nil
	}
	return fmt.Errorf("site: a deploy builds commit %s with Bundler, which reads the working tree's Gemfile and Gemfile.lock, and they are not the commit's: %s\n"+
		"fix: commit them to deploy with these gems (`git add Gemfile Gemfile.lock && git commit`; `git add -f` for one .gitignore lists), "+
		"or put the commit's back (`git checkout -- Gemfile.lock`, and delete one the commit does not have); "+
		"JEKYLL=jekyll builds with the system's jekyll instead",
		commit, strings.Join(differ, ", "))
}
