package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// TestDeployStopsOnWhatMustNotBePublished: an untracked file, a 100 MB file
// and a file holding an AWS key each stop `mage deploy` with the path and
// the fix, before anything is created in AWS (the harness records every
// call: only reads).
func TestDeployStopsOnWhatMustNotBePublished(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1, InvisibleDescribes: -1})
	builds := h.StartBuildServer(t)
	base := awsharness.UniqueName("stop") + ".example"
	if _, err := h.Route53(t).CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))}); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"DEPLOY_DOMAIN=www." + base, "DEPLOY_MIRAGE_TARGET=none", "DEPLOY_HOST_KERNEL=" + kernel,
		"DEPLOY_HEALTH_URL=" + builds.HealthURL(), "DEPLOY_TTL=1", "UNIKERNEL=",
		// Plain HTTP: these runs stop before the Cert step anyway (at Site).
		"DEPLOY_HTTPS=false",
	}
	cases := []struct {
		name   string
		setup  func(t *testing.T, dir string)
		expect []string
	}{
		{"untracked file", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "credentials-notes.txt"), "left here by accident\n")
		}, []string{"not tracked by git", "credentials-notes.txt", "git add"}},
		{"100 MB file", func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, "assets", "build-output.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(100 << 20); err != nil {
				t.Fatal(err)
			}
			f.Close()
			gitCommitAll(t, dir, "a stray build output")
		}, []string{"assets/build-output.bin is 100.0 MiB, over the 20MiB limit", "max_file_size", "git rm --cached"}},
		{"AWS key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "aws.json"), `{"AccessKeyId": "AKIA`+"Z7QWERTYUIOPASDF"+`", "SecretAccessKey": "x"}`+"\n")
			gitCommitAll(t, dir, "oops")
		}, []string{"aws.json holds an AWS access key id", "rotate"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := freshClone(t)
			c.setup(t, dir)
			h.Calls.Reset()
			out, err := mage(t, dir, env, "deploy")
			if err == nil {
				t.Fatalf("mage deploy went ahead:\n%s", lastLines(out, 20))
			}
			for _, want := range c.expect {
				if !strings.Contains(out, want) {
					t.Errorf("the output does not say %q:\n%s", want, lastLines(out, 20))
				}
			}
			for _, call := range h.Calls.Calls() {
				if !readOnly(call.Operation) {
					t.Errorf("the stopped deploy called %s", call.Action())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "_site", "index.html")); err == nil {
				t.Error("the site was built")
			}
		})
	}
}

// TestStalePrebuiltKernelStopsADeploy: UNIKERNEL names a kernel built for
// another build of the site (its bytes carry another build id, as a Mirage
// kernel carries its site crunched in), with mirage_target: spt. `mage
// deploy` stops at the Unikernel step, naming the kernel and the three ways
// out, before anything is created in AWS: only reads reach it, and no image
// is written.
func TestStalePrebuiltKernelStopsADeploy(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1, InvisibleDescribes: -1})
	builds := h.StartBuildServer(t)
	base := awsharness.UniqueName("stale") + ".example"
	if _, err := h.Route53(t).CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))}); err != nil {
		t.Fatal(err)
	}
	// A stand-in spt kernel, as the unikernel tests make one: an ELF
	// header and the id of the build it was made from, which is not this
	// site's (a build id is 16 hex digits of the site's hash).
	stale := filepath.Join(t.TempDir(), "blog.spt")
	write(t, stale, "\x7fELF\x02\x01\x01 a kernel of build 9999ffff9999ffff, crunched in\n")
	dir := freshClone(t)
	h.Calls.Reset()
	out, err := mage(t, dir, []string{
		"DEPLOY_DOMAIN=www." + base, "DEPLOY_MIRAGE_TARGET=spt", "UNIKERNEL=" + stale, "DEPLOY_HOST_KERNEL=" + kernel,
		"DEPLOY_HEALTH_URL=" + builds.HealthURL(), "DEPLOY_TTL=1",
		// Plain HTTP: the Cert step passes the site's build on without an order.
		"DEPLOY_HTTPS=false",
	}, "deploy")
	if err == nil {
		t.Fatalf("mage deploy went ahead with a kernel of another build:\n%s", lastLines(out, 20))
	}
	var siteRc struct {
		BuildID string `json:"build_id"`
	}
	readJSON(t, filepath.Join(dir, "_build", "site.json"), &siteRc)
	for _, want := range []string{
		"UNIKERNEL=" + stale, "does not carry the site's build " + siteRc.BuildID, "would not publish the site as built",
		"unset UNIKERNEL", "point UNIKERNEL at that kernel", "mirage_target: none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, lastLines(out, 20))
		}
	}
	if len(h.Calls.Calls()) == 0 {
		t.Error("no AWS call recorded: the preflight's reads were expected")
	}
	t.Logf("%d AWS calls, %v; the deploy said:\n%s", len(h.Calls.Calls()), h.Calls.Actions(), lastLines(out, 3))
	for _, call := range h.Calls.Calls() {
		if !readOnly(call.Operation) {
			t.Errorf("the stopped deploy called %s", call.Action())
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "_build", "disk-*.img")); len(m) > 0 {
		t.Errorf("an image was written: %v", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "_build", "unikernel.json")); err == nil {
		t.Error("a unikernel receipt was written for a kernel a deploy must not use")
	}
}

func readOnly(op string) bool {
	for _, p := range []string{"Describe", "List", "Get"} {
		if strings.HasPrefix(op, p) {
			return true
		}
	}
	return false
}

// A post whose front matter is not YAML fails `mage site`, naming the file
// and the line (Jekyll alone logs it and publishes the post untitled).
func TestBrokenFrontMatterFailsMageSite(t *testing.T) {
	testtool.Need(t, "jekyll", "jekyll")
	dir := freshClone(t)
	write(t, filepath.Join(dir, "_posts", "2026-11-30-broken.md"), "---\ntitle: \"Unclosed\nlayout: post\n---\nBody.\n")
	out, err := mage(t, dir, nil, "site")
	if err == nil {
		t.Fatalf("mage site succeeded:\n%s", lastLines(out, 20))
	}
	if !strings.Contains(out, "_posts/2026-11-30-broken.md:2: front matter is not valid YAML") {
		t.Errorf("the error does not name the file and line:\n%s", lastLines(out, 20))
	}
}
