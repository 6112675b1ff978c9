// Package launch starts an instance from the baked AMI and holds it back
// until it proves it serves the new build: the candidate of a blue/green
// deploy. Swap (magefiles/swap) then sends the traffic to it.
//
// The recipe (Launch): validate locally; find the AMI (Options.Target, or
// the one in Bake's receipt _build/bake.json, confirmed in AWS); if an instance of this
// image is live already, stop there; adopt a candidate an interrupted run
// left, or else ensure the security group and RunInstances with a client
// token derived from the build, tagged at creation; wait until running;
// poll health_url until it serves the build id. A gate that fails logs the
// console output and terminates the candidate. Whatever this run started is
// terminated again on error or Ctrl-C.
package launch

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "launch"

const (
	// consoleLines is how much of the console output a failed gate logs.
	consoleLines = 40
	// maxTokenAttempts bounds the client tokens tried for one launch.
	// EC2 keeps a token for at least 24 h after the instance it started is
	// terminated and answers a reuse with that dead instance, so each failed
	// launch of the same build moves to the next token.
	maxTokenAttempts = 32
)

// Receipt records the candidate: _build/launch.json.
type Receipt struct {
	InstanceID      string  `json:"instance_id"`
	ImageID         string  `json:"image_id"`
	ImageDigest     string  `json:"image_digest"`
	BuildID         string  `json:"build_id"`
	Commit          string  `json:"commit"`
	PublicDNSName   string  `json:"public_dns_name"`
	PublicIP        string  `json:"public_ip"`
	SecurityGroupID string  `json:"security_group_id,omitempty"`
	HealthURL       string  `json:"health_url"`
	AlreadyLive     bool    `json:"already_live"` // the build's instance was live already: nothing launched
	Adopted         bool    `json:"adopted"`      // started by an earlier run, health-checked by this one
	Seconds         float64 `json:"seconds"`
}

// ReadReceipt loads _build/launch.json; it fails with the fix when Launch has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "launch", "no candidate launched", "run `mage launch`")
}

// Options configure a launch. Config is required.
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	// Target is the build to launch; nil takes the one in Bake's receipt.
	Target *Target

	HealthPoll time.Duration // between health polls; default defaultHealthPoll
	WaitDelay  time.Duration // overrides the interval of every wait on EC2 (fleet.Pace.Scaled), for emulators; default the paces'
	Clock      fleet.Clock   // paces every wait, the health gate's too; default real time
	HTTPClient *http.Client  // for the health gate
	// SecurityGroupID is the site's group as SecurityGroup made it exact
	// beside the bake; "" makes Launch do it when it starts an instance.
	SecurityGroupID string
	// Timeline records the phases (launch; boot to the first answer; the
	// gate); nil records nothing.
	Timeline *timeline.Recorder
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

// ec2API is the part of EC2 a launch uses; *ec2.Client has it.
type ec2API interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeImagesAPIClient
	ec2.DescribeSecurityGroupsAPIClient
	RunInstances(context.Context, *ec2.RunInstancesInput, ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	GetConsoleOutput(context.Context, *ec2.GetConsoleOutputInput, ...func(*ec2.Options)) (*ec2.GetConsoleOutputOutput, error)
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	fleet.AddressAPI
	CreateSecurityGroup(context.Context, *ec2.CreateSecurityGroupInput, ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error)
	AuthorizeSecurityGroupIngress(context.Context, *ec2.AuthorizeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error)
	RevokeSecurityGroupIngress(context.Context, *ec2.RevokeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error)
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
}

// Launch makes sure a healthy instance of the build runs, and writes
// _build/launch.json. Everything that can be checked locally is checked
// before the first AWS call.
func Launch(ctx context.Context, opts Options) (*Receipt, error) {
	start := time.Now()
	seq := opts.Timeline.Seq()
	seq.Next("launch")
	defer seq.End()
	if err := validate(opts); err != nil {
		return nil, err
	}
	awsCfg, err := awscfg.LoadWithCredentials(ctx, opts.Config, "launch", opts.AWSOptions...)
	if err != nil {
		return nil, err
	}
	l := newLauncher(opts, ec2.NewFromConfig(awsCfg))
	l.seq = seq
	r, err := l.launch(ctx)
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	if err := receipt.Write(opts.Config.BuildDir(), ReceiptName, r); err != nil {
		return nil, fmt.Errorf("launch: instance %s is healthy but writing its receipt failed: %w", r.InstanceID, err)
	}
	return r, nil
}

// SecurityGroup makes the site's security group exact (created when
// missing) and returns its id: what Launch does before it starts an
// instance, and what a deploy does beside the bake, holding the lease.
func SecurityGroup(ctx context.Context, opts Options) (string, error) {
	if err := validate(opts); err != nil {
		return "", err
	}
	awsCfg, err := awscfg.LoadWithCredentials(ctx, opts.Config, "launch", opts.AWSOptions...)
	if err != nil {
		return "", err
	}
	return newLauncher(opts, ec2.NewFromConfig(awsCfg)).securityGroup(ctx)
}

// validate checks what needs no AWS call.
func validate(opts Options) error {
	c := opts.Config
	if c == nil {
		return errors.New("launch: no configuration given")
	}
	var p config.Problems
	if c.Site == "" {
		p = append(p, "launch needs site: set deploy.site")
	}
	if c.InstanceType == "" {
		p = append(p, "launch needs instance_type: set deploy.instance_type, e.g. t3.micro")
	}
	if c.HealthTimeout <= 0 {
		p = append(p, "launch needs health_timeout above zero, e.g. 5m")
	}
	if _, err := config.RenderHealthURL(c.HealthURL, config.HealthTarget{PublicDNSName: "ec2-203-0-113-1.compute-1.amazonaws.com", PublicIP: "203.0.113.1", InstanceID: "i-0123456789abcdef0"}); err != nil {
		p = append(p, "health_url "+err.Error())
	}
	if c.SubnetID != "" && !strings.HasPrefix(c.SubnetID, "subnet-") {
		p = append(p, fmt.Sprintf("subnet_id %q is not a subnet id; use e.g. subnet-0123456789abcdef0", c.SubnetID))
	}
	if len(p) > 0 {
		return p
	}
	return nil
}

// launcher holds one launch's client and settings.
type launcher struct {
	opts   Options
	cfg    *config.Config
	log    *logrus.Entry
	ec2    ec2API
	subnet string
	ports  []int32
	undo   fleet.Undo
	seq    *timeline.Seq // nil when not recording
}

func newLauncher(opts Options, api ec2API) *launcher {
	log := fleet.StepLog(opts.Log, "launch")
	ports := []int32{80}
	if opts.Config.HTTPS {
		ports = append(ports, 443)
	}
	return &launcher{opts: opts, cfg: opts.Config, log: log, ec2: api, subnet: opts.Config.SubnetID, ports: ports}
}

// launch runs the recipe; on error or cancellation the candidate it started
// or adopted is terminated.
func (l *launcher) launch(ctx context.Context) (r *Receipt, err error) {
	t, err := l.target(ctx)
	if err != nil {
		return nil, err
	}
	log := l.log.WithFields(logrus.Fields{"image_id": t.ImageID, "build_id": t.BuildID})
	l.log = log

	existing, err := fleet.SiteInstances(ctx, l.ec2, l.cfg.Site,
		types.Filter{Name: aws.String("tag:" + fleet.TagImageDigest), Values: []string{t.ImageDigest}})
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	// What the site's address points at is live; a site deployed before the
	// address existed has its instance tagged live.
	addrs, err := fleet.SiteAddresses(ctx, l.ec2, l.cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	behindAddress := func(id string) bool {
		return slices.ContainsFunc(addrs, func(a fleet.Address) bool { return a.InstanceID == id })
	}
	var adopt *fleet.Instance
	for i := len(existing) - 1; i >= 0; i-- { // newest first
		in := existing[i]
		if in.State != "running" && in.State != "pending" || in.BuildID != t.BuildID {
			continue
		}
		if behindAddress(in.ID) {
			log.WithField("instance_id", in.ID).Infof("instance %s of build %s is live already; nothing to launch", in.ID, t.BuildID)
			return l.receipt(t, in, "", true, true), nil
		}
		// A candidate an earlier run left, or an instance in its grace, is
		// checked and reused. One tagged live but not behind the address is
		// not: before the address existed the record pointed at it directly,
		// and moving the address to it would release the address readers
		// still reach it on; a new candidate takes the address instead.
		if adopt == nil && (in.Role == fleet.RoleCandidate || in.Role == fleet.RoleDraining) {
			adopt = &in
		}
	}

	defer func() {
		if err != nil {
			l.undo.Run(ctx, log)
		}
	}()

	var id, sg string
	var started fleet.Instance // as RunInstances answered
	pace := fleet.InstanceRunning.Scaled(l.opts.WaitDelay)
	if adopt != nil {
		id = adopt.ID
		log.WithField("instance_id", id).Infof("instance %s of this build is already %s (%s, left by an earlier run); checking it instead of launching another", id, adopt.State, adopt.Role)
		if adopt.Role != fleet.RoleDraining {
			l.onUndoTerminate(id)
		}
		started, pace = *adopt, pace.AtOnce()
	} else {
		sg = l.opts.SecurityGroupID
		if sg == "" {
			if sg, err = l.securityGroup(ctx); err != nil {
				return nil, err
			}
		}
		if started, err = l.run(ctx, t, sg); err != nil {
			return nil, err
		}
		id = started.ID
	}
	log = log.WithField("instance_id", id)

	inst := started
	if inst.State != "running" || inst.PublicDNSName == "" && inst.PublicIP == "" {
		if inst, err = l.waitRunning(ctx, id, pace); err != nil {
			return nil, err
		}
	}
	l.seq.Next("boot")
	u, err := config.RenderHealthURL(l.cfg.HealthURL, config.HealthTarget{PublicDNSName: inst.PublicDNSName, PublicIP: inst.PublicIP, InstanceID: inst.ID})
	if err != nil {
		return nil, fmt.Errorf("launch: instance %s has public DNS name %q and address %q, so health_url gives no URL (%v); launch into a subnet that assigns public IPv4 addresses (deploy.subnet_id)", id, inst.PublicDNSName, inst.PublicIP, err)
	}
	gateTLS, err := GateTLSFor(l.cfg)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	gate := Gate{Client: l.opts.HTTPClient, Poll: l.opts.HealthPoll, Timeout: l.cfg.HealthTimeout, Log: log, TLS: gateTLS, Clock: l.opts.Clock,
		Answered: func() { l.seq.Next("gate") }}
	if err := gate.Wait(ctx, u, t.BuildID); err != nil {
		if errors.Is(err, ErrUnhealthy) {
			l.logConsole(ctx, id, log)
			l.markGateFailed(ctx, t, log)
			fate := "it is terminated"
			if adopt != nil && adopt.Role == fleet.RoleDraining {
				fate = "it is left to the grace it was in"
			}
			return nil, fmt.Errorf("launch: candidate %s failed the health gate (%s; the DNS record was not touched): %w; "+
				"boot the image locally with `mage run` to see it serve, check that health_url reaches the instance, or raise deploy.health_timeout if it only boots slowly", id, fate, err)
		}
		return nil, fmt.Errorf("launch: health-checking candidate %s: %w", id, err)
	}
	l.undo.Forget() // healthy: the candidate is the result, not a leftover
	return l.receipt(t, inst, sg, false, adopt != nil), nil
}

func (l *launcher) receipt(t Target, in fleet.Instance, sg string, live, adopted bool) *Receipt {
	u, _ := config.RenderHealthURL(l.cfg.HealthURL, config.HealthTarget{PublicDNSName: in.PublicDNSName, PublicIP: in.PublicIP, InstanceID: in.ID})
	return &Receipt{
		InstanceID: in.ID, ImageID: t.ImageID, ImageDigest: t.ImageDigest, BuildID: t.BuildID, Commit: t.Commit,
		PublicDNSName: in.PublicDNSName, PublicIP: in.PublicIP, SecurityGroupID: sg, HealthURL: u,
		AlreadyLive: live, Adopted: adopted,
	}
}

// ClientToken makes RunInstances idempotent: the SDK's retry of a call whose
// answer was lost, or a rerun after a crash, gets the instance already
// started, not a twin. It hashes everything RunInstances is given (a changed
// parameter under the same token is IdempotentParameterMismatch) and the
// attempt number (see maxTokenAttempts). 64 ASCII characters at most.
func ClientToken(site string, t Target, instanceType, securityGroup, subnet string, attempt int) string {
	h := sha256.New()
	// "eip": launches with an asked-for public address and shutdown stop;
	// the tokens of earlier launches (other parameters) never collide.
	for _, s := range []string{"eip", site, t.ImageID, t.ImageDigest, t.BuildID, instanceType, securityGroup, subnet, fmt.Sprint(attempt)} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return "blog-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// RunInstancesInput is the request that starts a candidate of build t in
// security group sg; preflight's DryRun probe sends the same one.
func RunInstancesInput(c *config.Config, t Target, sg, token string) *ec2.RunInstancesInput {
	name := c.Site + " " + t.BuildID
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(t.ImageID),
		InstanceType: types.InstanceType(c.InstanceType),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		ClientToken:  aws.String(token),
		// IMDSv2 only: the unikernel never asks, and nothing else should.
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:              types.HttpTokensStateRequired,
			HttpEndpoint:            types.InstanceMetadataEndpointStateEnabled,
			HttpPutResponseHopLimit: aws.Int32(1),
		},
		// A kernel that halts stops the instance: it keeps the site's
		// Elastic IP, so no reader is ever sent to an address released to
		// someone else, and the next deploy replaces it. (terminate would
		// end the instance and its association, leaving the record pointing
		// at an address the site may not hold.)
		InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorStop,
		// The public IPv4 address the health gate reaches the candidate on is
		// asked for: a subnet that does not map one must work too. (A request
		// with a network interface takes its groups and subnet there.)
		NetworkInterfaces: []types.InstanceNetworkInterfaceSpecification{{
			DeviceIndex:              aws.Int32(0),
			AssociatePublicIpAddress: aws.Bool(true),
			DeleteOnTermination:      aws.Bool(true),
			Groups:                   []string{sg},
		}},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
				fleet.Tag("Name", name), fleet.Tag(fleet.TagSite, c.Site), fleet.Tag(fleet.TagBuildID, t.BuildID),
				fleet.Tag(fleet.TagImageDigest, t.ImageDigest), fleet.Tag(fleet.TagCommit, t.Commit), fleet.Tag(fleet.TagRole, fleet.RoleCandidate),
			}},
			{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{
				fleet.Tag("Name", name), fleet.Tag(fleet.TagSite, c.Site), fleet.Tag(fleet.TagBuildID, t.BuildID), fleet.Tag(fleet.TagImageDigest, t.ImageDigest),
			}},
			{ResourceType: types.ResourceTypeNetworkInterface, Tags: []types.Tag{
				fleet.Tag("Name", name), fleet.Tag(fleet.TagSite, c.Site),
			}},
		},
	}
	if c.SubnetID != "" {
		in.NetworkInterfaces[0].SubnetId = aws.String(c.SubnetID)
	}
	return in
}

// run starts the candidate and registers its termination as the undo. It
// returns the instance as RunInstances answered: no look is needed to know
// it exists and is pending.
func (l *launcher) run(ctx context.Context, t Target, sg string) (fleet.Instance, error) {
	for attempt := 0; attempt < maxTokenAttempts; attempt++ {
		in := RunInstancesInput(l.cfg, t, sg, ClientToken(l.cfg.Site, t, l.cfg.InstanceType, sg, l.subnet, attempt))
		out, err := l.ec2.RunInstances(ctx, in)
		if fleet.HasCode(err, "IdempotentParameterMismatch") {
			continue // an earlier launch used this token with other settings
		}
		if err != nil {
			if fleet.Unanswered(err) {
				// No answer (cancelled, connection lost after retries): the
				// instance may have started all the same. Its tags say what it is.
				l.undo.Add("terminating candidates of build "+t.BuildID+" a lost RunInstances may have started", "run mage prune",
					func(ctx context.Context) error { return l.terminateCandidates(ctx, t) })
			}
			return fleet.Instance{}, fmt.Errorf("launch: starting an instance of AMI %s: %w; check the ec2:RunInstances permission, the instance type %s in this region, and the EC2 instance quota", t.ImageID, err, l.cfg.InstanceType)
		}
		if len(out.Instances) == 0 {
			return fleet.Instance{}, fmt.Errorf("launch: RunInstances for AMI %s answered no instance", t.ImageID)
		}
		inst := fleet.FromEC2(out.Instances[0])
		if !inst.Billable() {
			// EC2 answered with an instance an earlier launch started under this token and that is gone since.
			l.log.Debugf("client token attempt %d belongs to %s, now %s; trying the next", attempt, inst.ID, inst.State)
			continue
		}
		if inst.Role != "" && inst.Role != fleet.RoleCandidate {
			// An instance of this token went live since: it is not a candidate to use.
			l.log.Debugf("client token attempt %d belongs to %s, now %s; trying the next", attempt, inst.ID, inst.Role)
			continue
		}
		l.onUndoTerminate(inst.ID)
		l.log.WithField("instance_id", inst.ID).Infof("started candidate %s (%s) from AMI %s", inst.ID, l.cfg.InstanceType, t.ImageID)
		return inst, nil
	}
	return fleet.Instance{}, fmt.Errorf("launch: %d client tokens for build %s are used up by earlier launches; EC2 keeps them for 24 hours after their instances end: wait, or rebake (a new AMI gives new tokens)", maxTokenAttempts, t.BuildID)
}

// onUndoTerminate registers terminating a candidate. The undo reads the
// site's address first: an instance it points at is never terminated by a
// cleanup.
func (l *launcher) onUndoTerminate(id string) {
	l.undo.Add("terminating candidate "+id, "terminate it: aws ec2 terminate-instances --instance-ids "+id+" (or run mage prune)",
		func(ctx context.Context) error {
			_, _, err := fleet.TerminateIdle(ctx, l.ec2, fleet.Guard{Site: l.cfg.Site, Clock: l.opts.Clock}, []string{id}, l.log)
			return err
		})
}

// markGateFailed tags the AMI of a build whose gate failed: prune removes it
// first, and rollback never goes to it. Failing to tag is logged, not
// fatal: the gate's failure is the error to report.
func (l *launcher) markGateFailed(ctx context.Context, t Target, log *logrus.Entry) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleet.CleanupTimeout)
	defer cancel()
	if _, err := l.ec2.CreateTags(cctx, GateTagInput(t.ImageID, fleet.GateFailed)); err != nil {
		log.WithError(err).Warnf("tagging AMI %s as having failed its gate failed; check the ec2:CreateTags permission", t.ImageID)
	}
}

// GateTagInput is the request that records a gate's outcome on an AMI;
// preflight's DryRun probe sends the same one.
func GateTagInput(imageID, outcome string) *ec2.CreateTagsInput {
	return &ec2.CreateTagsInput{Resources: []string{imageID}, Tags: []types.Tag{fleet.Tag(fleet.TagGate, outcome)}}
}

// terminateCandidates terminates the site's candidates of the target
// build: the cleanup of a RunInstances whose answer was lost. A new
// instance can take a moment to be listed, so an empty listing is looked
// at again at the NewlyListed pace before it is believed.
func (l *launcher) terminateCandidates(ctx context.Context, t Target) error {
	var ids []string
	err := fleet.NewlyListed.Scaled(l.opts.WaitDelay).AtOnce().Wait(ctx, l.opts.Clock, func(ctx context.Context) (bool, error) {
		insts, err := fleet.SiteInstances(ctx, l.ec2, l.cfg.Site,
			types.Filter{Name: aws.String("tag:" + fleet.TagImageDigest), Values: []string{t.ImageDigest}},
			types.Filter{Name: aws.String("tag:" + fleet.TagRole), Values: []string{fleet.RoleCandidate}})
		if err != nil {
			return false, err
		}
		ids = ids[:0]
		for _, in := range insts {
			if in.BuildID == t.BuildID && in.Role == fleet.RoleCandidate {
				ids = append(ids, in.ID)
			}
		}
		return len(ids) > 0, nil
	})
	if errors.Is(err, fleet.ErrWaitTimeout) {
		return nil // none started
	}
	if err != nil {
		return err
	}
	_, _, err = fleet.TerminateIdle(ctx, l.ec2, fleet.Guard{Site: l.cfg.Site, Clock: l.opts.Clock}, ids, l.log)
	return err
}

// waitRunning waits for pending → running at pace and returns the instance
// as it runs, with its public address.
func (l *launcher) waitRunning(ctx context.Context, id string, pace fleet.Pace) (fleet.Instance, error) {
	var in fleet.Instance
	err := pace.Wait(ctx, l.opts.Clock, func(ctx context.Context) (bool, error) {
		var found bool
		var err error
		if in, found, err = fleet.DescribeInstance(ctx, l.ec2, id); err != nil || !found {
			return false, err // not found: a new instance EC2 does not list yet
		}
		switch in.State {
		case "running":
			return true, nil
		case "pending":
			return false, nil
		}
		return false, fmt.Errorf("instance %s is %s instead of starting; its console output: aws ec2 get-console-output --instance-id %s", id, in.State, id)
	})
	switch {
	case errors.Is(err, fleet.ErrWaitTimeout):
		return fleet.Instance{}, fmt.Errorf("launch: instance %s did not reach running within %s (state %q); check the instance type's capacity in the region, and its console output: aws ec2 get-console-output --instance-id %s", id, pace.Max, in.State, id)
	case ctx.Err() != nil:
		return fleet.Instance{}, fmt.Errorf("launch: waiting for %s to run: %w", id, ctx.Err())
	case err != nil:
		return fleet.Instance{}, fmt.Errorf("launch: %w", err)
	}
	return in, nil
}

// logConsole logs the last lines of the instance's console: why a kernel
// that never served is usually written there.
func (l *launcher) logConsole(ctx context.Context, id string, log *logrus.Entry) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleet.CleanupTimeout)
	defer cancel()
	// Latest: on Nitro the buffered output is often empty exactly when a
	// boot fails; Xen types refuse Latest and get the buffered output.
	out, err := l.ec2.GetConsoleOutput(cctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id), Latest: aws.Bool(true)})
	if fleet.HasCode(err, "UnsupportedOperation", "InvalidParameterCombination", "InvalidParameterValue") {
		out, err = l.ec2.GetConsoleOutput(cctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id)})
	}
	if err != nil {
		log.WithError(err).Warnf("reading the console output of %s failed", id)
		return
	}
	text, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil || len(text) == 0 {
		log.Warnf("instance %s has no console output yet (EC2 collects it shortly after boot)", id)
		return
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n"), "\n")
	if len(lines) > consoleLines {
		lines = lines[len(lines)-consoleLines:]
	}
	log.Warnf("last %d lines of the console output of %s:", len(lines), id)
	for _, line := range lines {
		log.Warn("console: " + line)
	}
}
