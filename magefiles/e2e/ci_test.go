package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	readme, _ := os.ReadFile("../../README.md")
	run, _ := os.ReadFile("../../.ci/run")
	const cmd = "go run mage.go test"
	if !strings.Contains(string(readme), cmd) || !strings.Contains(string(run), "\n"+cmd+"\n") {
		t.Errorf("README.md and .ci/run must both give %q", cmd)
	}
}

func TestGitHubWorkflowDeploysOnlyFromTheDefaultBranchWithOIDC(t *testing.T) {
	wf := readYAML(t, "../../.github/workflows/deploy.yml")
	jobs := wf["jobs"].(map[string]any)
	deploy := jobs["deploy"].(map[string]any)

	cond, _ := deploy["if"].(string)
	if !strings.Contains(cond, "github.event_name == 'push'") || !strings.Contains(cond, "github.event.repository.default_branch") {
		t.Errorf("deploy job runs beyond pushes to the default branch: if: %q", cond)
	}
	// The certificate renews without a push: a weekly schedule deploys too.
	on := wf["on"].(map[string]any)
	sched, _ := on["schedule"].([]any)
	if len(sched) != 1 || !strings.HasSuffix(sched[0].(map[string]any)["cron"].(string), "* * 1") || !strings.Contains(cond, "github.event_name == 'schedule'") {
		t.Errorf("no weekly scheduled deploy (on.schedule %v, if: %q)", on["schedule"], cond)
	}
	perms := deploy["permissions"].(map[string]any)
	if perms["id-token"] != "write" {
		t.Errorf("deploy job cannot request an OIDC token: permissions %v", perms)
	}
	top := wf["permissions"].(map[string]any)
	if top["id-token"] != nil || top["contents"] != "read" {
		t.Errorf("workflow-wide permissions must stay read-only: %v", top)
	}

	var assumesRole, deploys bool
	for _, s := range deploy["steps"].([]any) {
		step := s.(map[string]any)
		uses, _ := step["uses"].(string)
		if strings.HasPrefix(uses, "aws-actions/configure-aws-credentials@") {
			with := step["with"].(map[string]any)
			if with["role-to-assume"] == nil {
				t.Error("configure-aws-credentials has no role-to-assume")
			}
			for _, key := range []string{"aws-access-key-id", "aws-secret-access-key"} {
				if with[key] != nil {
					t.Errorf("long-lived key %s passed to configure-aws-credentials", key)
				}
			}
			assumesRole = true
		}
		if run, _ := step["run"].(string); strings.Contains(run, "mage.go deploy") {
			if !assumesRole {
				t.Error("mage deploy runs before the role is assumed")
			}
			deploys = true
		}
	}
	if !assumesRole || !deploys {
		t.Errorf("deploy job must assume a role through OIDC (%v) and run mage deploy (%v)", assumesRole, deploys)
	}
	for name, j := range jobs {
		if name == "deploy" {
			continue
		}
		for _, s := range j.(map[string]any)["steps"].([]any) {
			if run, _ := s.(map[string]any)["run"].(string); strings.Contains(run, "deploy") {
				t.Errorf("job %s deploys too: %q", name, run)
			}
		}
	}
	raw, _ := os.ReadFile("../../.github/workflows/deploy.yml")
	if strings.Contains(string(raw), "secrets.AWS_SECRET_ACCESS_KEY") {
		t.Error("the workflow reads a long-lived AWS secret")
	}
}

func TestTravisDeploysOnlyFromTheDefaultBranch(t *testing.T) {
	travis := readYAML(t, "../../.travis.yml")
	var deployStages int
	for _, j := range travis["jobs"].(map[string]any)["include"].([]any) {
		job := j.(map[string]any)
		script := strings.Join(asStrings(job["script"]), "\n")
		if !strings.Contains(script, "mage.go deploy") {
			continue
		}
		deployStages++
		cond, _ := job["if"].(string)
		for _, want := range []string{"branch = main", "type IN (push, cron)", "fork = false"} {
			if !strings.Contains(cond, want) {
				t.Errorf("travis deploy condition %q lacks %q", cond, want)
			}
		}
	}
	if deployStages != 1 {
		t.Errorf("%d travis jobs deploy, want exactly 1", deployStages)
	}
	raw, _ := os.ReadFile("../../.travis.yml")
	if strings.Contains(string(raw), "AWS_SECRET_ACCESS_KEY=") {
		t.Error(".travis.yml holds a plain-text AWS secret")
	}
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestScheduledRunFailsBeforeGitHubDisablesTheSchedule: GitHub disables a
// public repository's scheduled workflows after 60 days without activity
// (docs.github.com, "Events that trigger workflows", schedule), and the
// weekly run is what renews the certificate. A job of scheduled runs only
// runs .ci/quiet-repository 45: in a real git repository whose newest
// commit is 46 days old it fails with an error annotation saying why and
// what to do; at 10 days it passes.
func TestScheduledRunFailsBeforeGitHubDisablesTheSchedule(t *testing.T) {
	wf := readYAML(t, "../../.github/workflows/deploy.yml")
	job, _ := wf["jobs"].(map[string]any)["quiet-repository"].(map[string]any)
	if job == nil || job["if"] != "github.event_name == 'schedule'" || job["needs"] != nil {
		t.Fatalf("no quiet-repository job of scheduled runs only, needing nothing: %v", job)
	}
	var script string
	for _, st := range job["steps"].([]any) {
		if run, _ := st.(map[string]any)["run"].(string); run != "" {
			script = run
		}
	}
	if script != "bash .ci/quiet-repository 45" {
		t.Fatalf("quiet-repository runs %q", script)
	}
	abs, err := filepath.Abs("../../.ci/quiet-repository")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		age  int
		fail bool
	}{{46, true}, {10, false}} {
		t.Run(fmt.Sprint(tc.age, " days"), func(t *testing.T) {
			dir := t.TempDir()
			when := time.Now().Add(-time.Duration(tc.age) * 24 * time.Hour).Format(time.RFC3339)
			git := func(args ...string) {
				t.Helper()
				cmd := exec.Command("git", args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when,
					"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
			git("init", "-q")
			git("commit", "-q", "--allow-empty", "-m", "a post")
			cmd := exec.Command("bash", abs, "45")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if tc.fail {
				if err == nil || !strings.Contains(string(out), "::error title=Schedule about to stop::") || !strings.Contains(string(out), fmt.Sprint(tc.age, " days")) ||
					!strings.Contains(string(out), "60 days") || !strings.Contains(string(out), "Actions tab") {
					t.Fatalf("a repository quiet for %d days: %v\n%s", tc.age, err, out)
				}
			} else if err != nil {
				t.Fatalf("a repository quiet for %d days: %v\n%s", tc.age, err, out)
			}
		})
	}
}
