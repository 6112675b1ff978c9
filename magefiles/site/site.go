// Package site builds the blog with jekyll and stamps the result with a build
// id: a hash of exactly the sources jekyll publishes, so the id changes when
// the site can change and a health check can tell one build from another.
package site

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
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
	Root   string // the blog's root (holds _config.yml)
	Force  bool   // build even when the sources are unchanged
	Jekyll string // the jekyll command line; "" means "jekyll" (e.g. "bundle exec jekyll")
	Log    *logrus.Entry
}

// Receipt records a site build.
type Receipt struct {
	BuildID     string            `json:"build_id"`     // short id stamped into the site
	Commit      string            `json:"commit"`       // the repository's commit, "unknown" outside git and CI
	SourcesHash string            `json:"sources_hash"` // full hash the id is cut from
	Sources     int               `json:"sources"`      // number of source files hashed
	SiteDir     string            `json:"site_dir"`     // absolute path of _site
	Seconds     float64           `json:"seconds"`      // jekyll's run time; 0 when skipped
	Skipped     bool              `json:"skipped"`      // the sources were unchanged
	Inputs      map[string]string `json:"inputs"`
	Outputs     map[string]string `json:"outputs"`
}

// ReadReceipt loads _build/site.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "site", "not built", "run `mage site`")
}

// Build runs jekyll build into Root/_site unless the sources are unchanged.
func Build(ctx context.Context, o Options) (*Receipt, error) {
	o = o.withDefaults()
	siteDir := filepath.Join(o.Root, "_site")
	buildDir := filepath.Join(o.Root, "_build")

	src, err := HashSources(o.Root)
	if err != nil {
		return nil, err
	}
	r := &Receipt{
		BuildID:     src.Sum()[:buildIDLen],
		Commit:      Commit(ctx, o.Root),
		SourcesHash: src.Sum(),
		Sources:     src.Len(),
		SiteDir:     siteDir,
		Inputs:      map[string]string{"sources": src.Sum()},
		Outputs:     map[string]string{"site": siteDir, "build_id": filepath.Join(siteDir, BuildIDFile)},
	}
	log := o.Log.WithField("build_id", r.BuildID)

	if !o.Force && upToDate(buildDir, siteDir, r.BuildID) {
		log.Info("site unchanged since the last build; skipping jekyll (FORCE=1 rebuilds)")
		r.Skipped = true
		return r, receipt.Write(buildDir, ReceiptName, r)
	}

	argv, err := o.command()
	if err != nil {
		return nil, err
	}
	// The build id reaches the layouts as site.build_id through an extra
	// config file, so every page can carry it in a <meta> tag.
	overlay := filepath.Join(buildDir, "site-stamp.yml")
	if err := receipt.WriteFileAtomic(overlay, fmt.Appendf(nil, "build_id: %q\n", r.BuildID), 0o644); err != nil {
		return nil, fmt.Errorf("site: writing %s: %w", overlay, err)
	}
	args := append(slices.Clone(argv[1:]), "build",
		"--source", o.Root,
		"--destination", siteDir,
		"--config", filepath.Join(o.Root, config.File)+","+overlay)
	log.WithField("sources", r.Sources).Infof("building the site: %s", strings.Join(append(argv[:1], args...), " "))

	start := time.Now()
	if err := tool.RunEnv(ctx, o.Log, o.Root, o.env(), argv[0], args...); err != nil {
		return nil, fmt.Errorf("site: jekyll build failed: %w; its output is above", err)
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

// Serve runs jekyll serve --livereload into _build/preview until ctx ends.
func Serve(ctx context.Context, o Options) error {
	o = o.withDefaults()
	argv, err := o.command()
	if err != nil {
		return err
	}
	// The preview has its own destination, so serving never replaces the
	// stamped _site that later steps package.
	args := append(slices.Clone(argv[1:]), "serve", "--livereload", "--source", o.Root, "--destination", filepath.Join(o.Root, "_build", "preview"))
	o.Log.Info("previewing at http://localhost:4000 with live reload; Ctrl-C stops")
	if err := tool.RunEnv(ctx, o.Log, o.Root, o.env(), argv[0], args...); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serve: jekyll serve failed: %w", err)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Jekyll == "" {
		o.Jekyll = "jekyll"
	}
	if o.Log == nil {
		o.Log = logx.Step("site")
	}
	return o
}

// env keeps a plain jekyll on the system's gems: with a Gemfile present,
// jekyll would otherwise call Bundler.setup and hide gems the Gemfile does not
// list (Debian's kramdown-parser-gfm among them). `bundle exec jekyll` users
// get Bundler's resolution as they asked.
func (o Options) env() []string {
	if o.Jekyll == "jekyll" {
		return []string{"JEKYLL_NO_BUNDLER_REQUIRE=true"}
	}
	return nil
}

// command resolves the jekyll command line, failing with how to install it.
func (o Options) command() ([]string, error) {
	argv := strings.Fields(o.Jekyll)
	_, err := tool.Find("site", argv[0], "install jekyll with `sudo apt-get install jekyll` (Debian/Ubuntu), "+
		"or with Ruby's Bundler (`bundle install`, then JEKYLL=\"bundle exec jekyll\")")
	return argv, err
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

// alwaysExcluded are never published, whatever _config.yml says: build output,
// caches and version control.
var alwaysExcluded = []string{"_site", "_build", ".git", ".jekyll-cache", ".sass-cache", ".jekyll-metadata", "Gemfile.lock"}

// HashSources hashes the files jekyll reads to publish the site: everything
// under root except what _config.yml excludes, hidden files and build output.
// _config.yml is hashed without its deploy: block, so changing a deploy
// setting does not make a new build.
func HashSources(root string) (*receipt.Tree, error) {
	cfgData, err := os.ReadFile(filepath.Join(root, config.File))
	if err != nil {
		return nil, fmt.Errorf("site: reading %s: %w", config.File, err)
	}
	var jekyllCfg struct {
		Exclude []string `yaml:"exclude"`
	}
	if err := yaml.Unmarshal(cfgData, &jekyllCfg); err != nil {
		return nil, fmt.Errorf("site: %s is not valid YAML: %w", config.File, err)
	}
	publishedCfg, err := withoutDeploy(cfgData)
	if err != nil {
		return nil, err
	}
	var excluded []string
	for _, e := range append(jekyllCfg.Exclude, alwaysExcluded...) {
		excluded = append(excluded, strings.Trim(filepath.ToSlash(e), "/"))
	}
	isExcluded := func(rel string) bool {
		for _, pattern := range excluded {
			if ok, _ := path.Match(pattern, rel); ok {
				return true
			}
		}
		return false
	}

	var t receipt.Tree
	t.Add(config.File, publishedCfg)
	err = filepath.WalkDir(root, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, abs)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if isExcluded(rel) || strings.HasPrefix(d.Name(), ".") || rel == config.File {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		return t.AddFile(rel, abs)
	})
	if err != nil {
		return nil, fmt.Errorf("site: hashing sources: %w", err)
	}
	return &t, nil
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

// repositoryFiles must never appear in _site: they would publish the build
// and deploy machinery (and any secrets a careless author adds to it).
var repositoryFiles = []string{"go.mod", "go.sum", "mage.go", "magefiles", "README.md", "DESIGN.md",
	"Gemfile", "Gemfile.lock", ".travis.yml", ".github", ".ci", "_mirage", "_build", ".git", ".gitignore"}

// CheckNoLeaks fails when a repository file was published into siteDir.
func CheckNoLeaks(root, siteDir string) error {
	var leaked []string
	for _, name := range repositoryFiles {
		if _, err := os.Lstat(filepath.Join(siteDir, name)); err == nil {
			leaked = append(leaked, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("site: checking %s for %s: %w", siteDir, name, err)
		}
	}
	if len(leaked) > 0 {
		return fmt.Errorf("site: repository files were published into %s: %s; add them to exclude: in %s and build again",
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
