package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// noAWS is an environment with a region and no way to credentials.
func noAWS(t *testing.T) []string {
	none := filepath.Join(t.TempDir(), "none")
	return []string{"AWS_REGION=eu-west-1", "AWS_PROFILE=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_ROLE_ARN=", "AWS_ENDPOINT_URL="}
}

// TestDeployStopsAtTheLocalPreflight: without Mirage (and no UNIKERNEL),
// `mage deploy` prints the checklist with the fix and stops before any
// work: no site built, nothing under _build, no AWS call needed.
func TestDeployStopsAtTheLocalPreflight(t *testing.T) {
	dir := freshClone(t)
	// go on PATH, then the system's directories (mirage comes from opam, never there).
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	if p, _ := exec.LookPath("mirage"); strings.HasPrefix(p, "/usr/bin/") || strings.HasPrefix(p, "/bin/") {
		t.Skipf("mirage is installed system-wide (%s)", p)
	}
	env := append(noAWS(t), "PATH="+filepath.Dir(goBin)+":/usr/bin:/bin", "UNIKERNEL=", "DEPLOY_MIRAGE_TARGET=spt", "DEPLOY_DOMAIN=blog.example.com")
	out, err := mage(t, dir, env, "deploy")
	if err == nil {
		t.Fatalf("mage deploy succeeded without mirage:\n%s", out)
	}
	for _, want := range []string{"✗ unikernel toolchain: mirage not found on PATH", "fix: install Mirage", "mirage_target: none", "preflight: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range []string{"_site", "_build"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists: the deploy did work before its preflight failed", p)
		}
	}
}

// TestPolicyPrintsJSONWithoutCredentials: `mage policy` with no
// credentials prints a valid policy on stdout, widened to hostedzone/*,
// and warns on stderr how to pin the zone.
func TestPolicyPrintsJSONWithoutCredentials(t *testing.T) {
	dir := freshClone(t)
	cmd := exec.Command("go", "run", "mage.go", "policy")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), noAWS(t)...), "DEPLOY_DOMAIN=blog.example.com", "DEPLOY_HOSTED_ZONE_ID=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mage policy: %v\n%s", err, stderr.String())
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid      string
			Action   []string
			Resource []string
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || doc.Version != "2012-10-17" || len(doc.Statement) < 10 {
		t.Fatalf("stdout is not the policy (%v):\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), `"arn:aws:route53:::hostedzone/*"`) || !strings.Contains(stdout.String(), `"arn:aws:ec2:eu-west-1::snapshot/*"`) {
		t.Errorf("policy not scoped as expected:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "hosted_zone_id") {
		t.Errorf("no warning about the unknown zone:\n%s", stderr.String())
	}
}
