package site

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// Lines as Debian's jekyll 4.3.1 prints them (colours included).
func TestJekyllOutputBecomesProblemsWithFilesAndLines(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"index.md": "---\ntitle: x\n---\n\nHello\n{{ x | y }}\n"})
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	r := &outputReader{log: l.WithField("step", "site"), source: src, shown: "/blog"}
	out := "Configuration file: " + src + "/_config.yml\n" +
		"      Generating... \n" +
		"\x1b[31m             Error: YAML Exception reading " + src + "/_posts/2024-01-02-bad.md: (<unknown>): found unexpected end of stream while scanning a quoted scalar at line 2 column 8\x1b[0m\n" +
		"\x1b[31m  Liquid Exception: Liquid error (line 2): undefined filter y in index.md\x1b[0m\n" +
		"\x1b[33m     Build Warning: Layout 'nolayout' requested in about.md does not exist.\x1b[0m\n" +
		"\x1b[33m          Conflict: The following destination is shared by multiple files.\x1b[0m\n" +
		"                    The written file may end up with unexpected contents.\n" +
		"                    done in 0.054 seconds.\n" +
		"       Deprecation: an old option\n" +
		"\tfrom /usr/bin/jekyll:25:in `<main>'"
	r.Write([]byte(out))
	r.Close()
	var got []string
	for _, p := range r.Problems() {
		got = append(got, p.String())
	}
	want := []string{
		"_posts/2024-01-02-bad.md:2: front matter is not valid YAML: found unexpected end of stream while scanning a quoted scalar (column 8)",
		// Liquid's line 2 is the file's line 6: three front matter lines and the blank one Jekyll takes with them.
		"index.md:6: Liquid error: undefined filter y",
		"about.md: Layout 'nolayout' requested does not exist.",
		"Conflict: The following destination is shared by multiple files. The written file may end up with unexpected contents.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(logs.String(), `level=warning msg="Deprecation: an old option"`) || strings.Contains(logs.String(), "\x1b[") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestSourceFilterFollowsJekyll(t *testing.T) {
	f := (&jekyllConfig{Exclude: []string{"*.test", "drafts/", "README"}, Include: []string{".well-known"}}).filter()
	for p, want := range map[string]bool{
		"index.md":                  true,
		"_posts/2024-01-01-x.md":    true,
		"sub/a.test":                false, // * crosses slashes, as File.fnmatch without FNM_PATHNAME
		"drafts/x.md":               false,
		"README.md":                 false, // a prefix of the path excludes, as in Jekyll
		".env":                      false,
		".well-known/security.txt":  true,
		"magefiles/magefile.go":     false,
		"hostinit/static/static.go": false,
		"notes.md~":                 false,
		"Gemfile.lock":              false,
		"assets/css/style.css":      true,
	} {
		if got := f.isSource(p); got != want {
			t.Errorf("isSource(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestOverlayKeepsTheAuthorsExcludeAndChoices(t *testing.T) {
	off := false
	c := &jekyllConfig{Exclude: []string{"drafts/"}, StrictFrontMatter: &off, Liquid: map[string]any{"error_mode": "warn"}}
	b, err := c.overlay("abc")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"- drafts/", "- magefiles", "- hostinit", "- .travis.yml", "build_id: abc", "strict_filters: true"} {
		if !strings.Contains(s, want) {
			t.Errorf("overlay lacks %q:\n%s", want, s)
		}
	}
	for _, unwanted := range []string{"strict_front_matter", "error_mode", "strict_variables"} {
		if strings.Contains(s, unwanted) {
			t.Errorf("overlay overrides the author's %s:\n%s", unwanted, s)
		}
	}
}

// With a Gemfile.lock and bundle installed the blog's own gems build it;
// otherwise the system's jekyll does; JEKYLL overrides both. Each says why.
func TestJekyllCommandFollowsBundler(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"jekyll", "bundle"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	writeTree(t, root, map[string]string{"Gemfile": "gem 'github-pages'\n"})
	check := func(path, jekyll, want, why string) {
		t.Helper()
		t.Setenv("PATH", path)
		argv, reason, err := Options{Root: root, Jekyll: jekyll}.command()
		if err != nil || strings.Join(argv, " ") != want || !strings.Contains(reason, why) {
			t.Errorf("PATH=%s JEKYLL=%q: %v %q %v, want %q because %q", path, jekyll, argv, reason, err, want, why)
		}
	}
	check(bin, "", "jekyll", "no Gemfile.lock")
	writeTree(t, root, map[string]string{"Gemfile.lock": "GEM\n"})
	check(bin, "", "bundle exec jekyll", "Gemfile.lock and bundle is installed")
	check(bin, "jekyll", "jekyll", "JEKYLL")
	if err := os.Remove(filepath.Join(bin, "bundle")); err != nil {
		t.Fatal(err)
	}
	check(bin, "", "jekyll", "bundle is not installed")
}

// Jekyll's default excludes (gems Bundler installs in the blog, npm's
// packages) are not sources: a preview neither hashes them into the build id
// nor screens them, so a gem's test key raises no warning and the id is the
// one a deploy of the same commit gets. An include: still brings a path back.
func TestJekyllsDefaultExcludesAreNotSources(t *testing.T) {
	blog := map[string]string{
		"_config.yml": "title: Gems\nexclude: [README.md]\n",
		"index.md":    "---\n---\nHello\n",
	}
	root := t.TempDir()
	writeTree(t, root, blog)
	bare, err := HashSources(root)
	if err != nil {
		t.Fatal(err)
	}
	testKey := "-----BEGIN RSA PRIVATE KEY-----\n" + strings.Repeat("MIIEowIBAAKCAQEA", 8) + "\n-----END RSA PRIVATE KEY-----\n"
	writeTree(t, root, map[string]string{
		"vendor/bundle/ruby/3.1.0/gems/net-ssh-7.2.0/test/fixtures/id_rsa": testKey,
		"vendor/cache/minima-2.5.1.gem":                                    "gem\n",
		"vendor/gems/local/lib/x.rb":                                       "x\n",
		"vendor/ruby/3.1.0/gems/y/y.rb":                                    "y\n",
		"gemfiles/jekyll_4.gemfile":                                        "gem 'jekyll'\n",
		"node_modules/left-pad/index.js":                                   "module.exports = 1\n",
		"Gemfile":                                                          "gem 'github-pages'\n",
		"Gemfile.lock":                                                     "GEM\n",
	})
	withGems, err := HashSources(root)
	if err != nil {
		t.Fatal(err)
	}
	if withGems.Sum() != bare.Sum() || withGems.Len() != bare.Len() {
		t.Errorf("the gems changed the sources' hash: %d files, want %d", withGems.Len(), bare.Len())
	}
	cfg, _, err := readJekyllConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	findings, err := screenTree(root, cfg.filter(), DefaultMaxFileSize)
	if err != nil || len(findings) != 0 {
		t.Errorf("screening found %v, %v; want nothing in the gems", findings, err)
	}

	f := (&jekyllConfig{Include: []string{"node_modules"}}).filter()
	for p, want := range map[string]bool{
		"vendor/bundle/ruby/x.rb":                  false,
		"vendor/app.js":                            true, // only Bundler's vendor/ directories are excluded
		"node_modules/bootstrap/dist/bootstrap.js": true,
		"gemfiles/a.gemfile":                       false,
	} {
		if got := f.isSource(p); got != want {
			t.Errorf("isSource(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestBuildHashIsItsInputs(t *testing.T) {
	bundler, plain := []string{"bundle", "exec", "jekyll"}, []string{"jekyll"}
	lock := []byte(lockPinning("3.9.5"))
	base, _ := buildHash("s", bundler, lock)
	if again, _ := buildHash("s", bundler, []byte(lockPinning("3.9.5"))); again != base {
		t.Error("the same inputs hash differently")
	}
	for name, other := range map[string]string{
		"sources": func() string { h, _ := buildHash("t", bundler, lock); return h }(),
		"lock":    func() string { h, _ := buildHash("s", bundler, []byte(lockPinning("3.9.6"))); return h }(),
		"no lock": func() string { h, _ := buildHash("s", bundler, nil); return h }(),
		"jekyll":  func() string { h, _ := buildHash("s", plain, lock); return h }(),
	} {
		if other == base {
			t.Errorf("a different %s gives the same hash", name)
		}
	}
	withLock, _ := buildHash("s", plain, lock)
	withoutLock, _ := buildHash("s", plain, nil)
	if withLock != withoutLock {
		t.Error("the system's jekyll's build hashes a lock it does not read")
	}
}

// A blog with a Gemfile.lock built by the system's jekyll because bundle is
// not installed gets a warning naming the jekyll the lock pins and the one
// that runs; not when JEKYLL chose the system's, nor without a lock.
func TestFallingBackFromBundlerWarnsWithBothVersions(t *testing.T) {
	bin := t.TempDir()
	// A jekyll that knows its version and fails to build: the warning comes
	// before jekyll runs. No bundle, nor git, on PATH.
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'jekyll 4.3.1'; exit 0; fi\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "jekyll"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	root := t.TempDir()
	writeTree(t, root, fixture)
	build := func(jekyll string) []*logrus.Entry {
		t.Helper()
		l, hook := logtest.NewNullLogger()
		o := Options{Root: root, Jekyll: jekyll, Log: l.WithField("step", "site"), Force: true}
		if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "jekyll build failed") {
			t.Fatalf("Build with a jekyll that fails: %v", err)
		}
		var warnings []*logrus.Entry
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "Gemfile.lock") {
				warnings = append(warnings, e)
			}
		}
		return warnings
	}
	if w := build(""); len(w) != 0 {
		t.Errorf("a blog without a Gemfile.lock was warned: %q", w[0].Message)
	}
	writeTree(t, root, map[string]string{"Gemfile.lock": lockPinning("3.9.5")})
	w := build("")
	if len(w) != 1 {
		t.Fatalf("%d warnings about the lock, want 1", len(w))
	}
	for _, want := range []string{"pins jekyll 3.9.5", "the system's jekyll 4.3.1", "bundle is not installed", "apt-get install ruby-bundler"} {
		if !strings.Contains(w[0].Message, want) {
			t.Errorf("the warning does not say %q: %s", want, w[0].Message)
		}
	}
	if w[0].Data["locked"] != "jekyll 3.9.5" || w[0].Data["system_jekyll"] != "4.3.1" {
		t.Errorf("the warning's fields: %v", w[0].Data)
	}
	if w := build("jekyll"); len(w) != 0 {
		t.Errorf("JEKYLL=jekyll chose the system's jekyll and was warned: %q", w[0].Message)
	}
}
