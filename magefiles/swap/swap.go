// Package swap sends the blog's traffic to the healthy candidate Launch
// started, then drains and terminates the instances it replaces.
//
// The recipe (Swap): validate locally; read the candidate, the hosted zone
// (deploy.hosted_zone_id, or the longest public zone name that ends the
// domain) and the record as it stands. If the record already points at the
// candidate, nothing changes. Otherwise tag the candidate live, UPSERT the
// record in one change batch (a CNAME to its public name below the zone
// apex; an A record to its public address at the apex, where a CNAME
// cannot be) and wait for INSYNC. Then tag the replaced instances draining,
// wait the old record's TTL so resolvers that cached it stop sending
// visitors there, and terminate them. Until the change is made, an error or
// Ctrl-C terminates the candidate.
package swap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "swap"

// insyncMaxWait bounds the wait for a change to reach every Route53
// authoritative server, which AWS documents as generally within 60 seconds.
const insyncMaxWait = 10 * time.Minute

// Receipt records the swap: _build/swap.json.
type Receipt struct {
	Record     string   `json:"record"` // fully qualified name
	Type       string   `json:"type"`   // A or CNAME
	ZoneID     string   `json:"zone_id"`
	TTL        int64    `json:"ttl"`
	OldTarget  string   `json:"old_target"` // "" when there was no record
	NewTarget  string   `json:"new_target"`
	ChangeID   string   `json:"change_id"` // "" when unchanged
	InstanceID string   `json:"instance_id"`
	BuildID    string   `json:"build_id"`
	Drained    float64  `json:"drained_seconds"`
	Terminated []string `json:"terminated"`
	Unchanged  bool     `json:"unchanged"` // the record pointed at the instance already
	Seconds    float64  `json:"seconds"`
}

// ReadReceipt loads _build/swap.json; it fails with the fix when Swap has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "swap", "nothing swapped", "run `mage swap`")
}

// Options configure a swap. Config is required.
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	// InstanceID is the instance to promote; "" takes the candidate in
	// Launch's receipt _build/launch.json.
	InstanceID string
	Clock      fleet.Clock   // the drain's timer; default: real time
	WaitDelay  time.Duration // the INSYNC waiter's poll delay; default the SDK's (30s)
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

// ec2API is the part of EC2 Swap uses.
type ec2API interface {
	ec2.DescribeInstancesAPIClient
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
}

// route53API is the part of Route53 Swap uses; *route53.Client has it.
type route53API interface {
	fleet.Route53Reader
	route53.GetChangeAPIClient
	ChangeResourceRecordSets(context.Context, *route53.ChangeResourceRecordSetsInput, ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
}

// Swap points the record at the candidate and retires what it replaces,
// and writes _build/swap.json.
func Swap(ctx context.Context, opts Options) (*Receipt, error) {
	start := time.Now()
	if err := validate(opts.Config, "swap"); err != nil {
		return nil, err
	}
	id := opts.InstanceID
	if id == "" {
		lr, err := launch.ReadReceipt(opts.Config.BuildDir())
		if err != nil {
			return nil, err
		}
		id = lr.InstanceID
	}
	s, err := newSwapper(ctx, opts, "swap")
	if err != nil {
		return nil, err
	}
	r, err := s.swap(ctx, id)
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	if err := receipt.Write(opts.Config.BuildDir(), ReceiptName, r); err != nil {
		return nil, fmt.Errorf("swap: %s points at %s but writing the receipt failed: %w", r.Record, r.NewTarget, err)
	}
	return r, nil
}

// validate checks what needs no AWS call.
func validate(c *config.Config, step string) error {
	if c == nil {
		return errors.New(step + ": no configuration given")
	}
	if c.Site == "" {
		return config.Problems{step + " needs site: set deploy.site"}
	}
	return c.Require(step, "domain")
}

type swapper struct {
	opts  Options
	cfg   *config.Config
	log   *logrus.Entry
	ec2   ec2API
	r53   route53API
	clock fleet.Clock
}

func newSwapper(ctx context.Context, opts Options, step string) (*swapper, error) {
	awsCfg, err := awscfg.LoadWithCredentials(ctx, opts.Config, step, opts.AWSOptions...)
	if err != nil {
		return nil, err
	}
	return newSwapperWith(opts, step, ec2.NewFromConfig(awsCfg), route53.NewFromConfig(awsCfg)), nil
}

func newSwapperWith(opts Options, step string, e ec2API, r route53API) *swapper {
	return &swapper{opts: opts, cfg: opts.Config, log: fleet.StepLog(opts.Log, step), ec2: e, r53: r, clock: fleet.OrRealClock(opts.Clock)}
}

// swap runs the recipe for instance id.
func (s *swapper) swap(ctx context.Context, id string) (r *Receipt, err error) {
	// Until the record points at it, an error or Ctrl-C terminates the candidate.
	var undo fleet.Undo
	defer func() {
		if err != nil {
			undo.Run(ctx, s.log)
		}
	}()
	undo.Add("terminating candidate "+id+", which never went live", "terminate it: aws ec2 terminate-instances --instance-ids "+id+" (or run mage prune)",
		func(ctx context.Context) error { return s.terminateUnlessBehind(ctx, id) })
	in, found, err := fleet.DescribeInstance(ctx, s.ec2, id)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	if !found || in.State != "running" {
		return nil, fmt.Errorf("swap: instance %s is %s, not running; run `mage launch` to start a candidate", id, orGone(in.State, found))
	}
	if in.Site != s.cfg.Site {
		return nil, fmt.Errorf("swap: instance %s belongs to site %q, not %q; run `mage launch`", id, in.Site, s.cfg.Site)
	}
	zone, err := fleet.FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	old, err := fleet.ReadRecord(ctx, s.r53, zone, s.cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	typ := fleet.RecordType(old.Name, zone)
	target := in.PublicDNSName
	if typ == types.RRTypeA {
		target = in.PublicIP
	}
	if target == "" {
		return nil, fmt.Errorf("swap: instance %s has no public %s for the %s record of %s; launch into a subnet that assigns public IPv4 addresses (deploy.subnet_id)", id, map[types.RRType]string{types.RRTypeA: "IPv4 address", types.RRTypeCname: "DNS name"}[typ], typ, old.Name)
	}
	log := s.log.WithFields(logrus.Fields{"record": old.Name, "instance_id": id, "build_id": in.BuildID})
	r = &Receipt{Record: old.Name, Type: string(typ), ZoneID: zone.ID, TTL: s.cfg.TTL, OldTarget: old.Target, NewTarget: target, InstanceID: id, BuildID: in.BuildID, Terminated: []string{}}

	if strings.EqualFold(old.Target, target) && old.TTL == s.cfg.TTL {
		r.Unchanged = true
		log.Infof("%s already points at %s (build %s); the record is unchanged", old.Name, id, in.BuildID)
		undo.Forget() // behind the record already: live, whatever happens next
		if in.Role != fleet.RoleLive {
			if err := s.setRole(ctx, fleet.RoleLive, id); err != nil {
				return nil, err
			}
		}
		return r, s.retire(ctx, log, r, in, old)
	}

	// Live before the record moves: whatever finds the instance behind the
	// record finds it tagged live, so no cleanup ever terminates it.
	if err := s.setRole(ctx, fleet.RoleLive, id); err != nil {
		return nil, err
	}
	out, err := s.r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zone.ID),
		ChangeBatch: &types.ChangeBatch{
			Comment: aws.String(fmt.Sprintf("blog %s: build %s on %s", s.cfg.Site, in.BuildID, id)),
			Changes: []types.Change{{
				Action: types.ChangeActionUpsert,
				ResourceRecordSet: &types.ResourceRecordSet{
					Name: aws.String(old.Name), Type: typ, TTL: aws.Int64(s.cfg.TTL),
					ResourceRecords: []types.ResourceRecord{{Value: aws.String(target)}},
				},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("swap: pointing %s at %s: %w; check the route53:ChangeResourceRecordSets permission", old.Name, target, err)
	}
	undo.Forget() // the record points at the instance: it is live, whatever happens next
	r.ChangeID = strings.TrimPrefix(aws.ToString(out.ChangeInfo.Id), "/change/")
	log.Infof("%s %s → %s (was %q); waiting for Route53 to apply change %s everywhere", old.Name, typ, target, old.Target, r.ChangeID)
	w := route53.NewResourceRecordSetsChangedWaiter(s.r53, func(o *route53.ResourceRecordSetsChangedWaiterOptions) {
		if s.opts.WaitDelay > 0 {
			o.MinDelay, o.MaxDelay = s.opts.WaitDelay, 4*s.opts.WaitDelay
		}
	})
	if err := w.Wait(ctx, &route53.GetChangeInput{Id: out.ChangeInfo.Id}, insyncMaxWait); err != nil {
		return nil, fmt.Errorf("swap: change %s of %s was made but is not INSYNC after %s: %w; run `mage swap` again to finish draining", r.ChangeID, old.Name, insyncMaxWait, err)
	}
	return r, s.retire(ctx, log, r, in, old)
}

// retire drains and terminates the instances the new one replaces: the
// site's other live or draining instances, and the old record's target if
// it is one of the site's. Never the new one. Run again, it finishes a
// drain an earlier run was stopped in.
func (s *swapper) retire(ctx context.Context, log *logrus.Entry, r *Receipt, in fleet.Instance, old fleet.Record) error {
	insts, err := fleet.SiteInstances(ctx, s.ec2, s.cfg.Site)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	var olds []string
	for _, o := range insts {
		behindOld := old.Target != "" && (strings.EqualFold(o.PublicDNSName, old.Target) || o.PublicIP == old.Target)
		if o.ID != in.ID && (o.Role == fleet.RoleLive || o.Role == fleet.RoleDraining || behindOld) {
			olds = append(olds, o.ID)
		}
	}
	if len(olds) == 0 {
		return nil
	}
	if err := s.setRole(ctx, fleet.RoleDraining, olds...); err != nil {
		return err
	}
	drain := time.Duration(old.TTL) * time.Second
	if r.Unchanged && drain == 0 {
		drain = time.Duration(s.cfg.TTL) * time.Second
	}
	log.Infof("draining %s for %s (the old record's TTL), then terminating", strings.Join(olds, ", "), drain)
	select {
	case <-s.clock.After(drain):
	case <-ctx.Done():
		return fmt.Errorf("swap: stopped while draining %s (the record already points at %s; `mage swap` finishes the drain): %w", strings.Join(olds, ", "), in.ID, ctx.Err())
	}
	r.Drained = drain.Seconds()
	if _, err := s.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: olds}); err != nil {
		return fmt.Errorf("swap: terminating the drained %s: %w; run `mage swap` again or terminate them by hand", strings.Join(olds, ", "), err)
	}
	r.Terminated = olds
	log.Infof("terminated %s", strings.Join(olds, ", "))
	return nil
}

// setRole tags instances with a role.
func (s *swapper) setRole(ctx context.Context, role string, ids ...string) error {
	_, err := s.ec2.CreateTags(ctx, fleet.SetRoleInput(role, ids...))
	if err != nil {
		return fmt.Errorf("swap: tagging %s %s: %w; check the ec2:CreateTags permission", strings.Join(ids, ", "), role, err)
	}
	return nil
}

// terminateUnlessBehind is the candidate's undo. A candidate never went
// live: Swap tags an instance live before the record moves. One tagged live
// is kept if the record points at it after all (a change whose answer was
// lost), or if the record cannot be read to tell.
func (s *swapper) terminateUnlessBehind(ctx context.Context, id string) error {
	in, found, err := fleet.DescribeInstance(ctx, s.ec2, id)
	if err != nil || !found || !in.Billable() || in.Site != s.cfg.Site {
		return err
	}
	if in.Role == fleet.RoleLive {
		z, err := fleet.FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
		if err != nil {
			return fmt.Errorf("keeping %s, tagged live: cannot read the record to tell whether it serves: %w", id, err)
		}
		rec, err := fleet.ReadRecord(ctx, s.r53, z, s.cfg.Domain)
		if err != nil {
			return fmt.Errorf("keeping %s, tagged live: cannot read the record to tell whether it serves: %w", id, err)
		}
		if rec.Target != "" && (strings.EqualFold(rec.Target, in.PublicDNSName) || rec.Target == in.PublicIP) {
			s.log.Infof("cleanup: %s points at %s after all; keeping it", rec.Name, id)
			return nil
		}
	}
	_, err = s.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	return err
}

func orGone(state string, found bool) string {
	if !found {
		return "gone"
	}
	return state
}

// DeploySummary says in one line what a deploy did.
func DeploySummary(lr *launch.Receipt, sr *Receipt) string {
	if lr.AlreadyLive && sr.Unchanged && len(sr.Terminated) == 0 {
		return fmt.Sprintf("build %s is already live on %s behind %s: nothing created or changed", lr.BuildID, lr.InstanceID, sr.Record)
	}
	s := fmt.Sprintf("build %s is live on %s: %s %s → %s", lr.BuildID, lr.InstanceID, sr.Record, sr.Type, sr.NewTarget)
	if sr.Unchanged {
		s = fmt.Sprintf("build %s is live on %s behind %s (record unchanged)", lr.BuildID, lr.InstanceID, sr.Record)
	}
	if len(sr.Terminated) > 0 {
		s += fmt.Sprintf("; drained %gs and terminated %s", sr.Drained, strings.Join(sr.Terminated, ", "))
	}
	return s
}

// Preflight checks, before anything is built or created, that a swap can
// be made: the configuration, the hosted zone, and a record Swap can
// manage (or none yet). `mage swap` and `mage deploy` run it first.
func Preflight(ctx context.Context, opts Options) error {
	if err := validate(opts.Config, "swap"); err != nil {
		return err
	}
	s, err := newSwapper(ctx, opts, "swap")
	if err != nil {
		return err
	}
	z, err := fleet.FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	if _, err := fleet.ReadRecord(ctx, s.r53, z, s.cfg.Domain); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	return nil
}
