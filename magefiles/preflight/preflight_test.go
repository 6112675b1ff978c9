package preflight_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/preflight"
)

// setup is a set-up that passes: every tool found, a valid host-layout
// configuration, credentials, a zone for the domain and, when resources is
// set, an AMI, a snapshot and an instance of the site for the DryRun probes.
type setup struct {
	h     *awsharness.Harness
	c     *config.Config
	tools map[string]bool
	env   map[string]string
}

func newSetup(t *testing.T, resources bool) *setup {
	t.Helper()
	h := awsharness.Start(t, awsharness.Options{})
	base := awsharness.UniqueName("pf") + ".example"
	if _, err := h.Route53(t).CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String(base), CallerReference: aws.String(base)}); err != nil {
		t.Fatal(err)
	}
	c := fleettest.Config(t, "www."+base, nil)
	c.Boot, c.MirageTarget, c.HostKernel = config.BootHost, "spt", t.TempDir()
	if err := os.MkdirAll(filepath.Join(c.HostKernel, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.HostKernel, "boot", "vmlinuz-6.1.0-cloud-amd64"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if resources {
		b := fleettest.Bake(t, h, c, "build1")
		siteTag := []types.Tag{{Key: aws.String(fleet.TagSite), Value: aws.String(c.Site)}}
		sg, err := h.EC2(t).CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{GroupName: aws.String(fleet.SecurityGroupName(c.Site)), Description: aws.String("test"),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup, Tags: siteTag}}})
		if err != nil {
			t.Fatal(err)
		}
		run, err := h.EC2(t).RunInstances(context.Background(), &ec2.RunInstancesInput{SecurityGroupIds: []string{aws.ToString(sg.GroupId)},
			ImageId: aws.String(b.ImageID), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: types.InstanceTypeT3Micro,
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: siteTag}},
		})
		if err != nil {
			t.Fatal(err)
		}
		// EC2 lists a new instance only after a moment: wait, as a user would.
		if err := ec2.NewInstanceRunningWaiter(h.EC2(t), func(o *ec2.InstanceRunningWaiterOptions) {
			o.MinDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
		}).
			Wait(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(run.Instances[0].InstanceId)}}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	h.Calls.Reset()
	return &setup{h: h, c: c, env: map[string]string{},
		tools: map[string]bool{"jekyll": true, "mirage": true, "make": true, "grub-mkstandalone": true, "qemu-system-x86_64": true}}
}

func (s *setup) opts() preflight.Options {
	return preflight.Options{
		Config: s.c,
		LookPath: func(name string) (string, error) {
			if s.tools[name] {
				return "/usr/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		},
		Getenv: func(k string) string { return s.env[k] },
	}
}

func printed(r *preflight.Report) string {
	var b bytes.Buffer
	r.Print(&b)
	return b.String()
}

// wantFailed checks that exactly the named check failed, with its fix.
func wantFailed(t *testing.T, r *preflight.Report, name, fix string) {
	t.Helper()
	failed := r.Failed()
	if len(failed) != 1 || failed[0].Name != name || !strings.Contains(failed[0].Fix, fix) {
		t.Fatalf("failed %+v, want only %q with a fix naming %q:\n%s", failed, name, fix, printed(r))
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("Err() = %v, want it to name %q", err, name)
	}
	if out := printed(r); !strings.Contains(out, "✗ "+name+": ") || !strings.Contains(out, "    fix: "+failed[0].Fix) {
		t.Fatalf("checklist does not show the failure and its fix:\n%s", out)
	}
}

func TestGoodSetupPasses(t *testing.T) {
	s := newSetup(t, true)
	r := preflight.Run(context.Background(), s.opts())
	out := printed(r)
	if err := r.Err(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"✓ jekyll", "✓ unikernel toolchain", "✓ grub-mkstandalone", "✓ host kernel", "✓ configuration", "✓ domain", "✓ region: " + awsharness.Region,
		"✓ credentials: account ", " as arn:", "✓ hosted zone: ", "✓ record: www.", "no record yet",
		"✓ permission ec2:RunInstances: allowed", "✓ permission ec2:CreateSecurityGroup", "✓ permission ec2:TerminateInstances",
		"✓ permission ec2:RegisterImage", "✓ permission ec2:DeregisterImage", "✓ permission ec2:DeleteSnapshot", "✓ permission ec2:CreateTags",
		"✓ permission ec2:AllocateAddress"} {
		if !strings.Contains(out, want) {
			t.Errorf("checklist lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")} {
		if strings.Contains(out, secret) {
			t.Errorf("checklist shows a credential:\n%s", out)
		}
	}
	// Every probe was a dry run: nothing was created or removed.
	for _, c := range s.h.Calls.Calls() {
		switch c.Operation {
		case "RunInstances", "CreateSecurityGroup", "TerminateInstances", "RegisterImage", "DeregisterImage", "DeleteSnapshot", "CreateTags", "AllocateAddress":
			if c.Fault != "" {
				t.Errorf("%s hit a fault", c)
			}
		}
	}
	if insts, amis, snaps := fleettest.Leftovers(t, s.h, s.c.Site); len(insts) != 1 || len(amis) != 1 || len(snaps) != 1 {
		t.Fatalf("preflight changed the site: instances %v AMIs %v snapshots %v", insts, amis, snaps)
	}
}

func TestANewSiteSkipsWhatItCannotProbeYet(t *testing.T) {
	s := newSetup(t, false)
	r := preflight.Run(context.Background(), s.opts())
	if err := r.Err(); err != nil {
		t.Fatalf("%v\n%s", err, printed(r))
	}
	if c, _ := r.Find("permission ec2:RunInstances"); !c.Skip || !strings.Contains(c.Detail, "no AMI") {
		t.Fatalf("RunInstances on a new site: %+v", c)
	}
	if c, _ := r.Find("permission ec2:CreateSecurityGroup"); !c.OK {
		t.Fatalf("CreateSecurityGroup on a new site: %+v", c)
	}
}

func TestEachMissingToolFailsWithItsFix(t *testing.T) {
	for _, tc := range []struct {
		tool, check, fix string
	}{
		{"jekyll", preflight.CheckJekyll, "apt-get install jekyll"},
		{"mirage", preflight.CheckUnikernel, "mirage_target: none"},
		{"make", preflight.CheckUnikernel, "apt-get install make"},
		{"grub-mkstandalone", preflight.CheckGrub, "grub-efi-amd64-bin"},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			s := newSetup(t, false)
			delete(s.tools, tc.tool)
			r, _ := preflight.Local(context.Background(), s.opts())
			wantFailed(t, r, tc.check, tc.fix)
			if calls := s.h.Calls.Calls(); len(calls) != 0 {
				t.Fatalf("the local checks called AWS: %v", calls)
			}
		})
	}
	t.Run("host kernel", func(t *testing.T) {
		s := newSetup(t, false)
		s.c.HostKernel = t.TempDir()
		r, _ := preflight.Local(context.Background(), s.opts())
		wantFailed(t, r, preflight.CheckKernel, "bash .ci/host-kernel")
	})
	t.Run("UNIKERNEL names no file", func(t *testing.T) {
		s := newSetup(t, false)
		s.env["UNIKERNEL"] = filepath.Join(t.TempDir(), "missing.hvt")
		r, _ := preflight.Local(context.Background(), s.opts())
		wantFailed(t, r, preflight.CheckUnikernel, "UNIKERNEL")
	})
	t.Run("ways without mirage", func(t *testing.T) {
		s := newSetup(t, false)
		delete(s.tools, "mirage")
		delete(s.tools, "qemu-system-x86_64") // optional
		kernel := filepath.Join(t.TempDir(), "blog.spt")
		if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.env["UNIKERNEL"] = kernel
		if r, _ := preflight.Local(context.Background(), s.opts()); r.Err() != nil {
			t.Fatalf("UNIKERNEL set: %v\n%s", r.Err(), printed(r))
		}
		delete(s.env, "UNIKERNEL")
		s.c.MirageTarget = config.MirageTargetNone
		if r, _ := preflight.Local(context.Background(), s.opts()); r.Err() != nil {
			t.Fatalf("mirage_target none: %v\n%s", r.Err(), printed(r))
		}
	})
	t.Run("JEKYLL command", func(t *testing.T) {
		s := newSetup(t, false)
		delete(s.tools, "jekyll")
		s.tools["bundle"] = true
		s.env["JEKYLL"] = "bundle exec jekyll"
		if r, _ := preflight.Local(context.Background(), s.opts()); r.Err() != nil {
			t.Fatalf("JEKYLL=bundle exec jekyll: %v\n%s", r.Err(), printed(r))
		}
	})
}

func TestBadSettingsFailWithTheirFix(t *testing.T) {
	t.Run("invalid configuration", func(t *testing.T) {
		s := newSetup(t, false)
		o := s.opts()
		o.Config, o.ConfigErr = nil, config.Problems{"ttl (from _config.yml): \"soon\" is neither seconds nor a duration; use e.g. 60 or 5m"}
		r := preflight.Run(context.Background(), o)
		wantFailed(t, r, preflight.CheckConfig, "mage config")
		if c, _ := r.Find(preflight.CheckConfig); !strings.Contains(c.Detail, "ttl") {
			t.Fatalf("the configuration check does not say what is wrong: %+v", c)
		}
		if calls := s.h.Calls.Calls(); len(calls) != 0 {
			t.Fatalf("AWS was called with a broken configuration: %v", calls)
		}
	})
	t.Run("no domain", func(t *testing.T) {
		s := newSetup(t, false)
		s.c.Domain = ""
		wantFailed(t, preflight.Run(context.Background(), s.opts()), preflight.CheckDomain, "deploy.domain")
	})
	t.Run("no region", func(t *testing.T) {
		s := newSetup(t, false)
		s.c.Region = ""
		t.Setenv("AWS_REGION", "")
		r := preflight.Run(context.Background(), s.opts())
		wantFailed(t, r, preflight.CheckRegion, "deploy.region")
		if calls := s.h.Calls.Calls(); len(calls) != 0 {
			t.Fatalf("AWS was called without a region: %v", calls)
		}
	})
}

func TestMissingZoneFails(t *testing.T) {
	s := newSetup(t, false)
	s.c.Domain = "www." + awsharness.UniqueName("nozone") + ".example"
	wantFailed(t, preflight.Run(context.Background(), s.opts()), preflight.CheckZone, "create a public hosted zone")
}

func TestBadCredentialsFail(t *testing.T) {
	s := newSetup(t, false)
	s.h.Faults.Add(awsharness.Fault{Service: "sts", Operation: "GetCallerIdentity", Kind: awsharness.Error, Rate: 1, Code: "InvalidClientTokenId", Status: 403})
	r := preflight.Run(context.Background(), s.opts())
	wantFailed(t, r, preflight.CheckCreds, "AWS_PROFILE")
	if c, _ := r.Find(preflight.CheckCreds); !strings.Contains(c.Detail, "InvalidClientTokenId") {
		t.Fatalf("credentials check: %+v", c)
	}
}

func TestDeniedPermissionFails(t *testing.T) {
	s := newSetup(t, true)
	for _, action := range []string{"ec2:RunInstances", "ec2:CreateSecurityGroup", "ec2:RegisterImage", "ec2:CreateTags", "ec2:TerminateInstances", "ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:AllocateAddress"} {
		t.Run(action, func(t *testing.T) {
			s.h.Faults.Clear()
			s.h.Deny(action)
			r := preflight.Run(context.Background(), s.opts())
			wantFailed(t, r, "permission "+action, "mage policy")
			if c, _ := r.Find("permission " + action); !strings.Contains(c.Detail, "UnauthorizedOperation") {
				t.Fatalf("%+v", c)
			}
		})
	}
	s.h.Faults.Clear()
	s.h.Deny("route53:ListHostedZones")
	wantFailed(t, preflight.Run(context.Background(), s.opts()), preflight.CheckZone, "hosted zone")
	s.h.Faults.Clear()
	s.h.Deny("ec2:DescribeInstances")
	r := preflight.Run(context.Background(), s.opts())
	wantFailed(t, r, preflight.CheckList, "mage policy")
	if c, _ := r.Find(preflight.CheckList); !strings.Contains(c.Detail, "UnauthorizedOperation") {
		t.Fatalf("%+v", c)
	}
}
