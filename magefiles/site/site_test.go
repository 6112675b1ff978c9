package site

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// A small blog with the repository's own files beside it, as in the real repo.
var fixture = map[string]string{
	"_config.yml": `title: Fixture
exclude: [go.mod, go.sum, mage.go, magefiles/, README.md, _mirage/, _build/, .ci/, .travis.yml, Gemfile]
deploy:
  domain: blog.example.com
`,
	"_layouts/default.html": `<!doctype html><html><head><meta name="build-id" content="{{ site.build_id }}"><title>{{ page.title }}</title></head><body>{{ content }}</body></html>
`,
	"index.md": `---
layout: default
title: Home
---
{% for post in site.posts %}<a href="{{ post.url }}">{{ post.title }}</a>
{% endfor %}
`,
	"_posts/2024-01-02-first.md":  "---\nlayout: default\ntitle: First post\n---\nHello.\n",
	"_posts/2024-02-03-second.md": "---\nlayout: default\ntitle: Second post\n---\nAgain.\n",
	"go.mod":                      "module example.com/blog\n",
	"mage.go":                     "//go:build ignore\npackage main\n",
	"magefiles/magefile.go":       "package main\n",
	"README.md":                   "# secret plans\n",
	"_mirage/config.ml":           "open Mirage\n",
	".ci/run":                     "go test ./...\n",
	".travis.yml":                 "language: go\n",
	"Gemfile":                     "source 'https://rubygems.org'\n",
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func options(root string, logs *bytes.Buffer) Options {
	l := logrus.New()
	l.SetOutput(logs)
	return Options{Root: root, Log: l.WithField("step", "site")}
}

func TestBuildPublishesPostsStampsTheBuildAndLeaksNothing(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	var logs bytes.Buffer
	r, err := Build(context.Background(), options(root, &logs))
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if len(r.BuildID) != buildIDLen || r.Skipped {
		t.Errorf("receipt = %+v", r)
	}
	index := readFile(t, filepath.Join(root, "_site", "index.html"))
	for _, link := range []string{`href="/2024/01/02/first.html"`, `href="/2024/02/03/second.html"`} {
		if !strings.Contains(index, link) {
			t.Errorf("index.html lacks %s:\n%s", link, index)
		}
	}
	if got := StampedBuildID(filepath.Join(root, "_site")); got != r.BuildID {
		t.Errorf("build-id.txt = %q, want %q", got, r.BuildID)
	}
	meta := `<meta name="build-id" content="` + r.BuildID + `">`
	if !strings.Contains(index, meta) {
		t.Errorf("index.html lacks %s", meta)
	}
	if !strings.Contains(logs.String(), "tool=jekyll") {
		t.Errorf("jekyll's output was not streamed through the logger:\n%s", logs.String())
	}
	assertOnlyBlogFiles(t, filepath.Join(root, "_site"))
}

func TestBuildIsSkippedUntilAPublishedSourceChanges(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	var logs bytes.Buffer
	first, err := Build(context.Background(), options(root, &logs))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(context.Background(), options(root, &logs))
	if err != nil || !second.Skipped || second.BuildID != first.BuildID {
		t.Fatalf("unchanged sources: %+v, %v", second, err)
	}

	// Files that are not published, and deploy settings, leave the id alone.
	writeTree(t, root, map[string]string{
		"README.md":             "# other plans\n",
		"magefiles/magefile.go": "package main // changed\n",
		"_config.yml":           strings.Replace(fixture["_config.yml"], "blog.example.com", "www.example.com", 1),
	})
	third, err := Build(context.Background(), options(root, &logs))
	if err != nil || !third.Skipped || third.BuildID != first.BuildID {
		t.Fatalf("unpublished change rebuilt the site: %+v, %v", third, err)
	}

	writeTree(t, root, map[string]string{"_posts/2024-01-02-first.md": "---\nlayout: default\ntitle: First post\n---\nEdited.\n"})
	fourth, err := Build(context.Background(), options(root, &logs))
	if err != nil || fourth.Skipped || fourth.BuildID == first.BuildID {
		t.Fatalf("edited post: %+v, %v", fourth, err)
	}
	if got := StampedBuildID(filepath.Join(root, "_site")); got != fourth.BuildID {
		t.Errorf("stamp = %q, want the new id %q", got, fourth.BuildID)
	}

	o := options(root, &logs)
	o.Force = true
	if forced, err := Build(context.Background(), o); err != nil || forced.Skipped {
		t.Errorf("Force did not rebuild: %+v, %v", forced, err)
	}
}

func TestMissingJekyllSaysHowToInstallIt(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, fixture)
	var logs bytes.Buffer
	o := options(root, &logs)
	o.Jekyll = "jekyll-not-installed build"
	_, err := Build(context.Background(), o)
	for _, want := range []string{"jekyll-not-installed not found on PATH", "apt-get install jekyll", "bundle exec jekyll"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestJekyllFailureIsReported(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{"index.md": "---\nlayout: default\n---\n{% for x in %}\n"})
	var logs bytes.Buffer
	_, err := Build(context.Background(), options(root, &logs))
	if err == nil || !strings.Contains(err.Error(), "index.md:4: Liquid syntax error") {
		t.Fatalf("error = %v", err)
	}
	if !strings.Contains(logs.String(), "level=error") || !strings.Contains(logs.String(), "Liquid") {
		t.Errorf("jekyll's error did not reach the log as an error:\n%s", logs.String())
	}
}

// Jekyll logs a front matter that is not YAML and publishes the page anyway,
// with exit status 0; the Site step fails, naming the file and the line.
func TestBrokenFrontMatterFailsWithFileAndLine(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	for name, cfg := range map[string]string{
		"strict by default":                     fixture["_config.yml"],
		"author turned strict front matter off": fixture["_config.yml"] + "strict_front_matter: false\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, fixture)
			writeTree(t, root, map[string]string{
				"_config.yml":                 cfg,
				"_posts/2024-03-04-broken.md": "---\nlayout: default\ntitle: \"Unclosed\n---\nBody.\n",
			})
			var logs bytes.Buffer
			_, err := Build(context.Background(), options(root, &logs))
			if err == nil || !strings.Contains(err.Error(), "_posts/2024-03-04-broken.md:3: front matter is not valid YAML") {
				t.Fatalf("error = %v\n%s", err, logs.String())
			}
		})
	}
}

func TestLiquidAndLayoutProblemsFailWithFileAndLine(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	cases := map[string]struct{ file, content, config, want string }{
		"unknown filter": {"about.md", "---\nlayout: default\ntitle: About\n---\nHi\n\n{{ page.title | no_such_filter }}\n", "",
			"about.md:7: Liquid error: undefined filter no_such_filter"},
		"missing layout": {"about.md", "---\nlayout: nolayout\n---\nHi\n", "",
			"about.md: Layout 'nolayout' requested does not exist."},
		"syntax warning when the author chose warn": {"about.md", "---\nlayout: default\n---\n{{ 'x' | | upcase }}\n", "liquid:\n  error_mode: warn\n",
			"about.md"},
		"undefined variable when the author chose strict_variables": {"about.md", "---\nlayout: default\n---\n\n{{ page.nope }}\n", "liquid:\n  strict_variables: true\n",
			"about.md:5: Liquid error: undefined variable nope"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, fixture)
			writeTree(t, root, map[string]string{c.file: c.content, "_config.yml": fixture["_config.yml"] + c.config})
			var logs bytes.Buffer
			_, err := Build(context.Background(), options(root, &logs))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "jekyll reported") {
				t.Fatalf("error = %v, want it to name %q\n%s", err, c.want, logs.String())
			}
		})
	}
}

// An adopting blog's _config.yml knows nothing of the tooling: the Site step
// keeps it out by itself, and the author's own exclude: still applies.
func TestToolingIsExcludedWithoutTouchingTheAuthorsExclude(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{
		"_config.yml":         "title: Adopted\nexclude: [drafts/, notes.txt]\n",
		"hostinit/main.go":    "package main\n",
		"drafts/idea.md":      "---\n---\nnot yet\n",
		"notes.txt":           "private notes\n",
		".github/workflows/x": "on: push\n",
		"go.sum":              "x v1 h1:\n",
		"assets/kept.txt":     "kept\n",
	})
	var logs bytes.Buffer
	if _, err := Build(context.Background(), options(root, &logs)); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	site := filepath.Join(root, "_site")
	for _, gone := range []string{"hostinit", "magefiles", "go.mod", "go.sum", "mage.go", "_mirage", "Gemfile", "Gemfile.lock", "drafts", "notes.txt"} {
		if _, err := os.Stat(filepath.Join(site, gone)); err == nil {
			t.Errorf("%s was published", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(site, "assets", "kept.txt")); err != nil {
		t.Errorf("the blog's own file was not published: %v", err)
	}
	assertOnlyBlogFiles(t, site)
	if strings.Contains(readFile(t, filepath.Join(root, "_config.yml")), "magefiles") {
		t.Error("the author's _config.yml was rewritten")
	}
}

// TestRepositorySite builds the real blog of this repository with jekyll.
func TestRepositorySite(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Build a copy, so the test never touches the author's _site or _build.
	root := testtool.CopyRepo(t, repo)
	var logs bytes.Buffer
	r, err := Build(context.Background(), options(root, &logs))
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	siteDir := filepath.Join(root, "_site")
	index := readFile(t, filepath.Join(siteDir, "index.html"))

	posts, _ := filepath.Glob(filepath.Join(root, "_posts", "*.md"))
	if len(posts) < 3 {
		t.Errorf("the blog has %d posts, want at least 3", len(posts))
	}
	postName := regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})-(.+)\.md$`)
	for _, p := range posts {
		m := postName.FindStringSubmatch(filepath.Base(p))
		if m == nil {
			t.Errorf("%s is not named YYYY-MM-DD-title.md", p)
			continue
		}
		// Each post is linked from the index; the permalink is /year/month/day/title/.
		url := "/" + m[1] + "/" + m[2] + "/" + m[3] + "/" + m[4] + "/"
		if !strings.Contains(index, `href="`+url+`"`) {
			t.Errorf("index.html does not link %s", url)
		}
		if _, err := os.Stat(filepath.Join(siteDir, filepath.FromSlash(url), "index.html")); err != nil {
			t.Errorf("post %s not published: %v", url, err)
		}
	}
	for _, page := range []string{"feed.xml", "404.html", "about/index.html"} {
		if _, err := os.Stat(filepath.Join(siteDir, page)); err != nil {
			t.Errorf("%s missing from the site: %v", page, err)
		}
	}
	// Every page carries this build's id for the health check.
	filepath.WalkDir(siteDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".html") {
			if !strings.Contains(readFile(t, p), `<meta name="build-id" content="`+r.BuildID+`">`) {
				t.Errorf("%s lacks the build-id meta tag", p)
			}
		}
		return nil
	})
	assertOnlyBlogFiles(t, siteDir)
}

// assertOnlyBlogFiles fails if anything of the repository reached the site.
func assertOnlyBlogFiles(t *testing.T, siteDir string) {
	t.Helper()
	if err := CheckNoLeaks("", siteDir); err != nil {
		t.Error(err)
	}
	filepath.WalkDir(siteDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".go", ".ml", ".mod", ".sum", ".yml":
			t.Errorf("repository file published: %s", p)
		}
		return nil
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGitCommitFallsBackToCIEnvironment(t *testing.T) {
	dir := t.TempDir() // not a repository
	for _, v := range []string{"GIT_COMMIT", "TRAVIS_COMMIT", "GITHUB_SHA"} {
		t.Setenv(v, "")
	}
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(dir))
	if got := Commit(context.Background(), dir); got != "unknown" {
		t.Fatalf("no commit anywhere: %q", got)
	}
	t.Setenv("GITHUB_SHA", "feedface")
	if got := Commit(context.Background(), dir); got != "feedface" {
		t.Fatalf("GITHUB_SHA: %q", got)
	}
}

// lockPinning is a Gemfile.lock as Bundler writes one, pinning jekyll at version.
func lockPinning(version string) string {
	return "GEM\n  remote: https://rubygems.org/\n  specs:\n    github-pages (231)\n      jekyll (= " + version + ")\n    jekyll (" + version + ")\n\n" +
		"PLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  github-pages\n\nBUNDLED WITH\n   2.3.15\n"
}

// bundleOnPath puts a stand-in bundle first on PATH: `bundle exec CMD...`
// appends CMD's argv to the file it returns and runs the system's CMD (no
// rubygems.org here to install locked gems; magefiles/e2e/testdata/bundle
// is the stricter stand-in the end-to-end tests use).
func bundleOnPath(t *testing.T) (calls string) {
	t.Helper()
	bin := t.TempDir()
	calls = filepath.Join(t.TempDir(), "bundle.log")
	script := "#!/bin/sh\n[ \"$1\" = exec ] || exit 2\nshift\necho \"$*\" >> '" + calls + "'\nJEKYLL_NO_BUNDLER_REQUIRE=true exec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "bundle"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("BUNDLE_GEMFILE", "")
	return calls
}

// The build id covers what builds the site, not only its sources: after
// `bundle update` (a new Gemfile.lock) or a switch between Bundler and the
// system's jekyll the site is built again; with the same inputs it is not.
func TestBuildIDCoversTheJekyllAndTheLockedGems(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	root := t.TempDir()
	writeTree(t, root, fixture)
	writeTree(t, root, map[string]string{"Gemfile.lock": lockPinning("3.9.5")})
	bundleOnPath(t)
	var logs bytes.Buffer
	build := func(jekyll string) *Receipt {
		t.Helper()
		o := options(root, &logs)
		o.Jekyll = jekyll
		r, err := Build(context.Background(), o)
		if err != nil {
			t.Fatalf("%v\n%s", err, logs.String())
		}
		return r
	}
	first := build("")
	if first.Skipped || first.Jekyll != "bundle exec jekyll" || first.Inputs["gemfile_lock"] == "" {
		t.Fatalf("first build: %+v", first)
	}
	if again := build(""); !again.Skipped || again.BuildID != first.BuildID {
		t.Errorf("the same sources, jekyll and lock built again: %+v", again)
	}

	writeTree(t, root, map[string]string{"Gemfile.lock": lockPinning("3.9.6")})
	updated := build("")
	if updated.Skipped || updated.BuildID == first.BuildID || updated.Inputs["sources"] != first.Inputs["sources"] {
		t.Errorf("after bundle update: %+v, first %+v", updated, first)
	}

	system := build("jekyll")
	if system.Skipped || system.BuildID == updated.BuildID || system.Inputs["gemfile_lock"] != "" {
		t.Errorf("the system's jekyll in place of Bundler: %+v", system)
	}
	// Without Bundler the lock is not read, so it does not count.
	writeTree(t, root, map[string]string{"Gemfile.lock": lockPinning("3.9.7")})
	if again := build("jekyll"); !again.Skipped || again.BuildID != system.BuildID {
		t.Errorf("a lock the system's jekyll does not read rebuilt the site: %+v", again)
	}
}
