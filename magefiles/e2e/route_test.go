package e2e

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// blogFiles are a blog with the tooling, as this repository holds them.
var blogFiles = []string{
	"_posts/2026-11-30-hello.md", "_layouts/default.html", "_includes/head.html", "_data/nav.yml",
	"assets/css/site.css", "_config.yml", "feed.xml", "404.html", "index.md", "about.md", "README.md",
	"magefiles/magefile.go", "magefiles/bake/bake.go", "hostinit/main.go", "_mirage/config.ml",
	"go.mod", "go.sum", "mage.go", ".ci/install", ".ci/run", ".github/workflows/deploy.yml", ".travis.yml",
	"Gemfile", "Gemfile.lock",
}

// routeRepo is a git repository holding the blog under sub ("" for its
// root), the CI files at its top, and the real .ci/route; it returns the
// blog's directory and the base commit.
func routeRepo(t *testing.T, sub string) (string, string) {
	t.Helper()
	testtool.Need(t, "git", "git")
	top := t.TempDir()
	blog := filepath.Join(top, sub)
	for _, f := range blogFiles {
		where := blog
		if sub != "" && (strings.HasPrefix(f, ".github/") || f == ".travis.yml") {
			where = top // CI files live at the repository's top
		}
		writeFile(t, filepath.Join(where, f), "v1 of "+f+"\n")
	}
	script, err := os.ReadFile("../../.ci/route")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blog, ".ci", "route"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	gitCommitAll(t, top, "base")
	return blog, gitHead(t, top)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gitHead(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// change is a push: files written (paths relative to the repository's
// top), removed, or renamed (from → to).
type change struct {
	write, remove []string
	rename        [][2]string
}

// push commits the change on top of base and returns the new commit.
func push(t *testing.T, blog, base string, c change) string {
	t.Helper()
	top := gitTop(t, blog)
	gitIn(t, top, "checkout", "-q", "--detach", base)
	for _, f := range c.write {
		writeFile(t, filepath.Join(top, f), "changed "+f+"\n")
	}
	for _, f := range c.remove {
		gitIn(t, top, "rm", "-q", f)
	}
	for _, r := range c.rename {
		gitIn(t, top, "mv", r[0], r[1])
	}
	gitCommitAll(t, top, "a push")
	return gitHead(t, top)
}

func gitTop(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// route runs .ci/route in the blog's directory as CI does, and checks that
// it told GitHub the same thing it printed.
func route(t *testing.T, blog, base, head string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.Command("bash", ".ci/route", base, head)
	cmd.Dir = blog
	cmd.Env = append(os.Environ(), "GITHUB_OUTPUT="+out)
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf(".ci/route %s %s: %v", base, head, err)
	}
	got := strings.TrimSpace(string(stdout))
	if b, _ := os.ReadFile(out); string(b) != "route="+got+"\n" {
		t.Errorf("GITHUB_OUTPUT holds %q; it printed %s", b, got)
	}
	return got
}

// TestRouteSendsContentAroundTheSuite runs .ci/route on example pushes:
// content alone is "content"; anything touching the tooling, or a push it
// cannot see the start of, is "code".
func TestRouteSendsContentAroundTheSuite(t *testing.T) {
	blog, base := routeRepo(t, "")
	for name, c := range map[string]struct {
		change
		want string
	}{
		"a new post":                    {change{write: []string{"_posts/2026-12-01-new.md"}}, "content"},
		"a layout and an include":       {change{write: []string{"_layouts/default.html", "_includes/head.html"}}, "content"},
		"assets, data and config":       {change{write: []string{"assets/css/site.css", "assets/img/new.png", "_data/nav.yml", "_config.yml"}}, "content"},
		"feed, 404, pages":              {change{write: []string{"feed.xml", "404.html", "index.md", "about.md", "projects/index.md"}}, "content"},
		"a removed post":                {change{remove: []string{"_posts/2026-11-30-hello.md"}}, "content"},
		"nothing (an empty push)":       {change{}, "content"},
		"a Go file":                     {change{write: []string{"magefiles/bake/bake.go"}}, "code"},
		"the host's init":               {change{write: []string{"hostinit/main.go"}}, "code"},
		"the unikernel":                 {change{write: []string{"_mirage/config.ml"}}, "code"},
		"go.mod and go.sum":             {change{write: []string{"go.mod", "go.sum"}}, "code"},
		"mage.go":                       {change{write: []string{"mage.go"}}, "code"},
		"a CI script":                   {change{write: []string{".ci/install"}}, "code"},
		"the GitHub workflow":           {change{write: []string{".github/workflows/deploy.yml"}}, "code"},
		"the Travis file":               {change{write: []string{".travis.yml"}}, "code"},
		"a post and a Go file":          {change{write: []string{"_posts/2026-12-01-new.md", "magefiles/magefile.go"}}, "code"},
		"a removed Go file":             {change{remove: []string{"magefiles/bake/bake.go"}}, "code"},
		"tooling renamed into the blog": {change{rename: [][2]string{{".ci/run", "assets/run.txt"}}}, "code"},
	} {
		head := push(t, blog, base, c.change)
		if got := route(t, blog, base, head); got != c.want {
			t.Errorf("%s: route %s, want %s", name, got, c.want)
		}
	}
	// The same list as the Site step's: whatever it keeps out of _site as
	// tooling, the route treats as code, as a file and as a directory.
	for _, tool := range site.Tooling {
		var forms []string // a change to the tooling as the blog has it: a file, or a file in a directory
		if slices.Contains(blogFiles, tool) {
			forms = []string{tool}
		} else if slices.ContainsFunc(blogFiles, func(f string) bool { return strings.HasPrefix(f, tool+"/") }) {
			forms = []string{tool + "/inner"}
		} else {
			forms = []string{tool, tool + "/inner"}
		}
		for _, p := range forms {
			head := push(t, blog, base, change{write: []string{p}})
			if got := route(t, blog, base, head); got != "code" {
				t.Errorf("a change to %s (site.Tooling) routes %s, want code", p, got)
			}
		}
	}
	// Pushes whose start is unknown run everything.
	head := push(t, blog, base, change{write: []string{"_posts/2026-12-01-new.md"}})
	for name, b := range map[string]string{"a new branch": strings.Repeat("0", 40), "no event": "", "a commit this clone lacks": strings.Repeat("ab", 20)} {
		if got := route(t, blog, b, head); got != "code" {
			t.Errorf("%s (base %q): route %s, want code", name, b, got)
		}
	}
}

// TestRouteBlogInASubdirectory: a blog in docs/ (GitHub Pages) with the
// tooling beside it and the CI files at the repository's top.
func TestRouteBlogInASubdirectory(t *testing.T) {
	blog, base := routeRepo(t, "docs")
	for name, c := range map[string]struct {
		change
		want string
	}{
		"a post":                  {change{write: []string{"docs/_posts/2026-12-01-new.md"}}, "content"},
		"a file beside the blog":  {change{write: []string{"NOTES.md"}}, "content"},
		"the blog's Go code":      {change{write: []string{"docs/magefiles/bake/bake.go"}}, "code"},
		"the workflow at the top": {change{write: []string{".github/workflows/deploy.yml"}}, "code"},
		"Travis at the top":       {change{write: []string{".travis.yml"}}, "code"},
	} {
		head := push(t, blog, base, c.change)
		if got := route(t, blog, base, head); got != c.want {
			t.Errorf("%s: route %s, want %s", name, got, c.want)
		}
	}
}

// --- the workflows, run on example pushes ---

type ghNeeds []string

func (n *ghNeeds) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		*n = []string{v.Value}
		return nil
	}
	var l []string
	err := v.Decode(&l)
	*n = l
	return err
}

type ghStep struct {
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

type ghJob struct {
	Needs   ghNeeds           `yaml:"needs"`
	If      string            `yaml:"if"`
	Outputs map[string]string `yaml:"outputs"`
	Steps   []ghStep          `yaml:"steps"`
}

type ghWorkflow struct {
	Jobs map[string]ghJob `yaml:"jobs"`
}

// ghRun is what one job did in a simulated run.
type ghRun struct {
	result string   // success, skipped, or failure (forced)
	runs   []string // its run: steps, and the uses: steps as "uses X", in order
}

// simulateGitHub runs deploy.yml's jobs on an event, in dependency order:
// each job's if: evaluated as GitHub does, the route step executed for real
// in the blog's repository, the other steps recorded. fail makes a job
// that runs fail.
func simulateGitHub(t *testing.T, wf ghWorkflow, blog string, github map[string]any, fail string) map[string]ghRun {
	t.Helper()
	done := map[string]ghRun{}
	needsCtx := map[string]any{}
	for len(done) < len(wf.Jobs) {
		progressed := false
		for _, name := range slices.Sorted(maps.Keys(wf.Jobs)) {
			job := wf.Jobs[name]
			if _, ok := done[name]; ok {
				continue
			}
			if slices.ContainsFunc(job.Needs, func(n string) bool { _, ok := done[n]; return !ok }) {
				continue // a job it needs has not finished
			}
			progressed = true
			st := ghStatus{needsSucceeded: true}
			needs := map[string]any{}
			for _, n := range job.Needs {
				needs[n] = needsCtx[n]
				r := done[n].result
				st.needsSucceeded = st.needsSucceeded && r == "success"
				st.needsFailed = st.needsFailed || r == "failure"
			}
			ctx := map[string]any{"github": github, "needs": needs}
			ok, err := ghJobIf(job.If, ctx, st)
			if err != nil {
				t.Fatalf("job %s: if: %v", name, err)
			}
			run := ghRun{result: "skipped"}
			outputs := map[string]any{}
			if ok {
				run.result = "success"
				if name == fail {
					run.result = "failure"
				}
				steps := map[string]any{}
				for _, s := range job.Steps {
					if s.If != "" {
						t.Fatalf("job %s: step if: %q is not simulated; add it to the test", name, s.If)
					}
					if s.Uses != "" {
						run.runs = append(run.runs, "uses "+s.Uses)
						continue
					}
					run.runs = append(run.runs, s.Run)
					if strings.Contains(s.Run, ".ci/route") {
						steps[s.ID] = map[string]any{"outputs": runStep(t, blog, s, map[string]any{"github": github})}
					}
				}
				for k, v := range job.Outputs {
					out, err := ghInterpolate(v, map[string]any{"steps": steps})
					if err != nil {
						t.Fatalf("job %s: output %s: %v", name, k, err)
					}
					outputs[k] = out
				}
			}
			done[name] = run
			needsCtx[name] = map[string]any{"result": run.result, "outputs": outputs}
		}
		if !progressed {
			t.Fatal("the workflow's needs: form a cycle or name a missing job")
		}
	}
	return done
}

// runStep runs a run: step with its env: in the blog's directory and
// returns what it wrote to GITHUB_OUTPUT.
func runStep(t *testing.T, blog string, s ghStep, ctx map[string]any) map[string]any {
	t.Helper()
	outFile := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.Command("bash", "-e", "-c", s.Run)
	cmd.Dir = blog
	cmd.Env = append(os.Environ(), "GITHUB_OUTPUT="+outFile)
	for k, v := range s.Env {
		val, err := ghInterpolate(v, ctx)
		if err != nil {
			t.Fatalf("step %s: env %s: %v", s.ID, k, err)
		}
		cmd.Env = append(cmd.Env, k+"="+val)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("step %s (%s): %v\n%s", s.ID, s.Run, err, out)
	}
	b, _ := os.ReadFile(outFile)
	outputs := map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			outputs[k] = v
		}
	}
	return outputs
}

func pushEvent(base, head string) map[string]any {
	return map[string]any{
		"event_name": "push", "ref": "refs/heads/main", "sha": head,
		"event": map[string]any{"before": base, "repository": map[string]any{"default_branch": "main"}},
	}
}

func readWorkflowFile(t *testing.T) ghWorkflow {
	t.Helper()
	b, err := os.ReadFile("../../.github/workflows/deploy.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf ghWorkflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("deploy.yml: %v", err)
	}
	return wf
}

// ran lists every run: line of the jobs that ran.
func ran(runs map[string]ghRun) string {
	var all []string
	for _, r := range runs {
		if r.result != "skipped" {
			all = append(all, r.runs...)
		}
	}
	return strings.Join(all, "\n")
}

// TestGitHubWorkflowRoutesContentAroundTheSuite runs deploy.yml on pushes
// to main: a content-only push runs no Go test (the test job is skipped)
// and deploys after `mage site`; a code push runs `mage test` and deploys
// only if it passes; a pull request never deploys.
func TestGitHubWorkflowRoutesContentAroundTheSuite(t *testing.T) {
	wf := readWorkflowFile(t)
	blog, base := routeRepo(t, "")
	post := push(t, blog, base, change{write: []string{"_posts/2026-12-01-new.md", "_config.yml"}})
	code := push(t, blog, base, change{write: []string{"_posts/2026-12-01-new.md", "magefiles/bake/bake.go"}})

	runs := simulateGitHub(t, wf, blog, pushEvent(base, post), "")
	if runs["test"].result != "skipped" || runs["deploy"].result != "success" {
		t.Errorf("content push: test %s, deploy %s; want skipped and success", runs["test"].result, runs["deploy"].result)
	}
	if all := ran(runs); strings.Contains(all, "mage.go test") || strings.Contains(all, "bash .ci/install\n") || strings.HasSuffix(all, "bash .ci/install") {
		t.Errorf("content push ran the suite or its install:\n%s", all)
	}
	checkDeploySteps(t, runs["deploy"].runs)

	runs = simulateGitHub(t, wf, blog, pushEvent(base, code), "")
	if runs["test"].result != "success" || runs["deploy"].result != "success" {
		t.Errorf("code push: test %s, deploy %s; want both run", runs["test"].result, runs["deploy"].result)
	}
	if !slices.ContainsFunc(runs["test"].runs, func(r string) bool { return strings.Contains(r, "go run mage.go test") }) {
		t.Errorf("code push: the test job does not run the suite: %q", runs["test"].runs)
	}
	checkDeploySteps(t, runs["deploy"].runs)

	// The deploy waits for the suite: a failing suite stops it.
	runs = simulateGitHub(t, wf, blog, pushEvent(base, code), "test")
	if runs["deploy"].result != "skipped" {
		t.Errorf("code push with a failing suite: deploy %s, want skipped", runs["deploy"].result)
	}
	// A pull request is tested as a push is, and never deploys.
	pr := map[string]any{"event_name": "pull_request", "ref": "refs/pull/7/merge", "sha": code,
		"event": map[string]any{"pull_request": map[string]any{"base": map[string]any{"sha": base}, "head": map[string]any{"sha": code}}, "repository": map[string]any{"default_branch": "main"}}}
	runs = simulateGitHub(t, wf, blog, pr, "")
	if runs["test"].result != "success" || runs["deploy"].result != "skipped" {
		t.Errorf("pull request: test %s, deploy %s; want success and skipped", runs["test"].result, runs["deploy"].result)
	}
}

// checkDeploySteps: a deploy job installs what a deploy needs and nothing
// for the tests, builds the site strictly before asking AWS for
// credentials, and deploys last.
func checkDeploySteps(t *testing.T, runs []string) {
	t.Helper()
	at := func(what string) int {
		return slices.IndexFunc(runs, func(r string) bool { return strings.Contains(r, what) })
	}
	site, creds, deploy := at("go run mage.go site"), at("uses aws-actions/configure-aws-credentials@"), at("go run mage.go deploy")
	if site < 0 || creds < 0 || deploy < 0 || !(site < creds && creds < deploy) {
		t.Errorf("deploy job: want mage site, then the credentials, then mage deploy; steps:\n%s", strings.Join(runs, "\n"))
	}
	for _, r := range runs {
		if f := strings.Fields(r); slices.Contains(f, ".ci/install") || strings.Contains(r, "mage.go test") {
			t.Errorf("the deploy job runs %q, which is for the tests", r)
		}
	}
	for _, want := range []string{".ci/install-deploy", ".ci/install-mirage"} {
		if at(want) < 0 || at(want) > site {
			t.Errorf("the deploy job does not run %s before building", want)
		}
	}
}

// TestTravisRoutesContentAroundTheSuite runs .travis.yml's jobs in bash as
// Travis does (one shell through before_install, install and script), with
// go, opam and the install scripts stood in for by loggers, on a content
// push and a code push.
func TestTravisRoutesContentAroundTheSuite(t *testing.T) {
	travis := readYAML(t, "../../.travis.yml")
	jobs := map[string]map[string]any{}
	for _, j := range travis["jobs"].(map[string]any)["include"].([]any) {
		job := j.(map[string]any)
		jobs[job["stage"].(string)] = job
	}
	if jobs["test"] == nil || jobs["deploy"] == nil {
		t.Fatalf(".travis.yml has stages %v; want test and deploy", slices.Collect(maps.Keys(jobs)))
	}
	blog, base := routeRepo(t, "")
	bin := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "log")
	logger := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> " + logFile + "\n"
	for _, f := range []string{"go", "sudo", "apt-get"} {
		writeExec(t, filepath.Join(bin, f), logger)
	}
	// opam exec -- CMD runs CMD, logged.
	writeExec(t, filepath.Join(bin, "opam"), logger+"while [ $# -gt 0 ] && [ \"$1\" != -- ]; do shift; done; [ $# -gt 0 ] && shift && exec \"$@\"\n")
	for _, f := range []string{"install", "install-deploy", "install-mirage"} {
		writeExec(t, filepath.Join(blog, ".ci", f), logger)
	}
	gitCommitAll(t, blog, "stand-ins for the install scripts")
	base = gitHead(t, blog)

	runJob := func(job map[string]any, head string) string {
		t.Helper()
		os.Remove(logFile)
		var script strings.Builder
		for _, e := range asStrings(travis["env"].(map[string]any)["global"]) {
			script.WriteString("export " + e + "\n")
		}
		for _, phase := range []string{"before_install", "install", "before_script", "script"} {
			for _, c := range asStrings(job[phase]) {
				script.WriteString(c + " || { echo 'travis: " + phase + " failed' >&2; exit 1; }\n")
			}
		}
		cmd := exec.Command("bash", "-c", script.String())
		cmd.Dir = blog
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"),
			"TRAVIS_COMMIT_RANGE="+base+"..."+head, "TRAVIS_COMMIT="+head, "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("travis job: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(logFile)
		return string(b)
	}
	for _, c := range []struct {
		name   string
		change change
		suite  bool
	}{
		{"content", change{write: []string{"_posts/2026-12-01-new.md"}}, false},
		{"code", change{write: []string{"hostinit/main.go"}}, true},
	} {
		head := push(t, blog, base, c.change)
		log := runJob(jobs["test"], head)
		if ran := strings.Contains(log, "go run mage.go test") && strings.Contains(log, "install \n"); ran != c.suite {
			t.Errorf("%s push, test job: suite and its install run %v, want %v; it ran:\n%s", c.name, ran, c.suite, log)
		}
		log = runJob(jobs["deploy"], head)
		lines := strings.Split(strings.TrimSpace(log), "\n")
		want := []string{"install-deploy ", "install-mirage ", "go run mage.go site", "opam exec --switch=blog -- go run mage.go deploy", "go run mage.go deploy"}
		if !slices.Equal(lines, want) {
			t.Errorf("%s push, deploy job ran\n%s\nwant\n%s", c.name, log, strings.Join(want, "\n"))
		}
	}
}

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}
