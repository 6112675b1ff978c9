package e2e

import (
	"context"
	"io/fs"
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
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
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
	for name, content := range pagesBlog {
		write(t, filepath.Join(blog, name), content)
	}
	gitCommitAll(t, blog, "my GitHub Pages blog")

	copyCmd := exec.Command("bash", "-euo", "pipefail", "-c", blocks[0])
	copyCmd.Dir = parent
	if out, err := copyCmd.CombinedOutput(); err != nil {
		t.Fatalf("README's copy command: %v\n%s\n%s", err, blocks[0], out)
	}
	for _, name := range []string{"Gemfile", ".travis.yml", "_config.yml", "README.md"} {
		if got := read(t, filepath.Join(blog, name)); got != pagesBlog[name] {
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

	out, err := mage(t, blog, []string{"JEKYLL="}, "site")
	if err != nil {
		t.Fatalf("mage site in the adopted blog: %v\n%s", err, out)
	}
	if !strings.Contains(out, "using jekyll: the system's jekyll: the blog has no Gemfile.lock") {
		t.Errorf("the Site step did not say which jekyll it used:\n%s", out)
	}
	assertOnlyTheBlog(t, filepath.Join(blog, "_site"))

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
	out, err = mage(t, blog, env, "deploy")
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
