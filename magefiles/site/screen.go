package site

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// DefaultMaxFileSize is the largest file a deploy publishes unless
// deploy.max_file_size says otherwise. The host image holds the whole site in
// memory (a t3.nano has 512 MiB) and a unikernel carries it in its binary;
// photos and PDFs fit, a stray build output or a video does not.
const DefaultMaxFileSize = 20 << 20

// The secret shapes, after gitleaks' rules (config/gitleaks.toml:
// private-key, aws-access-token) narrowed to what can be told without
// guessing: a private key's armour with a body, an AWS access key id, and an
// AWS secret key written as an assignment. AWS's documentation examples
// (…EXAMPLE, …EXAMPLEKEY) are allowed, as gitleaks allows them.
var (
	privateKey   = regexp.MustCompile(`-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]{64,}?KEY(?: BLOCK)?-----`)
	awsKeyID     = regexp.MustCompile(`\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`)
	awsSecretKey = regexp.MustCompile(`(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})\b`)
)

// Finding is a published file that must not be.
type Finding struct {
	Path   string
	Reason string
}

// envFile reports .env-style names: .env, .env.production, prod.env.
func envFile(name string) bool {
	base := path.Base(name)
	return base == ".env" || strings.HasPrefix(base, ".env.") || strings.HasSuffix(base, ".env")
}

// screenSize flags a file over the limit.
func screenSize(p string, size, limit int64) *Finding {
	if size > limit {
		return &Finding{Path: p, Reason: fmt.Sprintf("is %.1f MiB, over the %s limit (deploy.max_file_size)", float64(size)/(1<<20), config.FormatSize(limit))}
	}
	return nil
}

// screenContent flags a file that looks like a secret, by name or content.
func screenContent(p string, data []byte) *Finding {
	if envFile(p) {
		return &Finding{Path: p, Reason: "is a .env-style file, which holds secrets"}
	}
	if privateKey.Match(data) {
		return &Finding{Path: p, Reason: "holds a private key"}
	}
	for _, m := range awsKeyID.FindAll(data, -1) {
		if !strings.HasSuffix(string(m), "EXAMPLE") {
			return &Finding{Path: p, Reason: "holds an AWS access key id (" + string(m[:4]) + "…)"}
		}
	}
	for _, m := range awsSecretKey.FindAllSubmatch(data, -1) {
		if !strings.Contains(string(m[1]), "EXAMPLE") {
			return &Finding{Path: p, Reason: "holds an AWS secret access key"}
		}
	}
	return nil
}

// findingsError says what stops the deploy, each file with its reason, and
// the fix.
func findingsError(fs []Finding) error {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  %s %s", f.Path, f.Reason)
	}
	return fmt.Errorf("site: the deploy would publish files that must not be:%s\n"+
		"fix: remove each from the blog (`git rm --cached PATH`, commit, and rotate any secret: it stays in git's history), "+
		"or list it under exclude: in %s if it must stay in the repository; "+
		"a file that is large on purpose fits once deploy.max_file_size is raised (e.g. max_file_size: 64MiB)", b.String(), config.File)
}
