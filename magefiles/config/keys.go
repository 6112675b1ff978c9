package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// Key is one setting of the deploy: block.
type Key struct {
	Name string
	// Default as shown to people; defaultFor computes it where it depends on other keys.
	Default string
	Help    string

	defaultFn func(c *Config) string
	set       func(c *Config, v string) error
	get       func(c *Config) string // the value as text; "" when unset
}

func (k Key) defaultFor(c *Config) string {
	if k.defaultFn != nil {
		return k.defaultFn(c)
	}
	return k.Default
}

// DefaultHealthURL is a template over the candidate instance's fields.
const DefaultHealthURL = "http://{{.PublicDNSName}}/"

// DefaultHTTPSHealthURL is the gate's URL with https: the candidate's own
// address, spoken to as domain (SNI and Host).
const DefaultHTTPSHealthURL = "https://{{.PublicDNSName}}/"

// ACME directories. Staging issues untrusted certificates under far higher
// rate limits: the place to rehearse.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Boot layouts and what each one can boot. The Image step owns the layouts;
// this table only lets configuration errors surface before any work starts.
var bootTargets = map[string]struct {
	instanceType string
	targets      []string
}{
	// host boots a Linux cloud kernel that runs the unikernel under
	// solo5-spt, or with none serves the site itself; t3.nano is the
	// smallest Nitro type and plenty for either.
	BootHost:   {instanceType: "t3.nano", targets: []string{"spt", MirageTargetNone}},
	BootUEFI:   {instanceType: "t3.micro", targets: []string{"virtio"}},
	BootPVGrub: {instanceType: "t1.micro", targets: []string{"xen"}},
}

var (
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	siteRE         = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	domainLabelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostedZoneRE   = regexp.MustCompile(`^Z[A-Z0-9]{1,32}$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	akiRE          = regexp.MustCompile(`^aki-([0-9a-f]{8}|[0-9a-f]{17})$`)
	subnetRE       = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	emailRE        = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// checkFQDN accepts a lower-case fully qualified name without the final dot.
func checkFQDN(v string) error {
	labels := strings.Split(v, ".")
	if len(labels) < 2 || len(v) > 253 {
		return fmt.Errorf("%q is not a fully qualified domain name; use e.g. blog.example.com", v)
	}
	for _, l := range labels {
		if !domainLabelRE.MatchString(l) {
			return fmt.Errorf("%q has an invalid label %q; labels are letters, digits and inner hyphens", v, l)
		}
	}
	return nil
}

// splitList reads a comma- or space-separated list.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// ReadRoots reads a PEM bundle of CA certificates: acme_roots.
func ReadRoots(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v; point acme_roots at a PEM file of CA certificates, or leave it empty", path, err)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s holds a certificate that does not parse: %v; use a PEM file of CA certificates", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE block; point acme_roots at a PEM file of CA certificates", path)
	}
	return certs, nil
}

// ParseCertificates parses the PEM CERTIFICATE blocks in data, in order,
// skipping blocks of other types.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}

// TrustedRoots are the CAs trusted for the ACME server and the health
// gate: the system's and acme_roots.
func TrustedRoots(c *Config) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if c.ACMERoots != "" {
		certs, err := ReadRoots(c.ACMERoots)
		if err != nil {
			return nil, err
		}
		for _, x := range certs {
			pool.AddCert(x)
		}
	}
	return pool, nil
}

// keys in application order: a key's default may read keys before it.
var keys = []Key{
	optionalID("region", "(the AWS SDK's: AWS_REGION, then the profile)", "AWS region to deploy into",
		regionRE, "is not an AWS region name; use e.g. eu-west-1",
		func(c *Config) *string { return &c.Region }),
	{
		Name: "domain", Default: "",
		Help: "DNS name the blog is served at; its A record points at the site's Elastic IP, which Swap moves to the new instance",
		set: func(c *Config, v string) error {
			v = strings.TrimSuffix(strings.ToLower(v), ".")
			if v != "" {
				if err := checkFQDN(v); err != nil {
					return err
				}
			}
			c.Domain = v
			return nil
		},
		get: func(c *Config) string { return c.Domain },
	},
	{
		Name: "site", Default: "(domain, else the directory's name)",
		Help: "name tagged on every AWS resource of this blog; keep it stable",
		defaultFn: func(c *Config) string {
			if c.Domain != "" {
				return c.Domain
			}
			return strings.ToLower(filepath.Base(c.Root))
		},
		set: func(c *Config, v string) error {
			v = strings.ToLower(v)
			if !siteRE.MatchString(v) {
				return fmt.Errorf("%q must be 1-63 lower-case letters, digits, dots or hyphens; set deploy.site, e.g. site: myblog", v)
			}
			c.Site = v
			return nil
		},
		get: func(c *Config) string { return c.Site },
	},
	{
		Name: "hosted_zone_id", Default: "(found from domain)",
		Help:      "Route53 hosted zone holding domain; found by name when empty",
		defaultFn: func(*Config) string { return "" },
		set: func(c *Config, v string) error {
			v = strings.TrimPrefix(v, "/hostedzone/")
			if v != "" && !hostedZoneRE.MatchString(v) {
				return fmt.Errorf("%q is not a Route53 hosted zone id; use the id shown by aws route53 list-hosted-zones, e.g. Z0123456789ABCDEFGHIJ", v)
			}
			c.HostedZoneID = v
			return nil
		},
		get: func(c *Config) string { return c.HostedZoneID },
	},
	{
		Name: "boot", Default: BootHost,
		Help: "image layout: host (Linux cloud kernel running the site's server; today's EC2), uefi (GPT + GRUB EFI, multiboot kernel) or pvgrub (Amazon PV-GRUB, Xen PV kernel)",
		set: func(c *Config, v string) error {
			if _, ok := bootTargets[v]; !ok {
				return fmt.Errorf("%q is not a boot layout; use one of %s", v, strings.Join(BootLayouts(), ", "))
			}
			c.Boot = v
			return nil
		},
		get: func(c *Config) string { return c.Boot },
	},
	{
		Name: "instance_type", Default: "(t3.nano for host, t3.micro for uefi, t1.micro for pvgrub)",
		Help: "EC2 instance type to launch",
		defaultFn: func(c *Config) string {
			return bootTargets[c.Boot].instanceType
		},
		set: func(c *Config, v string) error {
			if !instanceTypeRE.MatchString(v) {
				return fmt.Errorf("%q is not an EC2 instance type; use e.g. t3.micro", v)
			}
			c.InstanceType = v
			return nil
		},
		get: func(c *Config) string { return c.InstanceType },
	},
	optionalID("subnet_id", "", "subnet Launch starts instances in (each gets a public IPv4 address for its health gate, asked for at launch); empty: the default VPC",
		subnetRE, "is not a subnet id; use one shown by aws ec2 describe-subnets, e.g. subnet-0123456789abcdef0",
		func(c *Config) *string { return &c.SubnetID }),
	{
		Name: "https", Default: "true",
		Help: "serve HTTPS on 443 with a Let's Encrypt certificate (ACME DNS-01 in the site's zone, the Cert step), HTTP redirecting to it; false keeps plain HTTP for local rehearsals",
		set: func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "true", "yes", "1":
				c.HTTPS = true
			case "false", "no", "0":
				c.HTTPS = false
			default:
				return fmt.Errorf("%q is neither true nor false; use https: true (the default) or https: false for a plain-HTTP rehearsal", v)
			}
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(c.HTTPS) },
	},
	{
		Name: "aliases", Default: "",
		Help: "other names of the blog, comma-separated (e.g. www.example.com): on the certificate, and redirected to domain",
		set: func(c *Config, v string) error {
			c.Aliases = nil
			for _, a := range splitList(v) {
				a = strings.TrimSuffix(strings.ToLower(a), ".")
				if err := checkFQDN(a); err != nil {
					return err
				}
				if a == c.Domain || slices.Contains(c.Aliases, a) {
					return fmt.Errorf("%q is listed twice (domain included); name each alias once", a)
				}
				c.Aliases = append(c.Aliases, a)
			}
			return nil
		},
		get: func(c *Config) string { return strings.Join(c.Aliases, ",") },
	},
	{
		Name: "acme_email", Default: "",
		Help: "contact address of the ACME account (Let's Encrypt no longer mails expiry notices; optional)",
		set: func(c *Config, v string) error {
			if v != "" && !emailRE.MatchString(v) {
				return fmt.Errorf("%q is not an e-mail address; use e.g. you@example.com, or leave it empty", v)
			}
			c.ACMEEmail = v
			return nil
		},
		get: func(c *Config) string { return c.ACMEEmail },
	},
	{
		Name: "acme_directory", Default: LetsEncryptProduction,
		Help: "ACME directory URL; Let's Encrypt's staging (untrusted certificates, generous limits) is " + LetsEncryptStaging,
		set: func(c *Config, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("%q is not an https URL; use %s, or %s for staging", v, LetsEncryptProduction, LetsEncryptStaging)
			}
			c.ACMEDirectory = v
			return nil
		},
		get: func(c *Config) string { return c.ACMEDirectory },
	},
	{
		Name: "acme_roots", Default: "",
		Help: "a PEM file of CA certificates trusted besides the system's, for the ACME server's TLS and the health gate (a test CA such as Pebble's)",
		set: func(c *Config, v string) error {
			p, err := configPath(c, v)
			if err != nil || p == "" {
				c.ACMERoots = p
				return err
			}
			if _, err := ReadRoots(p); err != nil {
				return err
			}
			c.ACMERoots = p
			return nil
		},
		get: func(c *Config) string { return c.ACMERoots },
	},
	{
		Name: "acme_resolvers", Default: "(the zone's authoritative servers)",
		Help:      "DNS servers (host or host:port, comma-separated) asked whether the challenge record is visible before validation is requested",
		defaultFn: func(*Config) string { return "" },
		set: func(c *Config, v string) error {
			c.ACMEResolvers = nil
			for _, r := range splitList(v) {
				host, port, err := net.SplitHostPort(r)
				if err != nil {
					host, port = r, "53"
				}
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" || strings.ContainsAny(host, "/ ") {
					return fmt.Errorf("%q is not a DNS server; use an address with an optional port, e.g. 9.9.9.9 or 127.0.0.1:5353", r)
				}
				c.ACMEResolvers = append(c.ACMEResolvers, net.JoinHostPort(host, port))
			}
			return nil
		},
		get: func(c *Config) string { return strings.Join(c.ACMEResolvers, ",") },
	},
	{
		Name: "hsts_max_age", Default: "31536000",
		Help: "Strict-Transport-Security max-age in seconds (or a duration like 8760h); 0 sends no HSTS header. Browsers keep it that long: lower it before turning https off",
		set: func(c *Config, v string) error {
			d, err := parseSecondsOrDuration(v)
			if err != nil {
				return err
			}
			if d < 0 || d > 2*365*24*time.Hour {
				return fmt.Errorf("%s is outside 0..2 years; use e.g. 31536000 (one year)", v)
			}
			c.HSTSMaxAge = int64(d / time.Second)
			return nil
		},
		get: func(c *Config) string { return strconv.FormatInt(c.HSTSMaxAge, 10) },
	},
	{
		Name: "mirage_target", Default: "(spt for host, virtio for uefi, xen for pvgrub)",
		Help: "target passed to mirage configure -t; none (boot: host only) builds no unikernel and the host serves the site itself; unix (any boot) builds _mirage/dist/blog to run on this machine, which no image carries",
		defaultFn: func(c *Config) string {
			if t := bootTargets[c.Boot].targets; len(t) > 0 {
				return t[0]
			}
			return ""
		},
		set: func(c *Config, v string) error {
			if v == MirageTargetUnix {
				c.MirageTarget = v
				return nil
			}
			if c.Boot == "" { // boot is invalid: accept any target some layout boots
				for _, l := range BootLayouts() {
					if slices.Contains(bootTargets[l].targets, v) {
						c.MirageTarget = v
						return nil
					}
				}
				return fmt.Errorf("%q is not a target any boot layout can boot; use spt or none (host), virtio (uefi) or xen (pvgrub); or unix to run the unikernel on this machine", v)
			}
			allowed := bootTargets[c.Boot].targets
			for _, t := range allowed {
				if v == t {
					c.MirageTarget = v
					return nil
				}
			}
			return fmt.Errorf("%q cannot boot in a %s image; use mirage_target: %s, or another boot layout (or unix to run the unikernel on this machine)", v, c.Boot, strings.Join(allowed, " or "))
		},
		get: func(c *Config) string { return c.MirageTarget },
	},
	{
		Name: "image_size", Default: "1GiB",
		Help: "size of the disk image and EBS volume (MiB multiple; 1GiB is the smallest EBS volume)",
		set: func(c *Config, v string) error {
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			const minSize, maxSize = 64 << 20, 16 << 40
			switch {
			case n%(1<<20) != 0:
				return fmt.Errorf("%s is not a whole number of MiB; use e.g. %dMiB", v, n>>20+1)
			case n < minSize:
				return fmt.Errorf("%s is below the 64MiB an image needs for its filesystem; use e.g. 1GiB", v)
			case n > maxSize:
				return fmt.Errorf("%s is above the 16TiB largest EBS volume", v)
			}
			c.ImageSize = n
			return nil
		},
		get: func(c *Config) string { return FormatSize(c.ImageSize) },
	},
	{
		Name: "max_file_size", Default: "20MiB",
		Help: "largest file a deploy publishes; a larger one stops the deploy (the host image holds the whole site in memory)",
		set: func(c *Config, v string) error {
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			if n < 1<<10 || n > 4<<30 {
				return fmt.Errorf("%s is outside 1KiB..4GiB; use e.g. 64MiB", v)
			}
			c.MaxFileSize = n
			return nil
		},
		get: func(c *Config) string { return FormatSize(c.MaxFileSize) },
	},
	{
		Name: "ttl", Default: "60",
		Help: "TTL of the DNS record (A to the site's Elastic IP, written once), in seconds or a duration like 5m",
		set: func(c *Config, v string) error {
			d, err := parseSecondsOrDuration(v)
			if err != nil {
				return err
			}
			if d < time.Second || d > 48*time.Hour {
				return fmt.Errorf("%s is outside 1s..48h; use e.g. 60", v)
			}
			c.TTL = int64(d / time.Second)
			return nil
		},
		get: func(c *Config) string { return strconv.FormatInt(c.TTL, 10) },
	},
	{
		Name: "health_url", Default: "(" + DefaultHTTPSHealthURL + "; " + DefaultHealthURL + " with https: false)",
		Help: "URL template polled before a new instance gets traffic; fields: .PublicDNSName .PublicIP .InstanceID. With https the gate connects to its host but speaks TLS for domain (SNI, certificate, Host)",
		defaultFn: func(c *Config) string {
			if c.HTTPS {
				return DefaultHTTPSHealthURL
			}
			return DefaultHealthURL
		},
		set: func(c *Config, v string) error {
			u, err := RenderHealthURL(v, HealthTarget{PublicDNSName: "ec2-203-0-113-1.compute-1.amazonaws.com", PublicIP: "203.0.113.1", InstanceID: "i-0123456789abcdef0"})
			if err != nil {
				return err
			}
			if c.HTTPS && !strings.HasPrefix(u, "https://") {
				return fmt.Errorf("%q is not https, but https is on: the gate must check the certificate the candidate serves; use e.g. %s (or https: false)", v, DefaultHTTPSHealthURL)
			}
			c.HealthURL = v
			return nil
		},
		get: func(c *Config) string { return c.HealthURL },
	},
	{
		Name: "health_timeout", Default: "5m",
		Help: "how long a new instance may take to serve the new build",
		set: func(c *Config, v string) error {
			d, err := parseSecondsOrDuration(v)
			if err != nil {
				return err
			}
			if d < time.Second || d > time.Hour {
				return fmt.Errorf("%s is outside 1s..1h; use e.g. 5m", v)
			}
			c.HealthTimeout = d
			return nil
		},
		get: func(c *Config) string { return c.HealthTimeout.String() },
	},
	{
		Name: "grace", Default: "2m",
		Help: "how long the instance a deploy replaces stays running for a quick rollback before it is terminated; 0 terminates it at once",
		set: func(c *Config, v string) error {
			d, err := parseSecondsOrDuration(v)
			if err != nil {
				return err
			}
			if d < 0 || d > 24*time.Hour {
				return fmt.Errorf("%s is outside 0..24h; use e.g. 2m", v)
			}
			c.Grace = d
			return nil
		},
		get: func(c *Config) string { return c.Grace.String() },
	},
	{
		Name: "lease_wait", Default: "20m",
		Help: "how long a deploy, rollback, prune or destroy waits for another run's deploy lease on the site before giving up",
		set: func(c *Config, v string) error {
			d, err := parseSecondsOrDuration(v)
			if err != nil {
				return err
			}
			if d < 0 || d > 24*time.Hour {
				return fmt.Errorf("%s is outside 0..24h; use e.g. 20m", v)
			}
			c.LeaseWait = d
			return nil
		},
		get: func(c *Config) string { return c.LeaseWait.String() },
	},
	wholeNumber("keep_images", "3", "AMIs kept by prune besides the live one, the rollback target and any an instance in its grace runs",
		1, 1000, func(c *Config) *int { return &c.KeepImages }),
	optionalID("pvgrub_kernel_id", "", "the region's Amazon PV-GRUB AKI (hd0 or hd00 variant) for boot: pvgrub",
		akiRE, "is not a kernel image id; use the aki-… id of Amazon's PV-GRUB for your region",
		func(c *Config) *string { return &c.PVGrubKernelID }),
	{
		Name: "pvgrub_root", Default: "hd0",
		Help: "hd0: filesystem on the whole disk (hd0 AKIs); hd00: one MBR partition (hd00 AKIs)",
		set: func(c *Config, v string) error {
			if v != "hd0" && v != "hd00" {
				return fmt.Errorf("%q must be hd0 or hd00, matching the PV-GRUB AKI's name", v)
			}
			c.PVGrubRoot = v
			return nil
		},
		get: func(c *Config) string { return c.PVGrubRoot },
	},
	wholeNumber("upload_concurrency", "64", "EBS snapshot blocks uploaded at once by Bake",
		1, 1024, func(c *Config) *int { return &c.UploadParallel }),
	{
		Name: "host_kernel", Default: DefaultHostKernel,
		Help: "for boot: host, an unpacked Linux kernel package (boot/vmlinuz-*, lib/modules/<version>/): Debian's linux-image-cloud-amd64 has EC2's drivers",
		set: func(c *Config, v string) error {
			p, err := configPath(c, v)
			if err != nil {
				return err
			}
			if p == "" {
				return fmt.Errorf("must name a directory; use e.g. %s (bash .ci/install unpacks Debian's cloud kernel there)", DefaultHostKernel)
			}
			c.HostKernel = p
			return nil
		},
		get: func(c *Config) string { return c.HostKernel },
	},
	{
		Name: "solo5_spt", Default: "(solo5-spt on PATH)",
		Help:      "for boot: host with mirage_target: spt, Solo5's tender from the opam switch that builds the unikernel, e.g. $(opam var bin)/solo5-spt",
		defaultFn: func(*Config) string { return "" },
		set: func(c *Config, v string) error {
			if strings.HasSuffix(v, "/") {
				return fmt.Errorf("%q names a directory; name the solo5-spt program, e.g. $(opam var bin)/solo5-spt", v)
			}
			p, err := configPath(c, v)
			if err != nil {
				return err
			}
			c.Solo5SPT = p
			return nil
		},
		get: func(c *Config) string { return c.Solo5SPT },
	},
}

// configPath resolves a path setting against the blog's root; "" stays "".
func configPath(c *Config, v string) (string, error) {
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' }) {
		return "", fmt.Errorf("%q contains control characters; use a plain path", v)
	}
	if v == "" {
		return "", nil
	}
	if filepath.IsAbs(v) {
		return filepath.Clean(v), nil
	}
	return filepath.Join(c.Root, v), nil
}

// optionalID is a key that is empty or an identifier matching re; the
// message completes "%q …" with what is wrong and the fix.
func optionalID(name, def, help string, re *regexp.Regexp, message string, field func(*Config) *string) Key {
	return Key{
		Name: name, Default: def, Help: help,
		defaultFn: func(*Config) string { return "" },
		set: func(c *Config, v string) error {
			if v != "" && !re.MatchString(v) {
				return fmt.Errorf("%q %s", v, message)
			}
			*field(c) = v
			return nil
		},
		get: func(c *Config) string { return *field(c) },
	}
}

// wholeNumber is a key holding a whole number from lo to hi.
func wholeNumber(name, def, help string, lo, hi int, field func(*Config) *int) Key {
	return Key{
		Name: name, Default: def, Help: help,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("%q must be a whole number from %d to %d", v, lo, hi)
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) },
	}
}

var keyIndex = func() map[string]Key {
	m := map[string]Key{}
	for _, k := range keys {
		m[k.Name] = k
	}
	return m
}()

// Keys lists the known key names in documentation order.
func Keys() []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return names
}

// Describe returns the keys with their defaults and help, for docs and mage -h.
func Describe() []Key { return append([]Key(nil), keys...) }

// BootLayouts lists the boot layouts in a stable order.
func BootLayouts() []string { return []string{BootHost, BootUEFI, BootPVGrub} }

// HealthTarget holds the fields health_url may use.
type HealthTarget struct {
	PublicDNSName string
	PublicIP      string
	InstanceID    string
}

// RenderHealthURL fills the health_url template and checks the result is an http(s) URL.
func RenderHealthURL(tmpl string, t HealthTarget) (string, error) {
	parsed, err := template.New("health_url").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid template: %v; use e.g. %s", tmpl, err, DefaultHealthURL)
	}
	var b bytes.Buffer
	if err := parsed.Execute(&b, t); err != nil {
		return "", fmt.Errorf("%q uses an unknown field: %v; fields are .PublicDNSName, .PublicIP, .InstanceID", tmpl, err)
	}
	u, err := url.Parse(b.String())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q does not give an http(s) URL (got %q); use e.g. %s", tmpl, b.String(), DefaultHealthURL)
	}
	return b.String(), nil
}

// ParseSize reads a byte count with an optional unit: 512, 64MiB, 1GiB, 1G (binary units).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size; use a whole number with an optional unit, e.g. 1GiB or 512MiB", s)
	}
	return n * mult, nil
}

func parseSecondsOrDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither seconds nor a duration; use e.g. 60 or 5m", s)
	}
	return d, nil
}

// Value returns a key's effective value as text, as Print shows it.
func (c *Config) Value(key string) string {
	k, ok := keyIndex[key]
	if !ok {
		panic("config.Value: unknown key " + key)
	}
	return k.get(c)
}

// FormatSize prints a byte count in the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Print writes every key, its value and where the value came from.
func Print(w io.Writer, c *Config) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
	for _, k := range keys {
		v := c.Value(k.Name)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Name, v, c.Source[k.Name])
	}
	return tw.Flush()
}
