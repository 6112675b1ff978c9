package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// blog writes a _config.yml with the given deploy block into a temporary root.
func blog(t *testing.T, deploy string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "myblog")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	content := "title: A blog\nexclude: [go.mod]\n" + deploy
	if err := os.WriteFile(filepath.Join(root, File), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsWithoutDeployBlock(t *testing.T) {
	c, err := LoadEnv(blog(t, ""), env())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Site: "myblog", Boot: BootHost, InstanceType: "t3.nano", MirageTarget: "spt",
		ImageSize: 1 << 30, MaxFileSize: 20 << 20, TTL: 60, HealthURL: DefaultHTTPSHealthURL, HealthTimeout: 5 * time.Minute,
		KeepImages: 3, PVGrubRoot: "hd0", UploadParallel: 64, HostKernel: DefaultHostKernel,
		Grace: 2 * time.Minute, LeaseWait: 20 * time.Minute,
		HTTPS: true, ACMEDirectory: LetsEncryptProduction, HSTSMaxAge: 365 * 24 * 3600,
	}
	got := *c
	got.Root, got.Source = "", nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	for _, k := range Keys() {
		if c.Source[k] != "default" {
			t.Errorf("source of %s = %q, want default", k, c.Source[k])
		}
	}
}

func TestGoodFile(t *testing.T) {
	root := blog(t, `deploy:
  region: eu-west-1
  domain: Blog.Example.COM.
  hosted_zone_id: /hostedzone/Z0123456789ABC
  instance_type: t3.nano
  boot: pvgrub
  image_size: 2GiB
  ttl: 5m
  health_url: "https://{{.PublicIP}}/build-id.txt"
  health_timeout: 90
  keep_images: 5
  pvgrub_kernel_id: aki-919dcaf8
  pvgrub_root: hd00
  upload_concurrency: 16
`)
	c, err := LoadEnv(root, env())
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]any{
		"region":       {c.Region, "eu-west-1"},
		"domain":       {c.Domain, "blog.example.com"},
		"site":         {c.Site, "blog.example.com"},
		"zone":         {c.HostedZoneID, "Z0123456789ABC"},
		"instance":     {c.InstanceType, "t3.nano"},
		"boot":         {c.Boot, BootPVGrub},
		"target":       {c.MirageTarget, "xen"},
		"size":         {c.ImageSize, int64(2 << 30)},
		"ttl":          {c.TTL, int64(300)},
		"timeout":      {c.HealthTimeout, 90 * time.Second},
		"keep":         {c.KeepImages, 5},
		"aki":          {c.PVGrubKernelID, "aki-919dcaf8"},
		"pvgrub_root":  {c.PVGrubRoot, "hd00"},
		"concurrency":  {c.UploadParallel, 16},
		"health_url":   {c.HealthURL, "https://{{.PublicIP}}/build-id.txt"},
		"domain_from":  {c.Source["domain"], File},
		"target_from":  {c.Source["mirage_target"], "default"},
		"site_dirname": {c.SiteDir(), filepath.Join(root, "_site")},
	}
	for name, pair := range checks {
		if pair[0] != pair[1] {
			t.Errorf("%s = %v, want %v", name, pair[0], pair[1])
		}
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	root := blog(t, "deploy:\n  domain: a.example.com\n  ttl: 60\n")
	c, err := LoadEnv(root, env(
		"DEPLOY_DOMAIN", "b.example.org",
		"DEPLOY_TTL", "120",
		"DEPLOY_HEALTH_URL", "http://127.0.0.1:9999/",
		"DEPLOY_HTTPS", "false",
		"DEPLOY_IMAGE_SIZE", "512MiB",
	))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "b.example.org" || c.TTL != 120 || c.HealthURL != "http://127.0.0.1:9999/" || c.ImageSize != 512<<20 {
		t.Errorf("overrides not applied: %+v", c)
	}
	if c.Source["domain"] != "DEPLOY_DOMAIN" || c.Source["ttl"] != "DEPLOY_TTL" {
		t.Errorf("sources = %v", c.Source)
	}
	// An empty override is a value, not "unset": it clears an optional key.
	c, err = LoadEnv(root, env("DEPLOY_DOMAIN", ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "" {
		t.Errorf("DEPLOY_DOMAIN= should clear domain, got %q", c.Domain)
	}
}

// TestHTTPSSettings: the HTTPS keys read as documented, and https with a
// plain-HTTP health_url is refused (the gate must see the certificate).
func TestHTTPSSettings(t *testing.T) {
	root := blog(t, "deploy:\n  domain: blog.example.com\n  aliases: WWW.blog.example.com., old.example.com\n  acme_resolvers: 127.0.0.1:5353, 9.9.9.9\n  hsts_max_age: 1h\n  acme_directory: "+LetsEncryptStaging+"\n")
	c, err := LoadEnv(root, env())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Names(), []string{"blog.example.com", "www.blog.example.com", "old.example.com"}) {
		t.Errorf("names %v", c.Names())
	}
	if !slices.Equal(c.ACMEResolvers, []string{"127.0.0.1:5353", "9.9.9.9:53"}) || c.HSTSMaxAge != 3600 || c.ACMEDirectory != LetsEncryptStaging {
		t.Errorf("resolvers %v, hsts %d, directory %s", c.ACMEResolvers, c.HSTSMaxAge, c.ACMEDirectory)
	}
	if _, err := LoadEnv(root, env("DEPLOY_HEALTH_URL", "http://{{.PublicIP}}/")); err == nil || !strings.Contains(err.Error(), "https: false") {
		t.Errorf("an http health_url with https on: %v", err)
	}
	if _, err := LoadEnv(root, env("DEPLOY_ALIASES", "blog.example.com")); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("domain as its own alias: %v", err)
	}
	pem := filepath.Join(root, "roots.pem")
	os.WriteFile(pem, []byte("not a certificate"), 0o644)
	if _, err := LoadEnv(root, env("DEPLOY_ACME_ROOTS", "roots.pem")); err == nil || !strings.Contains(err.Error(), "no PEM CERTIFICATE") {
		t.Errorf("acme_roots without a certificate: %v", err)
	}
	c, err = LoadEnv(root, env("DEPLOY_HTTPS", "false"))
	if err != nil || c.HTTPS || c.HealthURL != DefaultHealthURL {
		t.Errorf("https: false: %v, health_url %s", err, c.HealthURL)
	}
}

func TestEveryBadValueIsReported(t *testing.T) {
	bad := map[string]string{
		"region":             "europe",
		"domain":             "not_a_domain",
		"site":               "Has Spaces",
		"hosted_zone_id":     "zone-1",
		"boot":               "bios",
		"mirage_target":      "solo6",
		"instance_type":      "big",
		"image_size":         "1.5GiB",
		"max_file_size":      "12",
		"ttl":                "forever",
		"health_url":         "ftp://{{.PublicDNSName}}/",
		"health_timeout":     "0s",
		"keep_images":        "0",
		"pvgrub_kernel_id":   "ami-12345678",
		"pvgrub_root":        "hd1",
		"upload_concurrency": "5000",
		"host_kernel":        `bad\npath`,
		"solo5_spt":          "bin/",
		"subnet_id":          "vpc-12345678",
		"https":              "maybe",
		"grace":              "-1s",
		"lease_wait":         "soon",
		"aliases":            "www..example.com",
		"acme_email":         "nobody",
		"acme_directory":     "http://acme.example/dir",
		"acme_roots":         "/nonexistent/roots.pem",
		"acme_resolvers":     "127.0.0.1:99999",
		"hsts_max_age":       "-5",
	}
	if len(bad) != len(Keys()) {
		t.Fatalf("the test covers %d keys, the config has %d: add the new key here", len(bad), len(Keys()))
	}
	var block strings.Builder
	block.WriteString("deploy:\n")
	for k, v := range bad {
		block.WriteString("  " + k + ": \"" + v + "\"\n")
	}
	block.WriteString("  helth_url: x\n") // a typo
	_, err := LoadEnv(blog(t, block.String()), env())
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("want Problems, got %v", err)
	}
	msg := err.Error()
	for k := range bad {
		if !strings.Contains(msg, k+" (from "+File+")") {
			t.Errorf("no problem reported for %s in:\n%s", k, msg)
		}
	}
	if !strings.Contains(msg, "unknown key deploy.helth_url (did you mean health_url?)") {
		t.Errorf("typo not reported with a suggestion:\n%s", msg)
	}
	if len(p) != len(bad)+1 {
		t.Errorf("%d problems, want %d:\n%s", len(p), len(bad)+1, msg)
	}
}

func TestBadValueMessagesNameTheFix(t *testing.T) {
	cases := []struct{ env, value, want string }{
		{"DEPLOY_IMAGE_SIZE", "32MiB", "below the 64MiB"},
		{"DEPLOY_IMAGE_SIZE", "1000000000", "not a whole number of MiB; use e.g. 954MiB"},
		{"DEPLOY_IMAGE_SIZE", "64TiB", "above the 16TiB"},
		{"DEPLOY_MIRAGE_TARGET", "xen", "cannot boot in a host image; use mirage_target: spt or none"},
		{"DEPLOY_HOST_KERNEL", "", "must name a directory"},
		{"DEPLOY_SOLO5_SPT", "/opt/bin/", "names a directory"},
		{"DEPLOY_HEALTH_URL", "http://{{.Nope}}/", "unknown field"},
		{"DEPLOY_HEALTH_URL", "http://{{.PublicIP", "not a valid template"},
		{"DEPLOY_TTL", "0", "outside 1s..48h"},
		{"DEPLOY_HEALTH_TIMEOUT", "2h", "outside 1s..1h"},
		{"DEPLOY_DOMAIN", "localhost", "not a fully qualified domain name"},
	}
	root := blog(t, "")
	for _, tc := range cases {
		_, err := LoadEnv(root, env(tc.env, tc.value))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: got %v, want %q", tc.env, tc.value, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "(from "+tc.env+")") {
			t.Errorf("%s=%s: error does not name where the value came from: %v", tc.env, tc.value, err)
		}
	}
}

func TestStructuralErrors(t *testing.T) {
	cases := map[string]string{
		"deploy: [a, b]\n":                  "deploy: must be a mapping",
		"deploy:\n  domain: [a, b]\n":       "deploy.domain must be a single value",
		"deploy:\n  domain: a\n bad: : :\n": "not valid YAML",
	}
	for body, want := range cases {
		_, err := LoadEnv(blog(t, body), env())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
	if _, err := LoadEnv(t.TempDir(), env()); err == nil || !strings.Contains(err.Error(), "run mage from the blog's root") {
		t.Errorf("missing _config.yml: got %v", err)
	}
}

func TestRequireListsEveryMissingKey(t *testing.T) {
	c, err := LoadEnv(blog(t, ""), env())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Require("swap", "domain", "region", "boot")
	if err == nil {
		t.Fatal("want an error for missing domain and region")
	}
	for _, want := range []string{"swap needs domain", "DEPLOY_DOMAIN", "swap needs region", "DEPLOY_REGION"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "needs boot") {
		t.Errorf("boot has a default and must not be reported: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{"512": 512, "64MiB": 64 << 20, "1GiB": 1 << 30, "1G": 1 << 30, "2 TiB": 2 << 40, "4096B": 4096}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "GiB", "1PB", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) should fail", in)
		}
	}
}

func TestRenderHealthURL(t *testing.T) {
	got, err := RenderHealthURL(DefaultHealthURL, HealthTarget{PublicDNSName: "ec2-1.example.com"})
	if err != nil || got != "http://ec2-1.example.com/" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestKeysAreDocumented(t *testing.T) {
	for _, k := range Describe() {
		if k.Help == "" || k.set == nil || k.get == nil {
			t.Errorf("key %s lacks help, a parser or an emptiness check", k.Name)
		}
	}
}

func TestPrintShowsEveryKeyWithItsSource(t *testing.T) {
	c, err := LoadEnv(blog(t, "deploy:\n  ttl: 300\n"), env("DEPLOY_IMAGE_SIZE", "2048MiB"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Print(&b, c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, k := range Keys() {
		if !strings.Contains(out, k) {
			t.Errorf("%s missing from:\n%s", k, out)
		}
	}
	for _, want := range []string{"image_size          2GiB", "DEPLOY_IMAGE_SIZE", "ttl                 300", File} {
		if !strings.Contains(out, want) {
			t.Errorf("%q missing from:\n%s", want, out)
		}
	}
}

func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README.md's configuration table lacks %s", k)
		}
	}
}

func TestHostLayoutTargetsAndPaths(t *testing.T) {
	root := blog(t, "deploy:\n  mirage_target: none\n  host_kernel: kernels/debian\n  solo5_spt: /opam/bin/solo5-spt\n")
	c, err := LoadEnv(root, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Boot != BootHost || c.MirageTarget != MirageTargetNone || c.InstanceType != "t3.nano" {
		t.Errorf("boot %s target %s type %s; want host, none, t3.nano", c.Boot, c.MirageTarget, c.InstanceType)
	}
	// Relative paths are the blog's root's, as every other path here.
	if c.HostKernel != filepath.Join(root, "kernels/debian") || c.Solo5SPT != "/opam/bin/solo5-spt" {
		t.Errorf("host_kernel %s solo5_spt %s", c.HostKernel, c.Solo5SPT)
	}
	// none is the host layout's only: the others need a kernel.
	_, err = LoadEnv(blog(t, "deploy:\n  boot: uefi\n  mirage_target: none\n"), env())
	if err == nil || !strings.Contains(err.Error(), "cannot boot in a uefi image; use mirage_target: virtio") {
		t.Errorf("uefi with none: %v", err)
	}
	c, err = LoadEnv(blog(t, "deploy:\n  boot: uefi\n"), env())
	if err != nil || c.MirageTarget != "virtio" || c.InstanceType != "t3.micro" {
		t.Errorf("uefi defaults: %+v %v", c, err)
	}
}

// TestUnixTargetGoesWithAnyBoot: mirage_target: unix builds a kernel to run
// on this machine; no layout boots it, so no boot rules it out (the Image
// step refuses the kernel).
func TestUnixTargetGoesWithAnyBoot(t *testing.T) {
	for _, boot := range BootLayouts() {
		c, err := LoadEnv(blog(t, "deploy:\n  boot: "+boot+"\n"), env("DEPLOY_MIRAGE_TARGET", MirageTargetUnix))
		if err != nil || c.MirageTarget != MirageTargetUnix {
			t.Errorf("boot %s with DEPLOY_MIRAGE_TARGET=unix: %v, target %q", boot, err, c.MirageTarget)
		}
	}
}
