// Package site builds the blog with jekyll and stamps the result with a build
// id: a hash of exactly the sources jekyll publishes and of what builds them
// (the jekyll command, and with Bundler its Gemfile.lock), so the id changes
// when the site can change and a health check can tell one build from another.
package site

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/logx"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/tool"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "site"

// BuildIDFile is written into the site root; health checks fetch /build-id.txt.
const BuildIDFile = "build-id.txt"

// buildIDLen is long enough to never collide between a blog's builds and
// short enough to read in a log line or a tag.
const buildIDLen = 16

// Options configure a site build.
type Options struct {
	Root  string // the blog's root (holds _config.yml)
	Force bool   // build even when the sources are unchanged
	// Jekyll is the jekyll command line (e.g. "bundle exec jekyll"); ""
	// chooses: Bundler when the blog has a Gemfile.lock and bundle is
	// installed, else the system's jekyll.
	Jekyll string
	// Publish builds for a deploy: from the files of the HEAD commit only,
	// and stops on a source git does not track or that differs from HEAD,
	// a file over MaxFileSize, or one that looks like a secret. Without it
	// (a preview) the working tree is built, and those are warnings.
	Publish     bool
	MaxFileSize int64 // 0 means DefaultMaxFileSize
	Log         *logrus.Entry
}

// Receipt records a site build.
type Receipt struct {
	BuildID     string            `json:"build_id"`     // short id stamped into the site
	Commit      string            `json:"commit"`       // the commit built (a deploy), else HEAD, else CI's, else "unknown"
	SourcesHash string            `json:"sources_hash"` // full hash the id is cut from: the sources, the jekyll command and, with Bundler, Gemfile.lock (see buildHash)
	Sources     int               `json:"sources"`      // number of source files hashed
	SiteDir     string            `json:"site_dir"`     // absolute path of _site
	Seconds     float64           `json:"seconds"`      // jekyll's run time; 0 when skipped
	Skipped     bool              `json:"skipped"`      // the sources were unchanged
	Published   bool              `json:"published"`    // built from git's HEAD for a deploy
	Untracked   []string          `json:"untracked"`    // preview only: sources git does not track
	Jekyll      string            `json:"jekyll"`       // the jekyll command line
	Inputs      map[string]string `json:"inputs"`       // sources, jekyll and (with Bundler) gemfile_lock hashes
	Outputs     map[string]string `json:"outputs"`
}

// ReadReceipt loads _build/site.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "site", "not built", "run `mage site`")
}

// stageDir is where a deploy's sources are written from git.
const stageDir = "site-src"

// Build runs jekyll build into Root/_site unless the sources are unchanged.
func Build(ctx context.Context, o Options) (*Receipt, error) {
	o = o.withDefaults()
	siteDir := filepath.Join(o.Root, "_site")
	buildDir := filepath.Join(o.Root, "_build")

	argv, why := JekyllCommand(o.Root, o.Jekyll, exec.LookPath)
	if o.Publish && usesBundler(argv) {
		// Bundler reads the working tree's Gemfile and lock, not the
		// commit's: a deploy goes on only when they are the commit's.
		if err := gemfilesAsCommitted(ctx, o.Root); err != nil {
			return nil, err
		}
	}
	source, commit, untracked, err := o.sources(ctx, filepath.Join(buildDir, stageDir))
	if err != nil {
		return nil, err
	}
	src, err := HashSources(source)
	if err != nil {
		return nil, err
	}
	var lock []byte
	if usesBundler(argv) {
		if lock, err = bundlerLock(o.Root); err != nil {
			return nil, err
		}
	}
	sum, inputs := buildHash(src.Sum(), argv, lock)
	r := &Receipt{
		BuildID:     sum[:buildIDLen],
		SourcesHash: sum,
		Sources:     src.Len(),
		SiteDir:     siteDir,
		Published:   o.Publish,
		Commit:      commit,
		Untracked:   untracked,
		Jekyll:      strings.Join(argv, " "),
		Inputs:      inputs,
		Outputs:     map[string]string{"site": siteDir, "build_id": filepath.Join(siteDir, BuildIDFile)},
	}
	if r.Commit == "" {
		// A preview: the working tree, which may differ from any commit.
		r.Commit = Commit(ctx, o.Root)
	}
	log := o.Log.WithField("build_id", r.BuildID)
	if commit != "" {
		log = log.WithField("commit", commit)
	}

	if !o.Force && upToDate(buildDir, siteDir, r.BuildID) {
		log.Info("site unchanged since the last build; skipping jekyll (FORCE=1 rebuilds)")
		r.Skipped = true
		return r, receipt.Write(buildDir, ReceiptName, r)
	}

	if _, err := tool.Find("site", argv[0], InstallJekyll); err != nil {
		return nil, err
	}
	log.Infof("using %s: %s", r.Jekyll, why)
	o.warnUnpinned(ctx, argv)
	cfg, _, err := readJekyllConfig(source)
	if err != nil {
		return nil, err
	}
	// The build id reaches the layouts as site.build_id through an extra
	// config file, so every page can carry it in a <meta> tag; the same file
	// excludes the tooling and makes Jekyll strict.
	overlayData, err := cfg.overlay(r.BuildID)
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(buildDir, "site-overlay.yml")
	if err := receipt.WriteFileAtomic(overlay, overlayData, 0o644); err != nil {
		return nil, fmt.Errorf("site: writing %s: %w", overlay, err)
	}
	args := append(slices.Clone(argv[1:]), "build",
		"--source", source,
		"--destination", siteDir,
		"--config", filepath.Join(source, config.File)+","+overlay)
	log.WithField("sources", r.Sources).Infof("building the site: %s", strings.Join(append(argv[:1], args...), " "))

	start := time.Now()
	out := &outputReader{log: o.Log, source: source, shown: o.Root}
	runErr := tool.RunTo(ctx, out, o.Root, o.env(), argv[0], args...)
	out.Close()
	if problems := out.Problems(); len(problems) > 0 && ctx.Err() == nil {
		var b strings.Builder
		for _, p := range problems {
			b.WriteString("\n  " + p.String())
		}
		return nil, fmt.Errorf("site: jekyll reported %d problem(s); the site is not published until they are fixed:%s", len(problems), b.String())
	}
	if runErr != nil {
		return nil, fmt.Errorf("site: jekyll build failed: %w; its output is above (ran %s: %s)", runErr, r.Jekyll, why)
	}
	r.Seconds = time.Since(start).Seconds()

	if err := CheckNoLeaks(o.Root, siteDir); err != nil {
		return nil, err
	}
	if err := receipt.WriteFileAtomic(filepath.Join(siteDir, BuildIDFile), []byte(r.BuildID+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("site: stamping %s: %w", BuildIDFile, err)
	}
	log.WithField("seconds", fmt.Sprintf("%.1f", r.Seconds)).Info("site built")
	return r, receipt.Write(buildDir, ReceiptName, r)
}

// sources decides what jekyll reads. For a deploy, the files of HEAD,
// written to stage after the checks; for a preview, the working tree, with
// warnings for what a deploy would stop on.
func (o Options) sources(ctx context.Context, stage string) (source, commit string, untracked []string, err error) {
	if o.Publish {
		commit, err = publishable(ctx, o, stage)
		return stage, commit, nil, err
	}
	cfg, _, err := readJekyllConfig(o.Root)
	if err != nil {
		return "", "", nil, err
	}
	f := cfg.filter()
	for _, p := range untrackedFiles(ctx, o.Root) {
		if f.isSource(p) {
			untracked = append(untracked, p)
		}
	}
	if len(untracked) > 0 {
		o.Log.WithField("files", strings.Join(untracked, ", ")).Warnf("this preview includes %d file(s) git does not track; a deploy publishes only committed files and stops on these: commit them, or delete or .gitignore them", len(untracked))
	}
	findings, err := screenTree(o.Root, f, o.MaxFileSize)
	if err != nil {
		return "", "", nil, err
	}
	for _, fd := range findings {
		o.Log.WithField("file", fd.Path).Warnf("%s %s: a deploy stops on it", fd.Path, fd.Reason)
	}
	return o.Root, "", untracked, nil
}

// Serve runs jekyll serve --livereload into _build/preview until ctx ends.
func Serve(ctx context.Context, o Options) error {
	o = o.withDefaults()
	argv, why, err := o.command()
	if err != nil {
		return err
	}
	o.Log.Infof("using %s: %s", strings.Join(argv, " "), why)
	o.warnUnpinned(ctx, argv)
	cfg, _, err := readJekyllConfig(o.Root)
	if err != nil {
		return err
	}
	overlayData, err := cfg.overlay("")
	if err != nil {
		return err
	}
	overlay := filepath.Join(o.Root, "_build", "serve-overlay.yml")
	if err := receipt.WriteFileAtomic(overlay, overlayData, 0o644); err != nil {
		return fmt.Errorf("serve: writing %s: %w", overlay, err)
	}
	// The preview has its own destination, so serving never replaces the
	// stamped _site that later steps package.
	args := append(slices.Clone(argv[1:]), "serve", "--livereload", "--source", o.Root,
		"--destination", filepath.Join(o.Root, "_build", "preview"),
		"--config", filepath.Join(o.Root, config.File)+","+overlay)
	o.Log.Info("previewing at http://localhost:4000 with live reload; Ctrl-C stops")
	if err := tool.RunEnv(ctx, o.Log, o.Root, o.env(), argv[0], args...); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serve: jekyll serve failed: %w", err)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = logx.Step("site")
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	return o
}

// env keeps a plain jekyll on the system's gems: with a Gemfile present,
// jekyll would otherwise call Bundler.setup and hide gems the Gemfile does not
// list (Debian's kramdown-parser-gfm among them). `bundle exec jekyll` users
// get Bundler's resolution as they asked.
func (o Options) env() []string {
	if argv, _, err := o.command(); err == nil && len(argv) == 1 && filepath.Base(argv[0]) == "jekyll" {
		return []string{"JEKYLL_NO_BUNDLER_REQUIRE=true"}
	}
	return nil
}

// command resolves the jekyll command line and says why it was chosen,
// failing with how to install it.
func (o Options) command() ([]string, string, error) {
	argv, why := JekyllCommand(o.Root, o.Jekyll, exec.LookPath)
	if _, err := tool.Find("site", argv[0], InstallJekyll); err != nil {
		return nil, "", err
	}
	return argv, why, nil
}

// usesBundler reports whether the jekyll command line runs through Bundler.
func usesBundler(argv []string) bool {
	return len(argv) > 0 && filepath.Base(argv[0]) == "bundle"
}

// bundlerLock is the Gemfile.lock `bundle exec` reads when run in root:
// BUNDLE_GEMFILE's lock when set (relative to root), else root's; nil when
// there is none.
func bundlerLock(root string) ([]byte, error) {
	p := filepath.Join(root, "Gemfile.lock")
	if g := os.Getenv("BUNDLE_GEMFILE"); g != "" {
		if !filepath.IsAbs(g) {
			g = filepath.Join(root, g)
		}
		p = g + ".lock"
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("site: reading %s for the build id: %w", p, err)
	}
	return data, nil
}

// buildHash is the hash the build id is cut from: what jekyll reads (the
// sources' hash), the command that runs it, and with Bundler the lock that
// picks the gems (lock; nil without Bundler or without a lock), so `bundle
// update`, or a switch between Bundler and the system's jekyll, makes a new
// build. It returns the inputs' own hashes for the receipt too.
func buildHash(sources string, argv []string, lock []byte) (string, map[string]string) {
	var t receipt.Tree
	inputs := map[string]string{"sources": sources}
	t.Add("sources", []byte(sources))
	t.Add("jekyll", []byte(strings.Join(argv, "\x00")))
	inputs["jekyll"] = strings.Join(argv, " ")
	if usesBundler(argv) && lock != nil {
		t.Add("Gemfile.lock", lock)
		inputs["gemfile_lock"] = fmt.Sprintf("%x", sha256.Sum256(lock))
	}
	return t.Sum(), inputs
}

// lockedJekyllVersion matches jekyll's own entry in a Gemfile.lock's specs
// (four spaces in, as Bundler writes it; a dependency's constraint, six in,
// is "jekyll (= 3.9.5)").
var lockedJekyllVersion = regexp.MustCompile(`(?m)^    jekyll \(([^()\s]+)\)\s*$`)

// jekyllVersion matches `jekyll --version`'s line ("jekyll 4.3.1").
var jekyllVersion = regexp.MustCompile(`(?m)^jekyll (\S+)`)

// warnUnpinned warns when the blog has a Gemfile.lock and the system's
// jekyll builds it because bundle is not installed (not when JEKYLL chose
// it): the lock's versions are not the ones running, and the log's "using
// jekyll" line is easy to miss. It names both jekyll versions.
func (o Options) warnUnpinned(ctx context.Context, argv []string) {
	if strings.TrimSpace(o.Jekyll) != "" || usesBundler(argv) {
		return
	}
	lock, err := os.ReadFile(filepath.Join(o.Root, "Gemfile.lock"))
	if err != nil {
		return
	}
	locked := "no version of jekyll"
	if m := lockedJekyllVersion.FindSubmatch(lock); m != nil {
		locked = "jekyll " + string(m[1])
	}
	system := "of unknown version"
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], "--version")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), o.env()...)
	if out, err := cmd.Output(); err == nil {
		if m := jekyllVersion.FindSubmatch(out); m != nil {
			system = string(m[1])
		}
	}
	o.Log.WithFields(logrus.Fields{"locked": locked, "system_jekyll": system}).Warnf(
		"the blog's Gemfile.lock pins %s, but bundle is not installed, so the system's jekyll %s builds it and the site may differ from what the lock builds; "+
			"install Bundler (`sudo apt-get install ruby-bundler`, then `bundle install`) to build with the locked gems, or JEKYLL=jekyll to choose the system's",
		locked, system)
}

// InstallJekyll is the fix for a missing jekyll.
const InstallJekyll = "install jekyll with `sudo apt-get install jekyll` (Debian/Ubuntu), " +
	"or with Ruby's Bundler (`bundle install`, then JEKYLL=\"bundle exec jekyll\")"

// JekyllCommand is the jekyll command line for the blog at root, and why: the
// JEKYLL variable's (jekyllEnv) when set; else a blog with a Gemfile.lock
// pins its gems with Bundler (a GitHub Pages blog pins github-pages), so
// Bundler runs it when installed; otherwise the system's jekyll does.
func JekyllCommand(root, jekyllEnv string, lookPath func(string) (string, error)) (argv []string, why string) {
	_, lockErr := os.Stat(filepath.Join(root, "Gemfile.lock"))
	_, bundleErr := lookPath("bundle")
	switch {
	case strings.TrimSpace(jekyllEnv) != "":
		return strings.Fields(jekyllEnv), "the JEKYLL environment variable names it"
	case lockErr == nil && bundleErr == nil:
		return []string{"bundle", "exec", "jekyll"}, "the blog has a Gemfile.lock and bundle is installed (run `bundle install` if gems are missing; JEKYLL=jekyll uses the system's jekyll)"
	case lockErr == nil:
		return []string{"jekyll"}, "the system's jekyll: the blog has a Gemfile.lock but bundle is not installed (`sudo apt-get install ruby-bundler` to use it)"
	}
	return []string{"jekyll"}, "the system's jekyll: the blog has no Gemfile.lock"
}

// StampedBuildID reads the build id stamped into a built site; "" when there is none.
func StampedBuildID(siteDir string) string {
	b, err := os.ReadFile(filepath.Join(siteDir, BuildIDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// upToDate reports whether _site was built from sources with this build id.
func upToDate(buildDir, siteDir, buildID string) bool {
	var prev Receipt
	if ok, err := receipt.Read(buildDir, ReceiptName, &prev); !ok || err != nil || prev.BuildID != buildID {
		return false
	}
	if StampedBuildID(siteDir) != buildID {
		return false
	}
	_, err := os.Stat(filepath.Join(siteDir, "index.html"))
	return err == nil
}

// HashSources hashes the files jekyll reads to publish the site: everything
// under root but what _config.yml excludes, the tooling, hidden files and
// build output. _config.yml is hashed without its deploy: block, so
// changing a deploy setting does not make a new build.
func HashSources(root string) (*receipt.Tree, error) {
	cfg, cfgData, err := readJekyllConfig(root)
	if err != nil {
		return nil, err
	}
	publishedCfg, err := withoutDeploy(cfgData)
	if err != nil {
		return nil, err
	}
	f := cfg.filter()
	var t receipt.Tree
	t.Add(config.File, publishedCfg)
	err = walkSources(root, f, func(rel, abs string, _ fs.FileInfo) error {
		if rel == config.File {
			return nil
		}
		return t.AddFile(rel, abs)
	})
	if err != nil {
		return nil, fmt.Errorf("site: hashing sources: %w", err)
	}
	return &t, nil
}

// walkSources calls fn for every regular file under root that is a source.
func walkSources(root string, f sourceFilter, fn func(rel, abs string, info fs.FileInfo) error) error {
	return filepath.WalkDir(root, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, abs)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if f.skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return fn(rel, abs, info)
	})
}

// screenTree flags the sources under root a deploy must not publish.
func screenTree(root string, f sourceFilter, limit int64) ([]Finding, error) {
	var out []Finding
	err := walkSources(root, f, func(rel, abs string, info fs.FileInfo) error {
		if fd := screenSize(rel, info.Size(), limit); fd != nil {
			out = append(out, *fd)
			return nil
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return err
		}
		if fd := screenContent(rel, data); fd != nil {
			out = append(out, *fd)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("site: reading sources: %w", err)
	}
	return out, nil
}

// publishable checks the blog for a deploy and writes the sources of the
// HEAD commit into stage; it returns the commit.
func publishable(ctx context.Context, o Options, stage string) (string, error) {
	commit, err := headCommit(ctx, o.Root)
	if err != nil {
		return "", err
	}
	// What HEAD's _config.yml says is what jekyll will read.
	cfgData, err := git(ctx, o.Root, "show", "HEAD:./"+config.File)
	if err != nil {
		return "", fmt.Errorf("site: the commit %s has no %s (%v); commit it", commit, config.File, err)
	}
	var cfg jekyllConfig
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		return "", fmt.Errorf("site: %s in commit %s is not valid YAML: %w", config.File, commit, err)
	}
	f := cfg.filter()

	untracked, changed, err := worktreeChanges(ctx, o.Root)
	if err != nil {
		return "", err
	}
	var stray, edited []string
	for _, p := range untracked {
		if f.isSource(p) {
			stray = append(stray, p)
		}
	}
	for _, p := range changed {
		if !f.isSource(p) {
			continue
		}
		// Deploy settings are read from the working tree; a _config.yml
		// that differs only in its deploy: block publishes the same site.
		if p == config.File && sameSiteConfig(o.Root, cfgData) {
			continue
		}
		edited = append(edited, p)
	}
	if len(stray) > 0 || len(edited) > 0 {
		var b strings.Builder
		if len(stray) > 0 {
			fmt.Fprintf(&b, "\n  not tracked by git (a deploy never publishes them): %s", strings.Join(stray, ", "))
		}
		if len(edited) > 0 {
			fmt.Fprintf(&b, "\n  changed since the commit (a deploy publishes the commit as it is): %s", strings.Join(edited, ", "))
		}
		return "", fmt.Errorf("site: the working tree differs from commit %s in files the site is built from:%s\n"+
			"fix: commit what belongs to the blog (`git add PATH && git commit`), and delete, .gitignore or `git restore` the rest; "+
			"`mage site` previews the working tree as it is", commit, b.String())
	}

	entries, err := headFiles(ctx, o.Root)
	if err != nil {
		return "", err
	}
	var files []gitEntry
	var findings []Finding
	for _, e := range entries {
		if !f.isSource(e.Path) {
			continue
		}
		switch e.Mode {
		case "120000", "160000":
			// A link may point anywhere on the build machine, and a
			// submodule's files are another repository's: neither is
			// published.
			o.Log.WithField("file", e.Path).Warn("not published: a symbolic link or submodule; commit the files themselves")
			continue
		}
		if fd := screenSize(e.Path, e.Size, o.MaxFileSize); fd != nil {
			findings = append(findings, *fd)
			continue
		}
		files = append(files, e)
	}
	if err := stageFiles(ctx, o.Root, stage, files, func(p string, data []byte) {
		if fd := screenContent(p, data); fd != nil {
			findings = append(findings, *fd)
		}
	}); err != nil {
		return "", err
	}
	if len(findings) > 0 {
		return "", findingsError(findings)
	}
	o.Log.WithFields(logrus.Fields{"commit": commit, "files": len(files)}).Info("publishing the files of the commit, as git holds them")
	return commit, nil
}

// stageFiles writes files into stage, screening each one's content.
func stageFiles(ctx context.Context, root, dir string, files []gitEntry, screen func(p string, data []byte)) error {
	if err := clearDir(dir); err != nil {
		return err
	}
	return catFiles(ctx, root, files, func(e gitEntry, data []byte) error {
		screen(e.Path, data)
		return writeStaged(dir, e, data)
	})
}

// sameSiteConfig reports whether the working tree's _config.yml publishes
// the same site as head (they differ at most in the deploy: block).
func sameSiteConfig(root string, head []byte) bool {
	work, err := os.ReadFile(filepath.Join(root, config.File))
	if err != nil {
		return false
	}
	a, errA := withoutDeploy(work)
	b, errB := withoutDeploy(head)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// withoutDeploy re-encodes the configuration without its deploy: key.
func withoutDeploy(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("site: %s is not valid YAML: %w", config.File, err)
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "deploy" {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
				break
			}
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("site: re-encoding %s: %w", config.File, err)
	}
	return b.Bytes(), enc.Close()
}

// CheckNoLeaks fails when any of the tooling reached siteDir: the Site step
// excludes it, so this guards against an include: or a plugin that copies it.
func CheckNoLeaks(root, siteDir string) error {
	var leaked []string
	for _, name := range Tooling {
		if _, err := os.Lstat(filepath.Join(siteDir, name)); err == nil {
			leaked = append(leaked, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("site: checking %s for %s: %w", siteDir, name, err)
		}
	}
	if len(leaked) > 0 {
		return fmt.Errorf("site: the build tooling was published into %s: %s; remove it from include: in %s (or the plugin that copies it) and build again",
			siteDir, strings.Join(leaked, ", "), filepath.Join(root, config.File))
	}
	return nil
}

// Commit is HEAD of the repository at root, else what CI says, else
// "unknown". The build's identity begins here and every later receipt and
// tag carries it forward.
func Commit(ctx context.Context, root string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		if c := strings.TrimSpace(string(out)); c != "" {
			return c
		}
	}
	for _, env := range []string{"GIT_COMMIT", "TRAVIS_COMMIT", "GITHUB_SHA"} {
		if c := strings.TrimSpace(os.Getenv(env)); c != "" {
			return c
		}
	}
	return "unknown"
}
