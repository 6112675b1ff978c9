package e2e

import (
	"os"
	"strings"
	"testing"

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
