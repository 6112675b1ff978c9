// Package swap sends the blog's readers to the healthy candidate Launch
// started, by moving the site's Elastic IP to it, and retires what it
// replaces once their grace is over.
//
// The recipe (Swap): validate locally; read the candidate, the hosted zone
// (deploy.hosted_zone_id, or the longest public zone name that ends the
// domain) and the record as it stands. Make sure the site has its Elastic IP
// (allocated once, tagged; twins of a retried allocation released). If the
// address already points at the candidate and the record at the address,
// nothing changes. Otherwise tag the candidate live, move the address to it
// (AssociateAddress: readers reach it at once, whatever resolvers cached;
// its answer is the association, so an answered move is not read back, and
// only after an answer that was lost is the address read, the call repeated
// unless it shows the candidate). Record on the
// AMIs that this build went live and the previous one stopped being live.
// Write the record once: an A record at the domain to the address (replacing
// the CNAME or A record to an instance the DNS-swap version wrote), and wait
// for INSYNC. Tag the instances replaced draining with the end of their
// grace (deploy.grace; for an instance the old record pointed at, at least
// the old record's TTL after INSYNC, as resolvers may still send readers
// there), and terminate leftovers nothing sends readers to. Until the
// address points at the candidate, an error or Ctrl-C terminates it.
//
// Retire, run after the deploy lease is released, waits out the grace and
// terminates what is due, holding the lease again.
package swap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "swap"

// allocateTries bounds AllocateAddress calls whose answer did not come.
const allocateTries = 3

// Receipt records the swap: _build/swap.json.
type Receipt struct {
	Record       string    `json:"record"` // fully qualified name
	ZoneID       string    `json:"zone_id"`
	TTL          int64     `json:"ttl"`
	Address      string    `json:"address"` // the site's Elastic IP
	AllocationID string    `json:"allocation_id"`
	OldRecord    string    `json:"old_record"` // the record before, "TYPE target"; "" when there was none
	ChangeID     string    `json:"change_id"`  // "" when the record was left as it was
	Previous     string    `json:"previous"`   // the instance readers were sent to before; "" when none
	InstanceID   string    `json:"instance_id"`
	BuildID      string    `json:"build_id"`
	Draining     []string  `json:"draining"`     // replaced instances kept for their grace
	RetireAfter  time.Time `json:"retire_after"` // when their grace ends
	Terminated   []string  `json:"terminated"`   // leftovers terminated at once
	Unchanged    bool      `json:"unchanged"`    // the address and record pointed at the instance already
	Seconds      float64   `json:"seconds"`
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
	Clock      fleet.Clock   // the time, the grace's timer and every wait's pace; default: real time
	WaitDelay  time.Duration // overrides the interval of every wait (fleet.Pace.Scaled), for emulators; default the paces'
	// Ready is the zone, record and address Prepare found beside the bake;
	// nil makes Swap find them itself.
	Ready *Ready
	// Timeline records the phases (cutover, record, tidy; grace and
	// retire in Retire); nil records nothing.
	Timeline *timeline.Recorder
	// Lease tunes taking the deploy lease again in Retire.
	Lease fleet.LeaseOptions
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

// ec2API is the part of EC2 Swap uses.
type ec2API interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeImagesAPIClient
	fleet.AddressAPI
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	AllocateAddress(context.Context, *ec2.AllocateAddressInput, ...func(*ec2.Options)) (*ec2.AllocateAddressOutput, error)
	AssociateAddress(context.Context, *ec2.AssociateAddressInput, ...func(*ec2.Options)) (*ec2.AssociateAddressOutput, error)
	ReleaseAddress(context.Context, *ec2.ReleaseAddressInput, ...func(*ec2.Options)) (*ec2.ReleaseAddressOutput, error)
}

// Swap moves the site's address to the candidate, makes the record point at
// the address, and writes _build/swap.json. The caller holds the deploy lease.
func Swap(ctx context.Context, opts Options) (*Receipt, error) {
	start := time.Now()
	seq := opts.Timeline.Seq()
	seq.Next("cutover")
	defer seq.End()
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
	r, err := s.swap(ctx, id, seq)
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	if err := receipt.Write(opts.Config.BuildDir(), ReceiptName, r); err != nil {
		return nil, fmt.Errorf("swap: %s points at %s but writing the receipt failed: %w", r.Address, r.InstanceID, err)
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
	r53   fleet.Route53Writer
	clock fleet.Clock
}

func newSwapper(ctx context.Context, opts Options, step string) (*swapper, error) {
	awsCfg, err := awscfg.LoadWithCredentials(ctx, opts.Config, step, opts.AWSOptions...)
	if err != nil {
		return nil, err
	}
	return newSwapperWith(opts, step, ec2.NewFromConfig(awsCfg), route53.NewFromConfig(awsCfg)), nil
}

func newSwapperWith(opts Options, step string, e ec2API, r fleet.Route53Writer) *swapper {
	return &swapper{opts: opts, cfg: opts.Config, log: fleet.StepLog(opts.Log, step), ec2: e, r53: r, clock: fleet.OrRealClock(opts.Clock)}
}

func (s *swapper) guard(zone fleet.Zone) fleet.Guard {
	return fleet.Guard{Site: s.cfg.Site, Zone: zone, Domain: s.cfg.Domain, ZoneID: s.cfg.HostedZoneID, R53: s.r53, Clock: s.clock}
}

// Ready is what Swap needs that does not depend on the candidate: the
// hosted zone, the record as it stands and the site's Elastic IP, as they
// stand. The caller holds the lease, so nothing else changes them until the
// swap.
type Ready struct {
	Zone    fleet.Zone
	Record  fleet.Record
	Address fleet.Address // zero when the site has none yet: Swap allocates it
}

// Prepare finds the zone, the record and the site's address: what a deploy
// does beside the bake, holding the lease. It allocates nothing: an address
// is allocated by the first Swap, once a candidate passed its gate, so a
// deploy that fails before never holds one (AllocateAddress takes no client
// token, and one cut short by the failure beside it would leave an address
// the next run may not list yet, and allocate a twin of).
func Prepare(ctx context.Context, opts Options) (*Ready, error) {
	if err := validate(opts.Config, "swap"); err != nil {
		return nil, err
	}
	s, err := newSwapper(ctx, opts, "swap")
	if err != nil {
		return nil, err
	}
	return s.prepare(ctx)
}

func (s *swapper) prepare(ctx context.Context) (*Ready, error) {
	zone, err := fleet.FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	rec, err := fleet.ReadRecord(ctx, s.r53, zone, s.cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	addrs, err := s.lookForAddress(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	return &Ready{Zone: zone, Record: rec, Address: s.keepOne(ctx, addrs, rec)}, nil
}

// keepOne is the site's address among addrs (ChooseAddress), the twins
// released; zero when there is none.
func (s *swapper) keepOne(ctx context.Context, addrs []fleet.Address, rec fleet.Record) fleet.Address {
	if len(addrs) == 0 {
		return fleet.Address{}
	}
	recordIP := ""
	if rec.Type == "A" {
		recordIP = rec.Target
	}
	keep, extra := fleet.ChooseAddress(addrs, recordIP)
	for _, x := range extra {
		s.releaseTwin(ctx, x)
	}
	return keep
}

// swap runs the recipe for instance id; seq records its phases.
func (s *swapper) swap(ctx context.Context, id string, seq *timeline.Seq) (r *Receipt, err error) {
	var undo fleet.Undo
	defer func() {
		if err != nil {
			undo.Run(ctx, s.log)
		}
	}()
	// Until the address points at it, an error or Ctrl-C terminates the
	// candidate; the undo reads the address and the record first, and keeps
	// an instance they send readers to.
	undo.Add("terminating candidate "+id+", which never went live", "terminate it: aws ec2 terminate-instances --instance-ids "+id+" (or run mage prune)",
		func(ctx context.Context) error {
			_, _, err := fleet.TerminateIdle(ctx, s.ec2, s.guard(fleet.Zone{}), []string{id}, s.log)
			return err
		})
	in, found, err := fleet.FindInstance(ctx, s.ec2, id, s.clock)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	if !found || in.State != "running" {
		return nil, fmt.Errorf("swap: instance %s is %s, not running; run `mage launch` to start a candidate", id, orGone(in.State, found))
	}
	if in.Site != s.cfg.Site {
		return nil, fmt.Errorf("swap: instance %s belongs to site %q, not %q; run `mage launch`", id, in.Site, s.cfg.Site)
	}
	ready := s.opts.Ready
	if ready == nil {
		if ready, err = s.prepare(ctx); err != nil {
			return nil, err
		}
	}
	zone, rec, addr := ready.Zone, ready.Record, ready.Address
	if addr.AllocationID == "" {
		if addr, err = s.ensureAddress(ctx, rec); err != nil {
			return nil, err
		}
	}
	insts, err := fleet.SiteInstances(ctx, s.ec2, s.cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	log := s.log.WithFields(logrus.Fields{"record": rec.Name, "address": addr.PublicIP, "instance_id": id, "build_id": in.BuildID})
	r = &Receipt{Record: rec.Name, ZoneID: zone.ID, TTL: s.cfg.TTL, Address: addr.PublicIP, AllocationID: addr.AllocationID,
		Previous: addr.InstanceID, InstanceID: id, BuildID: in.BuildID, Draining: []string{}, Terminated: []string{}}
	if rec.Type != "" {
		r.OldRecord = rec.Type + " " + rec.Target
	}
	// Instances the record sends readers to directly: a site the DNS-swap
	// version deployed, being moved to the address now.
	var legacy []fleet.Instance
	for _, o := range insts {
		if o.ID != id && rec.Sends(o) {
			legacy = append(legacy, o)
			if r.Previous == "" {
				r.Previous = o.ID
			}
		}
	}

	if addr.InstanceID == id && rec.OnAddress(addr.PublicIP, s.cfg.TTL) {
		r.Unchanged = true
		undo.Forget() // behind the address already: live, whatever happens next
		s.opts.Timeline.Mark("live")
		seq.Next("tidy")
		log.Infof("%s → %s → %s (build %s) already; nothing to change", rec.Name, addr.PublicIP, id, in.BuildID)
		if in.Role != fleet.RoleLive {
			if err := s.tag(ctx, fleet.SetRoleInput(fleet.RoleLive, id)); err != nil {
				return nil, err
			}
		}
		s.recordLive(ctx, in, nil, true)
		r.Terminated = s.sweep(ctx, zone, id)
		return r, nil
	}

	moved := addr.InstanceID != id
	if moved {
		// Live before the address moves: whatever finds the instance
		// behind the address finds it tagged live.
		if err := s.tag(ctx, fleet.SetRoleInput(fleet.RoleLive, id)); err != nil {
			return nil, err
		}
		if err := s.associate(ctx, addr, id); err != nil {
			return nil, err
		}
		log.Infof("address %s → %s (was %s): readers reach build %s now", addr.PublicIP, id, orNone(addr.InstanceID), in.BuildID)
	}
	undo.Forget() // the address points at the instance: it is live, whatever happens next
	s.opts.Timeline.Mark("live")
	writing := !rec.OnAddress(addr.PublicIP, s.cfg.TTL)
	if writing {
		seq.Next("record")
	} else {
		seq.Next("tidy")
	}
	now := s.clock.Now()
	var prev []fleet.Instance
	for _, o := range insts {
		if o.ID != id && (o.ID == addr.InstanceID || slices.ContainsFunc(legacy, func(l fleet.Instance) bool { return l.ID == o.ID })) {
			prev = append(prev, o)
		}
	}
	// The address already pointed here (a ttl change, a run that stopped
	// before the record): when the build went live is recorded already.
	s.recordLive(ctx, in, prev, !moved)

	graceEnd := now.Add(s.cfg.Grace)
	if writing {
		changeID, err := s.writeRecord(ctx, zone, rec, addr.PublicIP)
		if err != nil {
			return nil, err
		}
		seq.Next("tidy")
		r.ChangeID = changeID
		if len(legacy) > 0 {
			// Resolvers may have cached the old record for its TTL from the
			// moment the change was everywhere.
			graceEnd = later(graceEnd, s.clock.Now().Add(time.Duration(rec.TTL)*time.Second))
		}
	}
	for _, o := range prev {
		r.Draining = append(r.Draining, o.ID)
	}
	if len(r.Draining) > 0 {
		if err := s.tag(ctx, fleet.DrainInput(graceEnd, r.Draining...)); err != nil {
			return nil, err
		}
		r.RetireAfter = graceEnd
		log.Infof("keeping %s for a quick rollback until %s (deploy.grace), then terminating", strings.Join(r.Draining, ", "), fleet.TimeTag(graceEnd))
	}
	r.Terminated = s.sweep(ctx, zone, id)
	return r, nil
}

// ensureAddress returns the site's Elastic IP, allocating it the first time.
// AllocateAddress takes no client token, so the SDK does not retry it (a
// retry of an allocation whose answer was lost would make a twin): after a
// lost answer the address is looked for by its tag before allocating again,
// and twins found are released (ChooseAddress keeps the same one every time).
func (s *swapper) ensureAddress(ctx context.Context, rec fleet.Record) (fleet.Address, error) {
	for try := 1; ; try++ {
		addrs, err := s.lookForAddress(ctx, try > 1)
		if err != nil {
			return fleet.Address{}, fmt.Errorf("swap: %w", err)
		}
		if len(addrs) > 0 {
			return s.keepOne(ctx, addrs, rec), nil
		}
		if try > allocateTries {
			return fleet.Address{}, fmt.Errorf("swap: allocating the site's Elastic IP: %d tries went unanswered; check the network and run `mage deploy` again", allocateTries)
		}
		out, err := s.ec2.AllocateAddress(ctx, fleet.AllocateAddressInput(s.cfg.Site), func(o *ec2.Options) { o.Retryer = aws.NopRetryer{} })
		switch {
		case err == nil:
			a := fleet.Address{AllocationID: aws.ToString(out.AllocationId), PublicIP: aws.ToString(out.PublicIp)}
			s.log.Infof("allocated the site's Elastic IP %s (%s); the record will point at it from now on", a.PublicIP, a.AllocationID)
			return a, nil
		case fleet.HasCode(err, "AddressLimitExceeded"):
			return fleet.Address{}, fmt.Errorf("swap: allocating the site's Elastic IP: %w; release an unused Elastic IP of the region, or ask AWS to raise the quota (5 by default)", err)
		case ctx.Err() != nil:
			return fleet.Address{}, fmt.Errorf("swap: allocating the site's Elastic IP: %w", ctx.Err())
		case fleet.Unanswered(err) || fleet.HasCode(err, "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "Unavailable"):
			s.log.WithError(err).Warnf("allocating the site's Elastic IP got no clear answer; looking for it before trying again")
		default:
			return fleet.Address{}, fmt.Errorf("swap: allocating the site's Elastic IP: %w; check the ec2:AllocateAddress permission", err)
		}
	}
}

// lookForAddress lists the site's addresses; after an allocation without an
// answer it looks again at the NewlyListed pace, as a new address takes a
// moment to be listed.
func (s *swapper) lookForAddress(ctx context.Context, afterLost bool) ([]fleet.Address, error) {
	pace := fleet.NewlyListed.Scaled(s.opts.WaitDelay).AtOnce()
	if !afterLost {
		pace = pace.Within(0) // one look
	}
	var addrs []fleet.Address
	err := pace.Wait(ctx, s.clock, func(ctx context.Context) (bool, error) {
		var err error
		addrs, err = fleet.SiteAddresses(ctx, s.ec2, s.cfg.Site)
		return len(addrs) > 0, err
	})
	if errors.Is(err, fleet.ErrWaitTimeout) {
		return nil, nil
	}
	return addrs, err
}

// releaseTwin releases an extra address of the site nothing uses.
func (s *swapper) releaseTwin(ctx context.Context, a fleet.Address) {
	if a.AssociationID != "" {
		s.log.Warnf("the site has an extra Elastic IP %s, associated with %s; `mage destroy` or the AWS console removes it", a.PublicIP, a.InstanceID)
		return
	}
	if _, err := s.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: aws.String(a.AllocationID)}); err != nil && !fleet.HasCode(err, "InvalidAllocationID.NotFound") {
		s.log.WithError(err).Warnf("releasing the extra Elastic IP %s failed; the next deploy tries again", a.PublicIP)
		return
	}
	s.log.Infof("released %s, an extra Elastic IP of the site (a retried allocation's twin)", a.PublicIP)
}

// associate moves the address to id. AssociateAddress is synchronous: its
// answer carries the association (EC2 API Reference, AssociateAddress:
// "associationId", "[ID of the association]"), so a move that was answered
// is not read back. It is idempotent ("Ensuring idempotency in Amazon EC2
// API requests"), so a call whose answer was lost (after the SDK's own
// retries) is followed by one look at the address and, unless it shows id,
// the call again; an address or instance EC2 does not show yet (eventual
// consistency) is asked for again at the NewlyListed pace.
func (s *swapper) associate(ctx context.Context, a fleet.Address, id string) error {
	var last error
	err := fleet.NewlyListed.Scaled(s.opts.WaitDelay).AtOnce().Wait(ctx, s.clock, func(ctx context.Context) (bool, error) {
		_, last = s.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(a.AllocationID), InstanceId: aws.String(id), AllowReassociation: aws.Bool(true)})
		switch {
		case last == nil:
			return true, nil
		case fleet.Unanswered(last) && ctx.Err() == nil:
			out, err := s.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{a.AllocationID}})
			if err != nil && !fleet.HasCode(err, "InvalidAllocationID.NotFound") {
				return false, fmt.Errorf("reading address %s back after a move whose answer was lost: %w", a.PublicIP, err)
			}
			return err == nil && len(out.Addresses) == 1 && aws.ToString(out.Addresses[0].InstanceId) == id, nil
		case fleet.HasCode(last, "InvalidAllocationID.NotFound", "InvalidInstanceID.NotFound", "IncorrectInstanceState"):
			return false, nil
		}
		return false, last
	})
	if errors.Is(err, fleet.ErrWaitTimeout) {
		return fmt.Errorf("swap: moving address %s to %s: %v, still after %s; run `mage deploy` again", a.PublicIP, id, last, err)
	}
	if err != nil {
		return fmt.Errorf("swap: moving address %s to %s: %w; check the ec2:AssociateAddress permission", a.PublicIP, id, err)
	}
	return nil
}

// recordLive tags the new build's AMI live since now (its gate passed) and
// the builds it replaces live until now: rollback goes to the build live
// most recently. When the address did not move (unchanged), it tags only
// what a run that died before recording it left untagged. Failing to tag is
// logged, not fatal: the cutover happened.
func (s *swapper) recordLive(ctx context.Context, in fleet.Instance, prev []fleet.Instance, unchanged bool) {
	now := fleet.TimeTag(s.clock.Now())
	if in.ImageID != "" {
		tagIt := true
		if unchanged {
			out, err := s.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{in.ImageID}})
			tagIt = err == nil && len(out.Images) == 1 && fleet.FromEC2Image(out.Images[0]).LiveSince.IsZero()
		}
		if tagIt {
			if _, err := s.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{in.ImageID},
				Tags: []ec2types.Tag{fleet.Tag(fleet.TagLiveSince, now), fleet.Tag(fleet.TagGate, fleet.GatePassed)}}); err != nil {
				s.log.WithError(err).Warnf("recording that AMI %s went live failed; check the ec2:CreateTags permission", in.ImageID)
			}
		}
	}
	var old []string
	for _, p := range prev {
		if p.ImageID != "" && p.ImageID != in.ImageID && !slices.Contains(old, p.ImageID) {
			old = append(old, p.ImageID)
		}
	}
	if len(old) > 0 {
		if _, err := s.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: old, Tags: []ec2types.Tag{fleet.Tag(fleet.TagLiveUntil, now)}}); err != nil {
			s.log.WithError(err).Warnf("recording that AMI(s) %s stopped being live failed; check the ec2:CreateTags permission", strings.Join(old, ", "))
		}
	}
}

// writeRecord points the record at the address in one transactional batch:
// the record as read is deleted (its exact values, so a record someone
// changed meanwhile makes the batch fail rather than be overwritten) and
// the A record created; then it waits for INSYNC.
func (s *swapper) writeRecord(ctx context.Context, zone fleet.Zone, rec fleet.Record, ip string) (string, error) {
	var changes []types.Change
	if rec.Type != "" {
		changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: rec.RecordSet()})
	}
	changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: fleet.AddressRecordSet(rec.Name, ip, s.cfg.TTL)})
	out, err := fleet.ChangeRecordSets(ctx, s.r53, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zone.ID),
		ChangeBatch:  &types.ChangeBatch{Comment: aws.String(fmt.Sprintf("blog %s: %s → the site's Elastic IP %s", s.cfg.Site, rec.Name, ip)), Changes: changes},
	}, s.clock)
	if err != nil {
		if !fleet.HasCode(err, "InvalidChangeBatch") && !(fleet.Unanswered(err) && ctx.Err() == nil) {
			return "", fmt.Errorf("swap: pointing %s at %s: %w; check the route53:ChangeResourceRecordSets permission", rec.Name, ip, err)
		}
		// Refused because the record is not as read, or no answer: read it again.
		now, rerr := fleet.ReadRecord(ctx, s.r53, zone, s.cfg.Domain)
		if rerr != nil {
			return "", fmt.Errorf("swap: pointing %s at %s: %w; then reading it back: %v", rec.Name, ip, err, rerr)
		}
		if !now.OnAddress(ip, s.cfg.TTL) {
			return "", fmt.Errorf("swap: pointing %s at %s: %w; the record is now %s %s (TTL %d): it changed meanwhile, run `mage deploy` again", rec.Name, ip, err, now.Type, now.Target, now.TTL)
		}
		s.log.Infof("%s → %s already (an earlier answer was lost)", rec.Name, ip)
		return "", nil
	}
	id := strings.TrimPrefix(aws.ToString(out.ChangeInfo.Id), "/change/")
	s.log.Infof("%s A → %s (was %s %s); waiting for Route53 to apply change %s everywhere", rec.Name, ip, orNone(rec.Type), orNone(rec.Target), id)
	if err := fleet.WaitInsync(ctx, s.r53, aws.ToString(out.ChangeInfo.Id), s.clock, s.opts.WaitDelay); err != nil {
		return id, fmt.Errorf("swap: %s: %w; the address already serves the new build, run `mage deploy` again to finish", rec.Name, err)
	}
	return id, nil
}

// sweep terminates the site's leftovers: candidates of runs that died,
// instances whose grace ended, anything nothing sends readers to and not
// in a grace. The caller holds the lease, so no other run's candidate is
// among them. Failures are logged: the deploy succeeded.
func (s *swapper) sweep(ctx context.Context, zone fleet.Zone, live string) []string {
	insts, err := fleet.SiteInstances(ctx, s.ec2, s.cfg.Site)
	if err != nil {
		s.log.WithError(err).Warn("listing leftovers failed; mage prune terminates them")
		return []string{}
	}
	now := s.clock.Now()
	var ids []string
	for _, in := range insts {
		if in.ID == live || in.Role == fleet.RoleDraining && now.Before(in.RetireAfter) {
			continue
		}
		ids = append(ids, in.ID)
	}
	done, _, err := fleet.TerminateIdle(ctx, s.ec2, s.guard(zone), ids, s.log)
	if err != nil {
		s.log.WithError(err).Warn("terminating leftovers failed; mage prune terminates them")
	}
	if len(done) > 0 {
		s.log.Infof("terminated %s, which nothing sends readers to", strings.Join(done, ", "))
	}
	if done == nil {
		done = []string{}
	}
	return done
}

// tag sets tags on instances.
func (s *swapper) tag(ctx context.Context, in *ec2.CreateTagsInput) error {
	if _, err := s.ec2.CreateTags(ctx, in); err != nil {
		return fmt.Errorf("swap: tagging %s: %w; check the ec2:CreateTags permission", strings.Join(in.Resources, ", "), err)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func orGone(state string, found bool) string {
	if !found {
		return "gone"
	}
	return state
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// DeploySummary says in one line what a deploy did.
func DeploySummary(lr *launch.Receipt, sr *Receipt) string {
	if lr.AlreadyLive && sr.Unchanged && len(sr.Terminated) == 0 {
		return fmt.Sprintf("build %s is already live on %s behind %s → %s: nothing created or changed", lr.BuildID, lr.InstanceID, sr.Record, sr.Address)
	}
	s := fmt.Sprintf("build %s is live on %s: %s → %s → %s", lr.BuildID, lr.InstanceID, sr.Record, sr.Address, sr.InstanceID)
	if sr.ChangeID != "" {
		s += fmt.Sprintf(" (record written: was %s)", orNone(sr.OldRecord))
	}
	if len(sr.Draining) > 0 {
		s += fmt.Sprintf("; %s kept for a quick rollback until %s", strings.Join(sr.Draining, ", "), fleet.TimeTag(sr.RetireAfter))
	}
	if len(sr.Terminated) > 0 {
		s += fmt.Sprintf("; terminated %s", strings.Join(sr.Terminated, ", "))
	}
	return s
}

// Preflight checks, before anything is built or created, that a swap can
// be made: the configuration, the hosted zone, and a record the tool can
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
