// Package config reads the deploy: block of _config.yml, applies DEPLOY_<KEY>
// environment overrides and validates the result, reporting every problem at once.
//
// File values and environment values go through the same parser, so a value
// that works in one place works in the other.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// File is the Jekyll configuration file that also holds the deploy: block.
const File = "_config.yml"

// EnvPrefix starts every environment override: DEPLOY_HEALTH_URL overrides health_url.
const EnvPrefix = "DEPLOY_"

// Boot layouts an image can have.
const (
	BootHost   = "host"
	BootUEFI   = "uefi"
	BootPVGrub = "pvgrub"
)

// MirageTargetNone is mirage_target: none: no unikernel; the host layout
// serves the site with its own static server.
const MirageTargetNone = "none"

// MirageTargetUnix is mirage_target: unix, allowed with any boot: a kernel
// that runs as a process on the build machine (`_mirage/dist/blog --port
// 8080`), for trying the unikernel locally. No boot layout carries it; the
// Image step refuses it.
const MirageTargetUnix = "unix"

// DefaultHostKernel is where .ci/install unpacks Debian's cloud kernel.
const DefaultHostKernel = "/opt/blog-host-kernel"

// Config is the validated deploy configuration plus the repository paths.
type Config struct {
	Root string // repository root, absolute

	Region         string
	Site           string
	Domain         string
	HostedZoneID   string
	InstanceType   string
	Boot           string
	MirageTarget   string
	ImageSize      int64 // bytes
	MaxFileSize    int64 // bytes: the largest file a deploy publishes
	TTL            int64 // seconds
	HealthURL      string
	HealthTimeout  time.Duration
	KeepImages     int
	PVGrubKernelID string
	PVGrubRoot     string
	UploadParallel int
	HostKernel     string        // absolute path of an unpacked linux-image package
	Solo5SPT       string        // absolute path of solo5-spt; "" looks it up on PATH
	SubnetID       string        // subnet to launch into; "" is the default VPC
	HTTPS          bool          // serve HTTPS with an ACME certificate (the Cert step), and open TCP 443
	Grace          time.Duration // how long a replaced instance stays for a quick rollback
	LeaseWait      time.Duration // how long a run waits for another run's deploy lease

	// HTTPS settings (the Cert step, the host's server, the health gate).
	Aliases       []string // names that redirect to Domain; on the certificate too
	ACMEEmail     string   // the ACME account's contact; "" registers none
	ACMEDirectory string   // the ACME server's directory URL
	ACMERoots     string   // absolute path of a PEM bundle trusted besides the system's roots; "" none
	ACMEResolvers []string // host:port of the DNS servers asked whether the challenge is visible; nil: the zone's own
	HSTSMaxAge    int64    // Strict-Transport-Security max-age in seconds; 0 sends none

	// Source says where each key's value came from: "default", File or the
	// environment variable's name. Shown by help and in error messages.
	Source map[string]string
}

// SiteDir is where jekyll writes the site.
func (c *Config) SiteDir() string { return filepath.Join(c.Root, "_site") }

// BuildDir holds receipts, caches and build artifacts.
func (c *Config) BuildDir() string { return filepath.Join(c.Root, "_build") }

// Names are the names the certificate covers: Domain, then Aliases.
func (c *Config) Names() []string {
	if c.Domain == "" {
		return nil
	}
	return append([]string{c.Domain}, c.Aliases...)
}

// MirageDir holds the unikernel's sources.
func (c *Config) MirageDir() string { return filepath.Join(c.Root, "_mirage") }

// Problems is every validation failure found, each naming its fix.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return "config: " + p[0]
	}
	return fmt.Sprintf("config: %d problems:\n  - %s", len(p), strings.Join(p, "\n  - "))
}

// Load reads root/_config.yml and the environment. A missing deploy: block
// means all defaults; a missing file is an error (root is not the blog).
func Load(root string) (*Config, error) {
	return LoadEnv(root, os.LookupEnv)
}

// LoadEnv is Load with the environment supplied, for tests.
func LoadEnv(root string, lookup func(string) (string, bool)) (*Config, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("config: resolving %s: %w", root, err)
	}
	data, err := os.ReadFile(filepath.Join(abs, File))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w; run mage from the blog's root directory", File, err)
	}
	raw, err := deployBlock(data)
	if err != nil {
		return nil, err
	}
	return parse(abs, raw, lookup)
}

// deployBlock returns the scalar values of the deploy: mapping, as text.
func deployBlock(data []byte) (map[string]string, error) {
	var doc struct {
		Deploy yaml.Node `yaml:"deploy"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s is not valid YAML: %w", File, err)
	}
	raw := map[string]string{}
	n := &doc.Deploy
	if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return raw, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %s line %d: deploy: must be a mapping of key: value", File, n.Line)
	}
	var problems Problems
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			problems = append(problems, fmt.Sprintf("%s line %d: deploy.%s must be a single value, not a list or mapping", File, v.Line, k.Value))
			continue
		}
		if v.Tag == "!!null" {
			continue
		}
		raw[k.Value] = v.Value
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return raw, nil
}

func parse(root string, raw map[string]string, lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{Root: root, Source: map[string]string{}}
	var problems Problems

	for k := range raw {
		if _, ok := keyIndex[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s: unknown key deploy.%s%s; known keys: %s", File, k, suggest(k), strings.Join(Keys(), ", ")))
		}
	}
	// Keys are applied in order, so a default may depend on an earlier key
	// (instance_type and mirage_target follow boot).
	for _, k := range keys {
		value, source := "", "default"
		if v, ok := raw[k.Name]; ok {
			value, source = v, File
		}
		if v, ok := lookup(EnvVar(k.Name)); ok {
			value, source = v, EnvVar(k.Name)
		}
		if source == "default" {
			value = k.defaultFor(c)
		}
		c.Source[k.Name] = source
		if err := k.set(c, strings.TrimSpace(value)); err != nil {
			where := source
			if source == "default" {
				where = "the default"
			}
			problems = append(problems, fmt.Sprintf("%s (from %s): %v", k.Name, where, err))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, problems
	}
	return c, nil
}

// Require reports the keys a step needs that are still empty, all at once.
func (c *Config) Require(step string, names ...string) error {
	var p Problems
	for _, n := range names {
		k, ok := keyIndex[n]
		if !ok {
			panic("config.Require: unknown key " + n)
		}
		if k.get(c) == "" {
			p = append(p, fmt.Sprintf("%s needs %s: set deploy.%s in %s or %s (%s)", step, n, n, File, EnvVar(n), k.Help))
		}
	}
	if len(p) > 0 {
		return p
	}
	return nil
}

// EnvVar is the environment variable overriding key.
func EnvVar(key string) string { return EnvPrefix + strings.ToUpper(key) }

// suggest offers the closest known key for a misspelt one.
func suggest(k string) string {
	best, bestD := "", 3
	for _, known := range Keys() {
		if d := distance(k, known); d < bestD {
			best, bestD = known, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance, enough to catch typos in key names.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
