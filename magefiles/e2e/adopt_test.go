package e2e

import (
	"context"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// pagesBlog is a blog as GitHub Pages sets one up: the github-pages Gemfile
// (no Gemfile.lock), minima with jekyll-feed and jekyll-seo-tag, its own
// Travis configuration, an exclude: of its own that knows nothing of the
// tooling, and a README it keeps out of the site.
var pagesBlog = map[string]string{
	"Gemfile": "source \"https://rubygems.org\"\ngem \"github-pages\", group: :jekyll_plugins\n",
	"_config.yml": `title: Field notes
description: Things I wrote down.
url: "https://notes.example.org"
theme: minima
plugins:
  - jekyll-feed
  - jekyll-seo-tag
exclude:
  - README.md
  - drafts/
`,
	".travis.yml":                  "language: ruby\nrvm: 3.1\nscript: bundle exec jekyll build\n",
	".gitignore":                   "_site\n.sass-cache\n.jekyll-cache\n.jekyll-metadata\nvendor\n",
	"README.md":                    "# Field notes\n\nMy blog, on GitHub Pages.\n",
	"index.md":                     "---\nlayout: home\n---\n",
	"about.md":                     "---\nlayout: page\ntitle: About\npermalink: /about/\n---\nAbout me.\n",
	"_posts/2024-05-01-hello.md":   "---\nlayout: post\ntitle: Hello\n---\nHello, world.\n",
	"_posts/2024-06-02-second.md":  "---\nlayout: post\ntitle: Second\n---\nAgain.\n",
	"drafts/not-yet.md":            "---\ntitle: Not yet\n---\nDraft.\n",
	"assets/images/photo.svg":      "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
	"_includes/footer-extra.html":  "<p>extra</p>\n",
	"_data/navigation.yml":         "- title: About\n  url: /about/\n",
	"2024-notes-for-myself.txt.md": "---\n---\nstill published: the author did not exclude it\n",
}

// readmeBlocks returns the fenced code blocks of the README section named
// title, in order.
func readmeBlocks(t *testing.T, title string) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 3 {
		t.Fatalf("README.md's %q has %d code blocks, want the copy, the deploy: block and the first deploy", title, len(blocks))
	}
	return blocks
}

// TestAdoptAGitHubPagesBlog follows README's "Add it to your blog" on a
// GitHub Pages-style blog: the copy command as written, the deploy: block as
// written, a commit, `mage site` (only the blog in _site), then `mage
// deploy` against the AWS test harness, with a host image.
func TestAdoptAGitHubPagesBlog(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	blog := adopt(t, pagesBlog)

	out, err := mage(t, blog, []string{"JEKYLL="}, "site")
	if err != nil {
		t.Fatalf("mage site in the adopted blog: %v\n%s", err, out)
	}
	if !strings.Contains(out, "using jekyll: the system's jekyll: the blog has no Gemfile.lock") {
		t.Errorf("the Site step did not say which jekyll it used:\n%s", out)
	}
	assertOnlyTheBlog(t, filepath.Join(blog, "_site"))

	deployAdopted(t, blog, kernel)
}

// bundlerBlog is pagesBlog as `bundle install` leaves it on the author's
// machine: a Gemfile.lock (github-pages' own, abridged), Bundler's settings
// in .bundle/config, and the gems under vendor/bundle, which the blog's
// .gitignore keeps out of git.
var bundlerBlog = func() map[string]string {
	files := maps.Clone(pagesBlog)
	files["Gemfile.lock"] = `GEM
  remote: https://rubygems.org/
  specs:
    github-pages (231)
      jekyll (= 3.9.5)
      jekyll-feed (= 0.17.0)
      jekyll-seo-tag (= 2.8.0)
      minima (= 2.5.1)
    jekyll (3.9.5)
    jekyll-feed (0.17.0)
    jekyll-seo-tag (2.8.0)
    minima (2.5.1)

PLATFORMS
  x86_64-linux

DEPENDENCIES
  github-pages

BUNDLED WITH
   2.3.15
`
	files[".bundle/config"] = "---\nBUNDLE_PATH: \"vendor/bundle\"\n"
	files["vendor/bundle/ruby/3.1.0/gems/minima-2.5.1/_layouts/home.html"] = "---\nlayout: default\n---\n<div class=\"home\">{{ content }}</div>\n"
	files["vendor/bundle/ruby/3.1.0/gems/minima-2.5.1/README.md"] = "# minima\n"
	files["vendor/bundle/ruby/3.1.0/specifications/minima-2.5.1.gemspec"] = "Gem::Specification.new do |s|\n  s.name = \"minima\"\nend\n"
	return files
}()

// TestAdoptABundlerBlog is TestAdoptAGitHubPagesBlog's preview for a blog
// that pins its gems with Bundler. With bundle on PATH (the stand-in,
// testdata/bundle: no rubygems.org here to install the locked gems, so it
// runs the system's jekyll as `bundle exec` would run the locked one), `mage
// site` builds with `bundle exec jekyll` from the blog's root and says why,
// and only the blog reaches _site; with the locked gems not installed it
// fails with Bundler's message and the fix; without bundle it falls back to
// the system's jekyll and says so. Then `mage deploy`, with Bundler, against
// the AWS test harness.
func TestAdoptABundlerBlog(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	blog := adopt(t, bundlerBlog)
	siteDir := filepath.Join(blog, "_site")
	bin := t.TempDir()
	write(t, filepath.Join(bin, "bundle"), read(t, "testdata/bundle"))
	if err := os.Chmod(filepath.Join(bin, "bundle"), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "bundle.log")
	// Go takes a vendor/ beside go.mod for its own vendored modules and
	// refuses one without vendor/modules.txt, Bundler's gems included: for a
	// preview, README's "Add it to your blog" says to set GOFLAGS=-mod=mod.
	goflags := "GOFLAGS=-mod=mod"
	withBundle := []string{goflags, "JEKYLL=", "STANDIN_BUNDLE_LOG=" + calls, "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}

	out, err := mage(t, blog, withBundle, "site")
	if err != nil {
		t.Fatalf("mage site with bundle: %v\n%s", err, out)
	}
	if !strings.Contains(out, "using bundle exec jekyll: the blog has a Gemfile.lock and bundle is installed (run `bundle install` if gems are missing") {
		t.Errorf("the Site step did not say it used Bundler, and why:\n%s", out)
	}
	overlay := filepath.Join(blog, "_build", "site-overlay.yml")
	want := "argv: jekyll build --source " + blog + " --destination " + siteDir + " --config " + filepath.Join(blog, "_config.yml") + "," + overlay + "\n" +
		"cwd: " + blog + "\n" +
		"gemfile: " + filepath.Join(blog, "Gemfile") + "\n" +
		// Bundler's resolution as the author asked: the Site step sets no
		// JEKYLL_NO_BUNDLER_REQUIRE for `bundle exec`, nor anything of Bundler's.
		"--\n"
	if got := read(t, calls); got != want {
		t.Errorf("bundle was called as\n%s\nwant\n%s", got, want)
	}
	assertOnlyTheBlog(t, siteDir)
	for _, name := range []string{"Gemfile", "Gemfile.lock", "vendor", ".bundle"} {
		if _, err := os.Lstat(filepath.Join(siteDir, name)); err == nil {
			t.Errorf("_site holds the blog's %s", name)
		}
	}
	var sr struct {
		Jekyll string `json:"jekyll"`
	}
	readJSON(t, filepath.Join(blog, "_build", "site.json"), &sr)
	if sr.Jekyll != "bundle exec jekyll" {
		t.Errorf("the site receipt names %q as the jekyll", sr.Jekyll)
	}

	// The locked gems not installed (no `bundle install`): Bundler's message
	// and the fix, and no site. FORCE: the sources are unchanged.
	out, err = mage(t, blog, append(withBundle, "STANDIN_BUNDLE_MISSING=github-pages", "FORCE=1"), "site")
	if err == nil {
		t.Fatalf("mage site with the locked gems missing succeeded:\n%s", out)
	}
	for _, want := range []string{"Could not find gem 'github-pages' in locally installed gems.", "jekyll build failed", "run `bundle install` if gems are missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("mage site with the locked gems missing does not say %q:\n%s", want, lastLines(out, 20))
		}
	}

	// No bundle on PATH: the system's jekyll, saying why, and warning with the
	// jekyll the lock pins. No FORCE: the build id covers the jekyll command,
	// so the switch from Bundler builds again by itself.
	before := read(t, calls)
	noBundle := pathWithout(t, "bundle")
	out, err = mage(t, blog, []string{goflags, "JEKYLL=", "STANDIN_BUNDLE_LOG=" + calls, "PATH=" + noBundle}, "site")
	if err != nil {
		t.Fatalf("mage site without bundle: %v\n%s", err, out)
	}
	if !strings.Contains(out, "using jekyll: the system's jekyll: the blog has a Gemfile.lock but bundle is not installed (`sudo apt-get install ruby-bundler` to use it)") {
		t.Errorf("the Site step did not say it fell back to the system's jekyll, and why:\n%s", out)
	}
	if !strings.Contains(out, "the blog's Gemfile.lock pins jekyll 3.9.5, but bundle is not installed, so the system's jekyll ") || strings.Contains(out, "site unchanged since the last build") {
		t.Errorf("the Site step did not rebuild with the system's jekyll and warn about the lock's version:\n%s", out)
	}
	if read(t, calls) != before {
		t.Errorf("bundle ran though it is not on PATH:\n%s", read(t, calls))
	}
	readJSON(t, filepath.Join(blog, "_build", "site.json"), &sr)
	if sr.Jekyll != "jekyll" {
		t.Errorf("the site receipt names %q as the jekyll", sr.Jekyll)
	}
	assertOnlyTheBlog(t, siteDir)

	// A deploy builds the commit's files, staged under _build, with Bundler
	// run from the blog's root: the Gemfile it uses is the working tree's,
	// which the Site step checks is the commit's (deployAdopted commits it).
	// The gems leave vendor/ first, as README says: the Image step builds the
	// host's init with GOFLAGS cleared, and Go stops on Bundler's vendor/
	// ("inconsistent vendoring").
	if err := os.RemoveAll(filepath.Join(blog, "vendor")); err != nil {
		t.Fatal(err)
	}
	before = read(t, calls)
	deployAdopted(t, blog, kernel, withBundle...)
	stage := filepath.Join(blog, "_build", "site-src")
	want = "argv: jekyll build --source " + stage + " --destination " + siteDir + " --config " + filepath.Join(stage, "_config.yml") + "," + overlay + "\n" +
		"cwd: " + blog + "\n" +
		"gemfile: " + filepath.Join(blog, "Gemfile") + "\n" +
		"--\n"
	if got := strings.TrimPrefix(read(t, calls), before); got != want {
		t.Errorf("the deploy called bundle as\n%s\nwant\n%s", got, want)
	}
	assertOnlyTheBlog(t, siteDir)
}

// pathWithout is PATH with the program name taken out: each directory that
// holds it is replaced by one of symbolic links to its other entries.
func pathWithout(t *testing.T, name string) string {
	t.Helper()
	var dirs []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			dirs = append(dirs, dir)
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		shadow := t.TempDir()
		for _, e := range entries {
			if e.Name() == name {
				continue
			}
			if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(shadow, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, shadow)
	}
	path := strings.Join(dirs, string(os.PathListSeparator))
	check := exec.Command("sh", "-c", "command -v "+name)
	check.Env = append(os.Environ(), "PATH="+path)
	if out, err := check.Output(); err == nil {
		t.Fatalf("%s is still on PATH, at %s", name, out)
	}
	return path
}

// deployAdopted commits the adopted blog as README's third step does and
// runs `mage deploy` in it against the AWS test harness, with a host image
// and extraEnv; it fails unless the deploy built the commit and put it behind
// the record.
func deployAdopted(t *testing.T, blog, kernel string, extraEnv ...string) {
	t.Helper()
	gitCommitAll(t, blog, "Ship the blog with unikernel-blog")

	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1, InvisibleDescribes: -1})
	builds := h.StartBuildServer(t)
	base := awsharness.UniqueName("adopt") + ".example"
	domain := "notes." + base
	r53 := h.Route53(t)
	zone, err := r53.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"DEPLOY_DOMAIN=" + domain, "DEPLOY_HOST_KERNEL=" + kernel,
		"DEPLOY_HEALTH_URL=" + builds.HealthURL(), "DEPLOY_TTL=1", "UNIKERNEL=", "JEKYLL=",
		// Plain HTTP: this test is about adopting the tooling; a deploy with
		// https (the default) is TestMageDeployAgainstTheEmulator's.
		"DEPLOY_HTTPS=false",
	}
	out, err := mage(t, blog, append(env, extraEnv...), "deploy")
	if err != nil {
		t.Fatalf("mage deploy in the adopted blog: %v\n%s", err, out)
	}
	if !strings.Contains(out, "publishing the files of the commit") {
		t.Errorf("the deploy did not build from the commit:\n%s", lastLines(out, 30))
	}
	if recordTarget(t, r53, aws.ToString(zone.HostedZone.Id), domain) == "" {
		t.Errorf("the record was not set:\n%s", lastLines(out, 20))
	}
	if n := h.Calls.Count("ec2", "RunInstances"); n != 1 {
		t.Errorf("RunInstances called %d times", n)
	}
	// The image holds the blog as built: the site receipt names the commit.
	var sr struct {
		Commit    string `json:"commit"`
		Published bool   `json:"published"`
	}
	readJSON(t, filepath.Join(blog, "_build", "site.json"), &sr)
	head, _ := exec.Command("git", "-C", blog, "rev-parse", "HEAD").Output()
	if !sr.Published || sr.Commit != strings.TrimSpace(string(head)) {
		t.Errorf("site receipt %+v, HEAD %s", sr, head)
	}
}

// adopt makes a blog of files, commits it, and follows README's "Add it to
// your blog" up to its preview: the copy command as written (from the tool's
// clone beside the blog), checked to change nothing of the blog, and the
// deploy: block as written appended to _config.yml. It returns the blog's
// root. It skips unless jekyll and the theme and plugins a GitHub Pages blog
// names are installed.
func adopt(t *testing.T, files map[string]string) string {
	t.Helper()
	testtool.Need(t, "jekyll", "jekyll")
	// The theme and plugins a GitHub Pages blog names, as Debian packages them.
	if out, err := exec.Command("ruby", "-e", `gem "minima"; gem "jekyll-feed"; gem "jekyll-seo-tag"`).CombinedOutput(); err != nil {
		testtool.Missing(t, "the blog's theme and plugins are not installed ("+strings.TrimSpace(string(out))+"); install them with `apt-get install jekyll-theme-minima ruby-jekyll-feed ruby-jekyll-seo-tag`")
	}
	blocks := readmeBlocks(t, "Add it to your blog")

	// The tool's clone beside the blog, as the README's command expects.
	tool := freshClone(t)
	parent := t.TempDir()
	if err := os.Symlink(tool, filepath.Join(parent, "unikernel-blog")); err != nil {
		t.Fatal(err)
	}
	blog := filepath.Join(parent, "my-blog")
	for name, content := range files {
		write(t, filepath.Join(blog, name), content)
	}
	gitCommitAll(t, blog, "my GitHub Pages blog")

	copyCmd := exec.Command("bash", "-euo", "pipefail", "-c", blocks[0])
	copyCmd.Dir = parent
	if out, err := copyCmd.CombinedOutput(); err != nil {
		t.Fatalf("README's copy command: %v\n%s\n%s", err, blocks[0], out)
	}
	for name, content := range files {
		// The command adds the build output to .gitignore, after the blog's own lines.
		if got := read(t, filepath.Join(blog, name)); got != content && !(name == ".gitignore" && strings.HasPrefix(got, content)) {
			t.Errorf("the copy changed the blog's %s:\n%s", name, got)
		}
	}
	for _, name := range []string{"mage.go", "go.mod", "magefiles/magefile.go", "hostinit/static/static.go"} {
		if _, err := os.Stat(filepath.Join(blog, name)); err != nil {
			t.Errorf("the copy did not bring %s: %v", name, err)
		}
	}
	cfg := read(t, filepath.Join(blog, "_config.yml")) + "\n" + blocks[1]
	write(t, filepath.Join(blog, "_config.yml"), cfg)
	return blog
}

// assertOnlyTheBlog fails unless siteDir holds the blog's pages, posts,
// feed and the theme's assets, and nothing else.
func assertOnlyTheBlog(t *testing.T, siteDir string) {
	t.Helper()
	want := []string{"index.html", "about/index.html", "2024/05/01/hello.html", "2024/06/02/second.html",
		"feed.xml", "assets/main.css", "assets/images/photo.svg", "build-id.txt", "2024-notes-for-myself.txt.html"}
	for _, p := range want {
		if _, err := os.Stat(filepath.Join(siteDir, p)); err != nil {
			t.Errorf("the blog's %s is not in _site: %v", p, err)
		}
	}
	allowed := regexp.MustCompile(`^(index\.html|404\.html|about/index\.html|20\d\d/\d\d/\d\d/[a-z-]+\.html|feed\.xml|build-id\.txt|2024-notes-for-myself\.txt\.html|assets/(main\.css|main\.css\.map|minima-social-icons\.svg|images/photo\.svg))$`)
	filepath.WalkDir(siteDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(siteDir, p)
		if !allowed.MatchString(filepath.ToSlash(rel)) {
			t.Errorf("_site holds %s, which is not the blog", rel)
		}
		return nil
	})
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
