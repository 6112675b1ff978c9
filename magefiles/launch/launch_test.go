package launch_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

func quietLog() (*logrus.Entry, *test.Hook) {
	l, hook := test.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return l.WithField("step", "launch"), hook
}

func opts(c *config.Config, log *logrus.Entry) launch.Options {
	return launch.Options{Config: c, Log: log, HealthPoll: 10 * time.Millisecond, WaitDelay: 10 * time.Millisecond}
}

func TestLaunchStartsAHealthyTaggedCandidate(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	b := fleettest.Bake(t, h, c, "build1")
	log, _ := quietLog()
	ctx := context.Background()

	r, err := launch.Launch(ctx, opts(c, log))
	if err != nil {
		t.Fatal(err)
	}
	if r.ImageID != b.ImageID || r.BuildID != "build1" || r.AlreadyLive || r.Adopted {
		t.Fatalf("receipt %+v, want a new instance of %s", r, b.ImageID)
	}
	if r.PublicDNSName == "" || r.PublicIP == "" {
		t.Fatalf("receipt has no public address: %+v", r)
	}
	got, err := launch.ReadReceipt(c.BuildDir())
	if err != nil || got.InstanceID != r.InstanceID {
		t.Fatalf("receipt on disk %+v, %v", got, err)
	}
	in, found, err := fleet.DescribeInstance(ctx, h.EC2(t), r.InstanceID)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if in.Role != fleet.RoleCandidate || in.BuildID != "build1" || in.ImageDigest != b.ImageDigest || in.Commit != "c0ffeebuild1" {
		t.Fatalf("instance tags: %+v", in)
	}

	// The security group lets in TCP 80 from anywhere and nothing else.
	sgs, err := h.EC2(t).DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{r.SecurityGroupID}})
	if err != nil || len(sgs.SecurityGroups) != 1 {
		t.Fatal(sgs, err)
	}
	perms := sgs.SecurityGroups[0].IpPermissions
	if len(perms) != 1 || aws.ToInt32(perms[0].FromPort) != 80 || aws.ToInt32(perms[0].ToPort) != 80 || aws.ToString(perms[0].IpProtocol) != "tcp" {
		t.Fatalf("ingress rules %+v, want only tcp/80", perms)
	}

	// A second launch of the same build adopts the candidate: nothing new runs.
	runs := h.Calls.Count("ec2", "RunInstances")
	r2, err := launch.Launch(ctx, opts(c, log))
	if err != nil {
		t.Fatal(err)
	}
	if r2.InstanceID != r.InstanceID || !r2.Adopted || h.Calls.Count("ec2", "RunInstances") != runs {
		t.Fatalf("second launch %+v (RunInstances %d → %d), want the same instance adopted", r2, runs, h.Calls.Count("ec2", "RunInstances"))
	}
	if insts, _, _ := fleettest.Leftovers(t, h, c.Site); len(insts) != 1 {
		t.Fatalf("instances %v, want one", insts)
	}
}

func TestLaunchFailedGateTerminatesTheCandidateAndLogsTheConsole(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		serves string
		want   string
	}{
		{"503", http.StatusServiceUnavailable, "", "HTTP 503"},
		{"old build", http.StatusOK, "build0", `build "build0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := awsharness.Start(t, awsharness.Options{})
			builds := h.StartBuildServer(t)
			c := fleettest.Config(t, "blog.example.com", builds)
			c.HealthTimeout = 200 * time.Millisecond
			fleettest.Bake(t, h, c, "build1")
			builds.Break("build1", tc.status, tc.serves)
			var started string
			h.Calls.OnCall(func(call awsharness.Call) {
				if call.Operation == "GetConsoleOutput" {
					ids, _ := h.Model.InstancesTagged(context.Background(), fleet.TagSite, c.Site)
					if len(ids) == 1 {
						started = ids[0]
						h.Model.SetConsoleOutput(ids[0], "GRUB loading\nsolo5: bindings: xen\nno network: dhcp timed out\n")
					}
				}
			})
			log, hook := quietLog()
			_, err := launch.Launch(context.Background(), opts(c, log))
			if !errors.Is(err, launch.ErrUnhealthy) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mage run") {
				t.Fatalf("err = %v, want a failed gate naming %q and the fix", err, tc.want)
			}
			if insts, _, _ := fleettest.Leftovers(t, h, c.Site); len(insts) != 0 {
				t.Fatalf("candidates left running: %v", insts)
			}
			if started == "" {
				t.Fatal("the console output was never read")
			}
			var console bool
			for _, e := range hook.AllEntries() {
				if e.Message == "console: no network: dhcp timed out" {
					console = true
				}
			}
			if !console {
				t.Fatal("the console output was not logged")
			}
		})
	}
}

func TestLaunchCancelledTerminatesTheCandidate(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	c.HealthTimeout = time.Minute
	fleettest.Bake(t, h, c, "build1")
	builds.Break("build1", http.StatusServiceUnavailable, "") // never healthy: the run waits until cancelled
	ctx, cancel := context.WithCancel(context.Background())
	h.Calls.OnCall(func(call awsharness.Call) {
		if call.Operation == "DescribeInstances" && h.Calls.Count("ec2", "RunInstances") > 0 {
			time.AfterFunc(50*time.Millisecond, cancel)
		}
	})
	log, _ := quietLog()
	_, err := launch.Launch(ctx, opts(c, log))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want cancelled", err)
	}
	if insts, _, _ := fleettest.Leftovers(t, h, c.Site); len(insts) != 0 {
		t.Fatalf("a cancelled launch left %v running", insts)
	}
}

func TestLaunchValidatesBeforeAnyCall(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c := fleettest.Config(t, "blog.example.com", nil)
	c.HealthURL = "ftp://{{.PublicDNSName}}/"
	c.InstanceType = ""
	log, _ := quietLog()
	o := opts(c, log)
	c.SubnetID = "vpc-123"
	_, err := launch.Launch(context.Background(), o)
	var p config.Problems
	if !errors.As(err, &p) || len(p) != 3 {
		t.Fatalf("err = %v, want three problems", err)
	}
	if n := len(h.Calls.Calls()); n != 0 {
		t.Fatalf("%d AWS calls made before validation failed", n)
	}
}

func TestLaunchNoAMI(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	c := fleettest.Config(t, "blog.example.com", nil)
	fleettest.WriteBakeReceipt(t, c, fleettest.Build{ImageID: "ami-0123456789abcdef0", ImageDigest: strings.Repeat("ab", 32)})
	log, _ := quietLog()
	_, err := launch.Launch(context.Background(), opts(c, log))
	if err == nil || !strings.Contains(err.Error(), "mage bake") {
		t.Fatalf("err = %v, want the fix: mage bake", err)
	}
	if h.Calls.Count("ec2", "RunInstances") != 0 {
		t.Fatal("RunInstances called without an AMI")
	}
}

// TestTheGateReadsTheBuildFromTheInstance: an AMI whose tags name one build
// but whose image holds another (a wrong build baked) fails the gate: the
// stand-in for the booted instance serves what the image holds, not what
// the tags say.
func TestTheGateReadsTheBuildFromTheInstance(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	c.HealthTimeout = 100 * time.Millisecond
	fleettest.WriteImage(t, c, "build1")
	// The image receipt says build2: Bake tags the AMI build2, but the disk holds build1.
	var ir image.Receipt
	if ok, err := receipt.Read(c.BuildDir(), image.ReceiptName, &ir); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ir.BuildID = "build2"
	if err := receipt.Write(c.BuildDir(), image.ReceiptName, &ir); err != nil {
		t.Fatal(err)
	}
	log, _ := quietLog()
	if _, err := bake.Bake(context.Background(), bake.Options{Config: c, Log: log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	_, err := launch.Launch(context.Background(), opts(c, log))
	if !errors.Is(err, launch.ErrUnhealthy) || !strings.Contains(err.Error(), `build "build1"`) {
		t.Fatalf("err = %v, want a failed gate: the instance serves build1, not build2", err)
	}
}

// TestLaunchAsksForAPublicAddress launches into a subnet that maps no
// public IPv4 address: the candidate has one all the same (asked for at
// launch), and passes its gate on it.
func TestLaunchAsksForAPublicAddress(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	c.HealthURL = config.DefaultHealthURL // the gate needs the instance's public name
	ctx := context.Background()
	x := h.EC2(t)
	vpc, err := x.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.3.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := x.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.3.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	c.SubnetID = aws.ToString(sub.Subnet.SubnetId)
	fleettest.Bake(t, h, c, "build1")
	log, _ := quietLog()
	o := opts(c, log)
	// health_url's host is the instance's public name: the stand-in answers
	// on the public address the instance holds, as the internet would.
	o.HTTPClient = builds.Client()
	r, err := launch.Launch(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.PublicIP == "" || r.PublicIP != h.Model.InstanceAddress(r.InstanceID) {
		t.Fatalf("candidate %s has public address %q, want the one EC2 gave it", r.InstanceID, r.PublicIP)
	}
}
