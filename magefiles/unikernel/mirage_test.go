package unikernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// targets are the mirage targets the blog configures: spt for the host
// image, virtio (uefi), xen (pvgrub), hvt, and unix to run on this machine.
var targets = []string{"spt", "virtio", "hvt", "xen", "unix"}

// wantOptions are the network options configure must get, by the release's
// DHCP switch and the target: spt static (the host image's init gives the
// address at boot), virtio/hvt/xen leasing by DHCP, unix on the host's
// sockets.
var wantOptions = map[string]map[string]string{
	"option": {"spt": "--dhcp false", "virtio": "--dhcp true", "hvt": "--dhcp true", "xen": "--dhcp true", "unix": "--net host"},
	"flag":   {"spt": "--no-dhcp", "virtio": "", "hvt": "", "xen": "", "unix": "--net host"},
}

// wantStack is the stack each target's kernel must end up with.
var wantStack = map[string]string{"spt": "static", "virtio": "dhcp", "hvt": "dhcp", "xen": "dhcp", "unix": "socket"}

// useRealConfigML puts the repository's config.ml in the fixture, so its
// first-line version bound meets each release's stand-in.
func (f *fixture) useRealConfigML(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("../../_mirage/config.ml")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.mirageDir, "config.ml"), string(b))
}

func (f *fixture) stack(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.log + ".stack")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestConfigureForEachTargetOnEachRelease builds every target the blog
// configures with a stand-in of every MirageOS release from 4.9.0 to
// 4.11.1, each taking only its own release's options: the configure line is
// the expected one, the release accepts it (and the repository's config.ml),
// and the stack its sources would choose is the one the target needs.
func TestConfigureForEachTargetOnEachRelease(t *testing.T) {
	for _, rel := range releases {
		for _, target := range targets {
			t.Run(rel.version+"/"+target, func(t *testing.T) {
				f := newFixture(t)
				f.useRealConfigML(t)
				useRelease(t, rel)
				r, err := Build(context.Background(), f.options(target))
				if err != nil {
					t.Fatalf("%v\nlog:\n%s", err, f.logs)
				}
				want := strings.TrimSpace("mirage configure -t " + target + " " + wantOptions[rel.dhcp][target])
				if calls := f.calls(t); len(calls) != 3 || calls[0] != want+" @ "+f.mirageDir {
					t.Errorf("commands %q; want first %q", calls, want)
				}
				if got := f.stack(t); got != wantStack[target] {
					t.Errorf("MirageOS %s configures a %s stack for %s; want %s", rel.version, got, target, wantStack[target])
				}
				if r.MirageVersion != rel.version || r.Inputs["mirage_version"] != rel.version {
					t.Errorf("receipt records MirageOS %q (inputs %q); want %s", r.MirageVersion, r.Inputs["mirage_version"], rel.version)
				}
				kernel := "blog." + target
				if target == "unix" {
					kernel = "blog"
				}
				if r.Kernel != filepath.Join(f.mirageDir, "dist", kernel) {
					t.Errorf("kernel %s; want dist/%s", r.Kernel, kernel)
				}
			})
		}
	}
}

// standIn runs the stand-in mirage as release rel would be run by hand.
func standIn(t *testing.T, f *fixture, rel release, args ...string) (stack string, out string, err error) {
	t.Helper()
	useRelease(t, rel)
	os.Remove(f.log + ".stack")
	cmd := exec.Command("mirage", args...)
	cmd.Dir = f.mirageDir
	b, err := cmd.CombinedOutput()
	s, _ := os.ReadFile(f.log + ".stack")
	return strings.TrimSpace(string(s)), string(b), err
}

func releaseOf(t *testing.T, version string) release {
	t.Helper()
	for _, r := range releases {
		if r.version == version {
			return r
		}
	}
	t.Fatalf("no release %s", version)
	return release{}
}

// TestStandInRejectsWhatEachReleaseRejects checks the stand-in against the
// facts in issue 15 and the sources: what the step passed before would fail
// or misconfigure, so the tests above can tell.
func TestStandInRejectsWhatEachReleaseRejects(t *testing.T) {
	f := newFixture(t)
	f.useRealConfigML(t)
	cases := []struct {
		version   string
		args      []string
		stack     string // "" when configure must fail
		errorText string
	}{
		// 4.11.0 replaced --dhcp by --no-dhcp: the old virtio line fails.
		{"4.11.1", []string{"configure", "-t", "virtio", "--dhcp", "true"}, "", "unknown option '--dhcp'"},
		{"4.11.0", []string{"configure", "-t", "spt", "--dhcp=false"}, "", "unknown option '--dhcp'"},
		{"4.10.6", []string{"configure", "-t", "spt", "--no-dhcp"}, "", "unknown option '--no-dhcp'"},
		{"4.9.0", []string{"configure", "-t", "spt", "--dhcp", "yes"}, "", "invalid value 'yes'"},
		// Without options, spt was static up to 4.10.4 and leases from 4.10.5.
		{"4.10.4", []string{"configure", "-t", "spt"}, "static", ""},
		{"4.10.5", []string{"configure", "-t", "spt"}, "dhcp", ""},
		{"4.11.1", []string{"configure", "-t", "spt"}, "dhcp", ""},
		// unix without --net: the host's sockets up to 4.10.4, a direct stack
		// waiting for a lease on tap0 from 4.10.5.
		{"4.10.4", []string{"configure", "-t", "unix"}, "socket", ""},
		{"4.10.6", []string{"configure", "-t", "unix"}, "dhcp", ""},
		{"4.11.1", []string{"configure", "-t", "unix"}, "dhcp", ""},
	}
	for _, c := range cases {
		stack, out, err := standIn(t, f, releaseOf(t, c.version), c.args...)
		line := c.version + ": mirage " + strings.Join(c.args, " ")
		switch {
		case c.stack == "" && (err == nil || !strings.Contains(out, c.errorText)):
			t.Errorf("%s: accepted or failed otherwise (%v):\n%s\nwant %q", line, err, out, c.errorText)
		case c.stack != "" && (err != nil || stack != c.stack):
			t.Errorf("%s: %v, stack %q; want a %s stack\n%s", line, err, stack, c.stack, out)
		}
	}
}

// TestConfigMLIsBoundedToTheTable: config.ml's first line is the table's
// range, so `mirage configure` of a release outside it refuses the project
// itself, and every release inside it accepts it (above).
func TestConfigMLIsBoundedToTheTable(t *testing.T) {
	b, err := os.ReadFile("../../_mirage/config.ml")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if first != ConfigMLConstraint() || first != "(* mirage >= 4.9.0 & < 4.12.0 *)" {
		t.Errorf("config.ml's first line is %q; want %q, the range of the table in mirage.go", first, ConfigMLConstraint())
	}
	f := newFixture(t)
	f.useRealConfigML(t)
	for _, v := range []string{"4.8.2", "4.12.0", "5.0.0"} {
		_, out, err := standIn(t, f, release{version: v, dhcp: "flag", dhcpDefault: true}, "configure", "-t", "spt", "--no-dhcp")
		if err == nil || !strings.Contains(out, "Version mismatch") {
			t.Errorf("MirageOS %s accepted config.ml (%v):\n%s", v, err, out)
		}
	}
}

// TestUnsupportedMirageStopsBeforeConfigure: a release outside the table, or
// a version that is no release, fails the step with the reason and the fix,
// before anything runs.
func TestUnsupportedMirageStopsBeforeConfigure(t *testing.T) {
	cases := map[string][]string{
		"4.12.0":             {"MirageOS 4.12.0 is newer than this build knows", "magefiles/unikernel/mirage.go", "opam install 'mirage>=4.9.0&<4.12.0'", "add a row"},
		"v5.0.1":             {"MirageOS 5.0.1 is newer"},
		"4.8.2":              {"MirageOS 4.8.2 is older than this blog supports", "opam install 'mirage>=4.9.0&<4.12.0'"},
		"v4.11.1-3-gabc1234": {`"v4.11.1-3-gabc1234" is not a MirageOS release version`, "mirage --version", "opam install"},
		"%%VERSION%%":        {`"%%VERSION%%" is not a MirageOS release version`},
	}
	for output, wants := range cases {
		f := newFixture(t)
		t.Setenv("STANDIN_VERSION_OUTPUT", output)
		_, err := Build(context.Background(), f.options("spt"))
		for _, want := range wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("mirage --version %q: error %v; want it to say %q", output, err, want)
			}
		}
		if calls := f.calls(t); len(calls) != 0 {
			t.Errorf("mirage --version %q: ran %q", output, calls)
		}
		if _, statErr := os.Stat(filepath.Join(f.mirageDir, HtdocsDir)); !os.IsNotExist(statErr) {
			t.Errorf("mirage --version %q: the site was copied in before the version was checked", output)
		}
	}
}

func TestMirageVersionThatFailsIsReported(t *testing.T) {
	f := newFixture(t)
	bin := t.TempDir()
	write(t, filepath.Join(bin, "mirage"), "#!/bin/sh\necho 'mirage: error while loading shared libraries' >&2\nexit 127\n")
	os.Chmod(filepath.Join(bin, "mirage"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	_, err := Build(context.Background(), f.options("spt"))
	if err == nil || !strings.Contains(err.Error(), "--version` failed") || !strings.Contains(err.Error(), "error while loading shared libraries") {
		t.Errorf("error = %v", err)
	}
}

// TestTableMatchesTheReleases checks the table in mirage.go against the
// releases as written from the sources in this test: contiguous rows, and
// each release's row has that release's DHCP switch and default.
func TestTableMatchesTheReleases(t *testing.T) {
	for i := 1; i < len(Supported); i++ {
		if Supported[i].From != Supported[i-1].Before || !Supported[i].From.Less(Supported[i].Before) {
			t.Errorf("rows %d and %d are not contiguous: %v–%v, %v–%v", i-1, i, Supported[i-1].From, Supported[i-1].Before, Supported[i].From, Supported[i].Before)
		}
	}
	for _, rel := range releases {
		v, err := ParseVersion(rel.version)
		if err != nil {
			t.Fatal(err)
		}
		row, err := Lookup(v)
		if err != nil {
			t.Errorf("%s: %v", rel.version, err)
			continue
		}
		if (row.DHCP == dhcpFlag) != (rel.dhcp == "flag") || row.DHCPDefault != rel.dhcpDefault || row.Verified == "" {
			t.Errorf("%s: row %+v; the sources say --dhcp is a %s with default %v", rel.version, row, rel.dhcp, rel.dhcpDefault)
		}
	}
}

func TestParseVersion(t *testing.T) {
	good := map[string]Version{"4.11.1\n": {4, 11, 1}, "v4.10.5": {4, 10, 5}, " 4.9.0 ": {4, 9, 0}}
	for s, want := range good {
		if v, err := ParseVersion(s); err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", s, v, err, want)
		}
	}
	for _, s := range []string{"", "4.11", "4.11.1.2", "mirage 4.11.1", "4.11.1~beta1", "v4.11.1-3-gabc1234"} {
		if v, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) = %v; want an error", s, v)
		}
	}
}

// TestMirageUpgradeRebuilds: the release is an input of the kernel.
func TestMirageUpgradeRebuilds(t *testing.T) {
	f := newFixture(t)
	useRelease(t, releaseOf(t, "4.10.6"))
	if _, err := Build(context.Background(), f.options("spt")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), f.options("spt")); err != nil {
		t.Fatal(err)
	}
	useRelease(t, releaseOf(t, "4.11.1"))
	if _, err := Build(context.Background(), f.options("spt")); err != nil {
		t.Fatal(err)
	}
	calls := f.calls(t)
	if len(calls) != 6 || !strings.HasPrefix(calls[0], "mirage configure -t spt --dhcp false @") || !strings.HasPrefix(calls[3], "mirage configure -t spt --no-dhcp @") {
		t.Errorf("commands %q; want a build on 4.10.6, a skip, and a rebuild on 4.11.1", calls)
	}
}

func TestUnknownTargetIsRefused(t *testing.T) {
	if _, err := ConfigureArgs("mirage", "muen", Version{4, 11, 1}); err == nil || !strings.Contains(err.Error(), `"muen"`) {
		t.Errorf("error = %v", err)
	}
}
