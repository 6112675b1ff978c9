// Package preflight checks, before a deploy starts anything, that it can
// finish: the tools each step runs, the configuration, the AWS credentials,
// the hosted zone of the domain, and the permissions of the calls that
// create and remove things (EC2 DryRun: DryRunOperation means allowed,
// UnauthorizedOperation denied). It prints a checklist, ✓ or ✗ per check with
// the fix for each failure.
//
// Local is the cheap part, no AWS call: `mage deploy` runs it first. Run is
// all of it: `mage preflight`.
package preflight

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
	"github.com/unikernel-blog/blog/magefiles/site"
	"github.com/unikernel-blog/blog/magefiles/unikernel"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// Check is one line of the checklist.
type Check struct {
	Name   string
	OK     bool
	Skip   bool   // not needed here, or not checkable yet; never stops a deploy
	Detail string // what was found
	Fix    string // how to put a failure right
}

// Report is the checklist, in the order the checks ran.
type Report struct {
	Checks []Check
}

func (r *Report) pass(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: detail})
}
func (r *Report) skip(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, Skip: true, Detail: detail})
}
func (r *Report) fail(name, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, Detail: detail, Fix: fix})
}

// Failed lists the checks that would stop a deploy.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK && !c.Skip {
			out = append(out, c)
		}
	}
	return out
}

// Find returns the check called name.
func (r *Report) Find(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Print writes the checklist: ✓ passed, ✗ failed (with its fix), - skipped.
func (r *Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		mark := "✗"
		switch {
		case c.Skip:
			mark = "-"
		case c.OK:
			mark = "✓"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, c.Name, c.Detail)
		if !c.OK && !c.Skip && c.Fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", c.Fix)
		}
	}
}

// Err is nil when nothing would stop a deploy, else names what would.
func (r *Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	for i, c := range failed {
		names[i] = c.Name
	}
	return fmt.Errorf("preflight: %d check(s) failed (%s); each has its fix in the checklist above", len(failed), strings.Join(names, ", "))
}

// Options say what to check. Config is the loaded configuration, or nil
// with ConfigErr saying why it did not load.
type Options struct {
	Config    *config.Config
	ConfigErr error
	// LookPath finds a program (default exec.LookPath); Getenv reads the
	// environment (default os.Getenv). Tests replace both.
	LookPath func(string) (string, error)
	Getenv   func(string) string
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

func (o *Options) defaults() {
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
}

// Check names.
const (
	CheckJekyll    = "jekyll"
	CheckUnikernel = "unikernel toolchain"
	CheckGrub      = "grub-mkstandalone"
	CheckKernel    = "host kernel"
	CheckQEMU      = "qemu (optional)"
	CheckConfig    = "configuration"
	CheckDomain    = "domain"
	CheckRegion    = "region"
	CheckCreds     = "credentials"
	CheckZone      = "hosted zone"
	CheckRecord    = "record"
	CheckList      = "read the site's resources"
)

// Local checks the tools and the configuration. It makes no AWS call.
func Local(ctx context.Context, opts Options) (*Report, aws.Config) {
	opts.defaults()
	r := &Report{}
	c := opts.Config
	tools(r, c, opts)
	if opts.ConfigErr != nil || c == nil {
		detail := "not loaded"
		if opts.ConfigErr != nil {
			detail = opts.ConfigErr.Error()
		}
		r.fail(CheckConfig, detail, "fix each value named in "+config.File+" or its "+config.EnvPrefix+"<KEY> variable; `mage config` shows every setting and where it came from")
		return r, aws.Config{}
	}
	r.pass(CheckConfig, fmt.Sprintf("%s is valid (site %s, boot %s, mirage_target %s)", config.File, c.Site, c.Boot, c.MirageTarget))
	if err := c.Require("deploy", "domain"); err != nil {
		r.fail(CheckDomain, "not set", fmt.Sprintf("set deploy.domain in %s or %s, e.g. blog.example.com: its A record points at the site's Elastic IP, which Swap moves to each new instance", config.File, config.EnvVar("domain")))
	} else {
		r.pass(CheckDomain, c.Domain)
	}
	if c.Boot == config.BootPVGrub {
		if err := c.Require("deploy (boot: pvgrub)", "pvgrub_kernel_id"); err != nil {
			r.fail("pvgrub_kernel_id", "not set", err.Error())
		} else {
			r.pass("pvgrub_kernel_id", c.PVGrubKernelID)
		}
	}
	awsCfg, err := awscfg.Load(ctx, c, "preflight", opts.AWSOptions...)
	if err != nil {
		r.fail(CheckRegion, err.Error(), fmt.Sprintf("set deploy.region in %s, %s or AWS_REGION (or a region in the AWS profile)", config.File, config.EnvVar("region")))
		return r, aws.Config{}
	}
	r.pass(CheckRegion, awsCfg.Region)
	return r, awsCfg
}

func tools(r *Report, c *config.Config, opts Options) {
	root := "." // an invalid configuration still gets its tools checked
	if c != nil {
		root = c.Root
	}
	jekyll, why := site.JekyllCommand(root, opts.Getenv("JEKYLL"), opts.LookPath)
	if p, err := opts.LookPath(jekyll[0]); err != nil {
		r.fail(CheckJekyll, jekyll[0]+" not found on PATH ("+why+")", site.InstallJekyll+" (bash .ci/install does)")
	} else {
		r.pass(CheckJekyll, p+" ("+why+")")
	}
	if c == nil {
		return
	}
	switch u := opts.Getenv("UNIKERNEL"); {
	case c.MirageTarget == config.MirageTargetNone:
		r.pass(CheckUnikernel, "not needed: mirage_target: none (the host image serves _site itself)")
	case u != "":
		if fi, err := os.Stat(u); err != nil || fi.IsDir() {
			r.fail(CheckUnikernel, "UNIKERNEL="+u+" is not a file", "point UNIKERNEL at a built kernel, or unset it to build one with mirage")
		} else {
			r.pass(CheckUnikernel, "prebuilt kernel UNIKERNEL="+u)
		}
	default:
		if p, err := opts.LookPath("mirage"); err != nil {
			fix := "install Mirage (opam install '" + unikernel.OpamConstraint() + "'), or set UNIKERNEL=/path/to/kernel"
			if c.Boot == config.BootHost {
				fix += ", or set deploy.mirage_target: none (the host image then serves the site with its own server)"
			}
			r.fail(CheckUnikernel, "mirage not found on PATH (mirage_target "+c.MirageTarget+")", fix)
		} else if _, err := opts.LookPath("make"); err != nil {
			r.fail(CheckUnikernel, "make not found on PATH (mirage builds with make depend and make build)", "apt-get install make")
		} else {
			r.pass(CheckUnikernel, p)
		}
	}
	if c.Boot == config.BootHost || c.Boot == config.BootUEFI {
		if p, err := opts.LookPath("grub-mkstandalone"); err != nil {
			r.fail(CheckGrub, "not found on PATH (boot: "+c.Boot+" needs it)", "apt-get install grub-efi-amd64-bin")
		} else {
			r.pass(CheckGrub, p)
		}
	}
	if c.Boot == config.BootHost {
		kernels, _ := filepath.Glob(filepath.Join(c.HostKernel, "boot", "vmlinuz-*"))
		if len(kernels) == 0 {
			r.fail(CheckKernel, "no boot/vmlinuz-* under "+c.HostKernel, "bash .ci/host-kernel unpacks Debian's cloud kernel (linux-image-cloud-amd64's, pinned) to "+config.DefaultHostKernel+", or set deploy.host_kernel to an unpacked kernel package")
		} else {
			r.pass(CheckKernel, kernels[len(kernels)-1])
		}
	}
	if p, err := opts.LookPath("qemu-system-x86_64"); err != nil {
		r.skip(CheckQEMU, "not found; only `mage run` needs it (apt-get install qemu-system-x86 ovmf)")
	} else {
		r.pass(CheckQEMU, p)
	}
}
