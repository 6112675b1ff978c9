package e2e

import (
	"context"
	"crypto/tls"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/acmetest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// TestMageDeployAgainstTheEmulator is `go run mage.go deploy` exactly as CI
// runs it, pointed at the AWS emulator by nothing but the SDK's standard
// environment (AWS_ENDPOINT_URL, credentials, region) and at Pebble as its
// ACME CA: the real blog, a certificate, a host image, Bake, Launch behind
// the TLS health gate (the stand-in serves the build it reads from the
// image, with the certificate the Cert step left) and Swap, holding the
// deploy lease. First with the CA down and no certificate stored: the run
// fails before anything is built or launched. Then a deploy issues the
// certificate, and an unchanged redeploy orders none and creates and
// changes nothing but the lease.
func TestMageDeployAgainstTheEmulator(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	// Waiters find things ready at once, so the SDK's fixed waiter delays
	// (15 s and more) never come into play.
	h := awsharness.Start(t, awsharness.Options{PendingDescribes: -1, InvisibleDescribes: -1})
	builds := h.StartBuildServer(t)
	base := awsharness.UniqueName("mage") + ".example"
	domain := "www." + base
	ctx := context.Background()
	r53 := h.Route53(t)
	zone, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(awsharness.UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}

	dir := freshClone(t)
	ca := acmetest.Start(t, h.Model, acmetest.Options{})
	// The stand-in for the booted image serves the certificate the run put
	// into the image: the one the Cert step left in _build/cert.
	builds.ServeTLS(t, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "_build", "cert", "chain.pem"), filepath.Join(dir, "_build", "cert", "key.pem"))
		return &c, err
	})
	env := []string{
		"DEPLOY_DOMAIN=" + domain, "DEPLOY_MIRAGE_TARGET=none", "DEPLOY_HOST_KERNEL=" + kernel,
		"DEPLOY_HEALTH_URL=" + builds.HTTPSHealthURL(), "DEPLOY_TTL=1", "UNIKERNEL=",
		"DEPLOY_ACME_DIRECTORY=" + ca.Directory, "DEPLOY_ACME_ROOTS=" + ca.RootsFile, "DEPLOY_ACME_RESOLVERS=" + ca.DNS,
	}

	ca.Down(true)
	out, err := mage(t, dir, env, "deploy")
	if err == nil || !strings.Contains(out, "nothing is launched") {
		t.Fatalf("mage deploy with the CA down and no certificate: %v\n%s", err, out)
	}
	for _, c := range h.Calls.Calls() {
		if c.Service == "ec2" || c.Service == "ebs" {
			t.Fatalf("a deploy that failed at the certificate called %s", c)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "_build", "disk-host.img")); !os.IsNotExist(err) {
		t.Errorf("an image was built before the certificate failed: %v", err)
	}
	ca.Down(false)

	// The program `go run mage.go deploy` execs, so that the process's
	// whole life is the deploy, for the timeline's check against it.
	bin := compileMage(t, dir)
	out, wall, err := runMage(t, bin, dir, env, "deploy")
	if err != nil {
		t.Fatalf("mage deploy: %v\n%s", err, out)
	}
	if ca.Orders() != 1 || !strings.Contains(out, "issued a certificate for "+domain) {
		t.Fatalf("%d orders; the deploy did not say it issued a certificate:\n%s", ca.Orders(), out)
	}
	t.Logf("first deploy:\n%s", lastLines(out, 12))
	address := recordTarget(t, r53, aws.ToString(zone.HostedZone.Id), domain)
	live, err := h.Model.InstancesTagged(ctx, fleet.TagRole, "live")
	if err != nil {
		t.Fatal(err)
	}
	eip, ok := h.Model.AddressOf(address)
	if !ok || !contains(live, eip.InstanceID) {
		t.Fatalf("record → %q (address %+v), live instances %v\n%s", address, eip, live, out)
	}
	if build, err := builds.Visit(ctx, aws.ToString(zone.HostedZone.Id), domain); err != nil || build == "" {
		t.Fatalf("a reader of %s gets %q, %v", domain, build, err)
	}
	var bake struct {
		ImageID        string `json:"image_id"`
		BlocksUploaded int64  `json:"blocks_uploaded"`
	}
	readJSON(t, filepath.Join(dir, "_build", "bake.json"), &bake)
	if bake.ImageID == "" || bake.BlocksUploaded == 0 {
		t.Errorf("bake receipt %+v", bake)
	}
	wantTimeline(t, dir, out, wall, "start", "site", "cert", "unikernel", "image", "upload", "snapshot", "ami", "launch", "boot", "gate", "cutover")

	h.Calls.Reset()
	out, wall, err = runMage(t, bin, dir, env, "deploy")
	if err != nil {
		t.Fatalf("second mage deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "nothing created or changed") {
		t.Errorf("an unchanged redeploy did not say it did nothing:\n%s", out)
	}
	if ca.Orders() != 1 {
		t.Errorf("an unchanged redeploy ordered a certificate (%d orders)", ca.Orders())
	}
	for _, c := range []struct{ svc, op string }{{"ebs", "StartSnapshot"}, {"ec2", "RegisterImage"}, {"ec2", "RunInstances"}, {"ec2", "AllocateAddress"}, {"ec2", "AssociateAddress"}, {"ssm", "PutParameter"}} {
		if n := h.Calls.Count(c.svc, c.op); n != 0 {
			t.Errorf("unchanged redeploy called %s:%s %d times", c.svc, c.op, n)
		}
	}
	// The blog's record, the lease, and the certificate's challenge (the
	// first deploy's, removed again): nothing else.
	for _, c := range h.Model.Changes() {
		if c.Set.Name != fleet.FQDN(domain) && c.Set.Name != fleet.LeaseName(domain) && c.Set.Name != fleet.FQDN(cert.ChallengeName(domain)) {
			t.Errorf("a deploy changed %s %s", c.Set.Name, c.Set.Type)
		}
	}
	if got := recordTarget(t, r53, aws.ToString(zone.HostedZone.Id), domain); got != address {
		t.Errorf("record moved to %s", got)
	}
	wantTimeline(t, dir, out, wall, "start", "preflight", "site", "cert", "unikernel", "image", "lease", "release")
}

// wantTimeline checks what `mage deploy` says of its timeline: the line it
// prints last, and _build/deploy.json, whose phases include want, whose
// critical path adds up to the timeline's own wall time within 10 % and
// accounts for at least 90 % of wall, the life of the deploy's process as
// the test measured it, whose security group and address ran beside a bake
// that uploads, and whose certificate, when there is one, was found beside the
// site's build.
func wantTimeline(t *testing.T, dir, out string, wall time.Duration, want ...string) {
	t.Helper()
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "timeline: live after") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("mage deploy printed no timeline line:\n%s", lastLines(out, 20))
	}
	t.Logf("%s", line)
	var rc struct {
		OK       bool `json:"ok"`
		Timeline struct {
			Seconds         float64 `json:"seconds"`
			LiveSeconds     float64 `json:"live_seconds"`
			CriticalSeconds float64 `json:"critical_seconds"`
			Phases          []struct {
				Name     string  `json:"name"`
				Start    float64 `json:"start"`
				Seconds  float64 `json:"seconds"`
				Critical bool    `json:"critical"`
				Beside   string  `json:"beside"`
			} `json:"phases"`
		} `json:"timeline"`
	}
	readJSON(t, filepath.Join(dir, "_build", "deploy.json"), &rc)
	tl := rc.Timeline
	// A bake that uploads outlasts the group and the address; an
	// unchanged redeploy's bake only finds its AMI, and either may end last.
	uploads := slices.Contains(want, "upload")
	seen := map[string]bool{}
	sum := 0.0
	for _, p := range tl.Phases {
		seen[p.Name] = true
		if p.Critical {
			sum += p.Seconds
		}
		if (p.Name == "security group" || p.Name == "address") && uploads && (p.Critical || p.Beside == "") {
			t.Errorf("%s: %+v; want it off the critical path, beside the bake", p.Name, p)
		}
	}
	for _, name := range append(want, "security group", "address") {
		if !seen[name] {
			t.Errorf("_build/deploy.json has no %q phase: %+v", name, tl.Phases)
		}
	}
	// The certificate is found while the site builds.
	var site, cert struct{ from, to float64 }
	for _, p := range tl.Phases {
		switch p.Name {
		case "site":
			site.from, site.to = p.Start, p.Start+p.Seconds
		case "cert":
			cert.from, cert.to = p.Start, p.Start+p.Seconds
		}
	}
	if seen["cert"] && (cert.from >= site.to || site.from >= cert.to) {
		t.Errorf("cert ran %.3f–%.3f s and site %.3f–%.3f s: not side by side", cert.from, cert.to, site.from, site.to)
	}
	if !rc.OK || tl.Seconds <= 0 || math.Abs(sum-tl.Seconds) > 0.1*tl.Seconds || math.Abs(sum-tl.CriticalSeconds) > 0.01 {
		t.Errorf("the critical path's phases add up to %.3f s (receipt: %.3f s) of a %.3f s deploy (ok %v); want within 10 %%", sum, tl.CriticalSeconds, tl.Seconds, rc.OK)
	}
	// Against the clock of the test, not the timeline's own: what the
	// process did before the timeline started or after it ended, or in a
	// gap between phases, is time the line does not account for.
	if w := wall.Seconds(); sum < 0.9*w || tl.Seconds > w {
		t.Errorf("the critical path's phases add up to %.3f s (timeline: %.3f s) of the %.3f s the process lived; want at least 90 %%", sum, tl.Seconds, w)
	} else {
		t.Logf("the critical path's phases: %.3f s of the process's %.3f s (%.1f %%)", sum, w, 100*sum/w)
	}
	if tl.LiveSeconds <= 0 || tl.LiveSeconds > tl.Seconds {
		t.Errorf("live after %.3f s of %.3f s", tl.LiveSeconds, tl.Seconds)
	}
}

// recordTarget is the A record's address for name, "" when there is none.
func recordTarget(t *testing.T, r53 *route53.Client, zoneID, name string) string {
	t.Helper()
	out, err := r53.ListResourceRecordSets(context.Background(), &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID)})
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range out.ResourceRecordSets {
		if strings.TrimSuffix(aws.ToString(rr.Name), ".") == name && rr.Type == r53types.RRTypeA && len(rr.ResourceRecords) == 1 {
			return aws.ToString(rr.ResourceRecords[0].Value)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s && s != "" {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
