package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/sirupsen/logrus"
)

// One run at a time changes a site: deploy, rollback, prune with APPLY and
// destroy each hold the site's deploy lease, a TXT record in the site's
// hosted zone that Route53 itself arbitrates. Taking it is a CREATE, which
// Route53 refuses atomically when the record exists ("Tried to create
// resource record set ... but it already exists"); renewing, releasing and
// taking over an expired one are a DELETE of the exact value read, in the
// same transactional batch as the CREATE of the new one, which Route53
// refuses when the value changed meanwhile. So two runs can never both
// believe they hold it.
//
// The record names its holder, what it does, when it started and when it
// expires. A holder renews it while it runs; a holder that died stops
// renewing and the lease expires. A holder on this machine whose process is
// gone is known dead at once. `mage unlock` breaks a lease by hand.

const (
	// LeaseTTL is how long a lease lasts unless renewed: long enough that a
	// renewal delayed by throttling does not lose it, short enough that a
	// run that died holds the site up for minutes, not hours.
	LeaseTTL = 10 * time.Minute
	// leaseRecordTTL is the TXT record's TTL; no resolver needs it.
	leaseRecordTTL = 60
)

// ErrLeaseLost is the cause of a run's context ending because its lease was
// taken over (it expired, or was broken by hand): the run must stop changing
// the site.
var ErrLeaseLost = errors.New("the site's deploy lease was taken over by another run")

// LeaseName is the TXT record holding the deploy lease of the site served at domain.
func LeaseName(domain string) string { return "_deploy-lease." + FQDN(domain) }

// Holder is what a lease record says of the run holding it.
type Holder struct {
	Owner   string    // unique per run
	Op      string    // deploy, rollback, prune, destroy, …
	Host    string    // the machine's name, for people
	Start   time.Time // when the run took the lease
	Expires time.Time // when the lease ends unless renewed
	// Boot, PID and PIDStart tell a process on this machine, so a run here
	// can see the holder is gone without waiting for the expiry.
	Boot     string
	PID      int
	PIDStart string
}

func (h Holder) String() string {
	return fmt.Sprintf("%s (%s on %s, pid %d, since %s, expires %s)", h.Owner, h.Op, h.Host, h.PID, TimeTag(h.Start), TimeTag(h.Expires))
}

// values is the TXT record's strings: one key=value each, quoted.
func (h Holder) values() string {
	kv := []string{"owner=" + h.Owner, "op=" + h.Op, "host=" + h.Host, "start=" + TimeTag(h.Start), "expires=" + TimeTag(h.Expires),
		"boot=" + h.Boot, "pid=" + strconv.Itoa(h.PID), "pidstart=" + h.PIDStart}
	for i, s := range kv {
		kv[i] = strconv.Quote(s)
	}
	return strings.Join(kv, " ")
}

// parseHolder reads a lease record's value.
func parseHolder(v string) Holder {
	var h Holder
	for _, f := range strings.Fields(v) {
		s, err := strconv.Unquote(f)
		if err != nil {
			continue
		}
		k, val, _ := strings.Cut(s, "=")
		switch k {
		case "owner":
			h.Owner = val
		case "op":
			h.Op = val
		case "host":
			h.Host = val
		case "start":
			h.Start = parseTime(val)
		case "expires":
			h.Expires = parseTime(val)
		case "boot":
			h.Boot = val
		case "pid":
			h.PID, _ = strconv.Atoi(val)
		case "pidstart":
			h.PIDStart = val
		}
	}
	return h
}

// LeaseWaitReport is how often a run waiting for another's lease says so at
// info level (each look in between is at debug): about once a minute, so a
// CI log waiting up to lease_wait shows progress without a line every look.
const LeaseWaitReport = time.Minute

// LeaseOptions tune taking a lease.
type LeaseOptions struct {
	Op    string        // what the run does, for the record and for people
	Wait  time.Duration // how long to wait for another run's lease (deploy.lease_wait); 0 takes none
	Poll  time.Duration // between looks at another run's lease; default LeaseHeld's
	TTL   time.Duration // default LeaseTTL
	Renew time.Duration // between renewals; default TTL/4: several tries before it expires
	Clock Clock         // default: real time
	Log   *logrus.Entry
}

// Lease is a held deploy lease.
type Lease struct {
	api    Route53Writer
	zone   Zone
	name   string
	opts   LeaseOptions
	log    *logrus.Entry
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	holder Holder
	value  string // the record's value as written
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// Holder is the lease record as this run wrote it last.
func (l *Lease) Holder() Holder {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

// LeaseHeldError is a lease another run held for longer than the run could wait.
type LeaseHeldError struct {
	Site   string
	Holder Holder
	Waited time.Duration
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("site %s is being changed by another run: its deploy lease is held by %s; waited %s. "+
		"Wait for that run, or raise deploy.lease_wait; if that run is gone, its lease expires at %s, or break it now with `mage unlock`",
		e.Site, e.Holder, e.Waited.Round(time.Second), TimeTag(e.Holder.Expires))
}

// AcquireLease takes the site's deploy lease, waiting up to opts.Wait for
// another run's, and renews it until Release. The context it returns ends,
// with cause ErrLeaseLost, if the lease is lost meanwhile; run the work
// under it.
func AcquireLease(ctx context.Context, api Route53Writer, zone Zone, domain, site string, opts LeaseOptions) (context.Context, *Lease, error) {
	if opts.Poll <= 0 {
		opts.Poll = LeaseHeld.Every
	}
	if opts.TTL <= 0 {
		opts.TTL = LeaseTTL
	}
	if opts.Renew <= 0 {
		opts.Renew = opts.TTL / 4
	}
	opts.Clock = OrRealClock(opts.Clock)
	if opts.Op == "" {
		opts.Op = "deploy"
	}
	l := &Lease{api: api, zone: zone, name: LeaseName(domain), opts: opts, log: StepLog(opts.Log, opts.Op)}
	me := thisProcess()
	me.Owner, me.Op = newOwner(me.Host), opts.Op
	start := opts.Clock.Now()
	var shown Holder
	var reported time.Time // when the wait was last logged at info
	wrote := false         // a CREATE went out: on failure, ours may stand
	defer func() {
		if wrote && l.cancel == nil {
			l.abandon(ctx, me.Owner)
		}
	}()
	var held Holder // whom the last look found holding it
	var value string
	look := func(ctx context.Context) (bool, error) {
		for {
			now := opts.Clock.Now()
			me.Start, me.Expires = now, now.Add(opts.TTL)
			cur, found, err := l.read(ctx)
			if err != nil {
				return false, err
			}
			var taken bool
			value = me.values()
			switch {
			case found && cur.Owner == me.Owner:
				// Our own CREATE, whose answer was lost: held.
				me, value, taken = cur.Holder, cur.value, true
			case !found:
				wrote = true
				taken, err = l.write(ctx, nil, me)
			case !now.Before(cur.Expires) || cur.gone():
				why := "expired at " + TimeTag(cur.Expires)
				if now.Before(cur.Expires) {
					why = "its process on this machine is gone"
				}
				l.log.Warnf("taking over the deploy lease of %s: %s", cur, why)
				wrote = true
				taken, err = l.write(ctx, &cur, me)
			default:
				held = cur.Holder
				waited := now.Sub(start)
				left := max(opts.Wait-waited, 0).Round(time.Second)
				switch {
				case cur.Owner != shown.Owner && waited < opts.Wait:
					l.log.Infof("waiting for the deploy lease of site %s, held by %s; waiting up to %s more", site, cur.Holder, left)
					shown, reported = cur.Holder, now
				case now.Sub(reported) >= LeaseWaitReport:
					// A CI log shows the run is alive and why it is idle.
					l.log.Infof("still waiting for the deploy lease held by %s on %s (%s, since %s), %s left", cur.Owner, cur.Host, cur.Op, TimeTag(cur.Start), left)
					reported = now
				default:
					l.log.Debugf("still waiting for the deploy lease (%s so far)", waited.Round(time.Second))
				}
				return false, nil
			}
			if err != nil || taken {
				return taken, err
			}
			// Someone else changed it first: look again at once.
		}
	}
	err := LeaseHeld.Scaled(opts.Poll).Within(opts.Wait).Wait(ctx, opts.Clock, look)
	if errors.Is(err, ErrWaitTimeout) {
		return nil, nil, &LeaseHeldError{Site: site, Holder: held, Waited: opts.Clock.Now().Sub(start)}
	}
	if err != nil {
		return nil, nil, err
	}
	l.holder, l.value = me, value
	l.log.Infof("holding the deploy lease of site %s (%s) until %s, renewed while the run lasts", site, me.Op, TimeTag(me.Expires))
	runCtx, cancel := context.WithCancelCause(ctx)
	l.cancel = cancel
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.renew(runCtx)
	return runCtx, l, nil
}

// abandon deletes a lease record of owner that a write whose answer never
// came may have left, when taking the lease failed (cancelled, say): it
// would otherwise hold the site until it expires.
func (l *Lease) abandon(ctx context.Context, owner string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
	defer cancel()
	cur, found, err := l.read(cctx)
	if err != nil || !found || cur.Owner != owner {
		return
	}
	if _, err := ChangeRecordSets(cctx, l.api, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(l.zone.ID),
		ChangeBatch: &types.ChangeBatch{Comment: aws.String("blog deploy lease abandoned by " + owner),
			Changes: []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: leaseSet(l.name, cur.value, cur.ttl)}}},
	}, l.opts.Clock); err != nil {
		l.log.WithError(err).Warnf("deleting the deploy lease this run may have taken failed; it expires at %s, or run `mage unlock`", TimeTag(cur.Expires))
	}
}

// current is a lease record as read: its holder and its exact value.
type current struct {
	Holder
	value string
	ttl   int64
}

// read is the lease record as it stands.
func (l *Lease) read(ctx context.Context) (current, bool, error) {
	return readLease(ctx, l.api, l.zone, l.name)
}

func readLease(ctx context.Context, api Route53Reader, zone Zone, name string) (current, bool, error) {
	out, err := api.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
		HostedZoneId: aws.String(zone.ID), StartRecordName: aws.String(name), StartRecordType: types.RRTypeTxt, MaxItems: aws.Int32(1),
	})
	if err != nil {
		return current{}, false, fmt.Errorf("reading the deploy lease %s in zone %s: %w; check the route53:ListResourceRecordSets permission", name, zone.ID, err)
	}
	for _, rr := range out.ResourceRecordSets {
		if FQDN(unescape(aws.ToString(rr.Name))) == name && rr.Type == types.RRTypeTxt && len(rr.ResourceRecords) == 1 {
			v := aws.ToString(rr.ResourceRecords[0].Value)
			return current{Holder: parseHolder(v), value: v, ttl: aws.ToInt64(rr.TTL)}, true, nil
		}
	}
	return current{}, false, nil
}

// write replaces old (nil: none) with h in one transactional batch. taken is
// false when the record was not as read (another run changed it first).
func (l *Lease) write(ctx context.Context, old *current, h Holder) (taken bool, err error) {
	changes := []types.Change{{Action: types.ChangeActionCreate, ResourceRecordSet: leaseSet(l.name, h.values(), leaseRecordTTL)}}
	if old != nil {
		changes = append([]types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: leaseSet(l.name, old.value, old.ttl)}}, changes...)
	}
	_, err = ChangeRecordSets(ctx, l.api, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(l.zone.ID),
		ChangeBatch:  &types.ChangeBatch{Comment: aws.String("blog deploy lease: " + h.Op + " by " + h.Owner), Changes: changes},
	}, l.opts.Clock)
	switch {
	case err == nil:
		return true, nil
	case HasCode(err, "InvalidChangeBatch"), Unanswered(err) && ctx.Err() == nil:
		// Refused because the record changed, or no answer: read it again
		// to learn who holds it (an unanswered CREATE may have been ours).
		return false, nil
	}
	return false, fmt.Errorf("writing the deploy lease %s in zone %s: %w; check the route53:ChangeResourceRecordSets permission (`mage policy`)", l.name, l.zone.ID, err)
}

func leaseSet(name, value string, ttl int64) *types.ResourceRecordSet {
	return &types.ResourceRecordSet{Name: aws.String(name), Type: types.RRTypeTxt, TTL: aws.Int64(ttl), ResourceRecords: []types.ResourceRecord{{Value: aws.String(value)}}}
}

// renew extends the lease every opts.Renew until Release; if the record is
// no longer this run's, the run's context ends with ErrLeaseLost.
func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-l.opts.Clock.After(l.opts.Renew):
		}
		if err := l.extend(ctx); err != nil {
			if errors.Is(err, ErrLeaseLost) {
				l.log.Error(err.Error())
				l.cancel(ErrLeaseLost)
				return
			}
			l.log.WithError(err).Warn("renewing the deploy lease failed; trying again at the next renewal")
		}
	}
}

// extend rewrites the lease with a later expiry.
func (l *Lease) extend(ctx context.Context) error {
	l.mu.Lock()
	old, value := l.holder, l.value
	l.mu.Unlock()
	next := old
	next.Expires = l.opts.Clock.Now().Add(l.opts.TTL)
	taken, err := l.write(ctx, &current{Holder: old, value: value, ttl: leaseRecordTTL}, next)
	if err != nil {
		return err
	}
	if !taken {
		cur, found, err := l.read(ctx)
		switch {
		case err != nil:
			return err
		case !found || cur.Owner != old.Owner:
			return fmt.Errorf("%w: the lease record now says %v", ErrLeaseLost, describe(cur, found))
		}
		next = cur.Holder // our rewrite went through, its answer was lost
	}
	l.mu.Lock()
	l.holder, l.value = next, next.values()
	l.mu.Unlock()
	return nil
}

func describe(c current, found bool) string {
	if !found {
		return "nothing (it was deleted)"
	}
	return c.Holder.String()
}

// Release stops renewing and deletes the lease record if it is still this
// run's. It runs with a fresh context bounded by CleanupTimeout: the run's
// own may be the thing that was cancelled.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	defer l.cancel(nil)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
	defer cancel()
	for attempt := 0; attempt < 3; attempt++ {
		l.mu.Lock()
		h, value := l.holder, l.value
		l.mu.Unlock()
		_, err := ChangeRecordSets(cctx, l.api, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(l.zone.ID),
			ChangeBatch: &types.ChangeBatch{Comment: aws.String("blog deploy lease released by " + h.Owner),
				Changes: []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: leaseSet(l.name, value, leaseRecordTTL)}}},
		}, l.opts.Clock)
		if err == nil {
			l.log.Debugf("released the deploy lease")
			return nil
		}
		if !HasCode(err, "InvalidChangeBatch") && !Unanswered(err) {
			return fmt.Errorf("releasing the deploy lease %s: %w; it expires by itself at %s, or run `mage unlock`", l.name, err, TimeTag(h.Expires))
		}
		cur, found, rerr := l.read(cctx)
		switch {
		case rerr != nil:
			return fmt.Errorf("releasing the deploy lease %s: %w; it expires by itself at %s, or run `mage unlock`", l.name, rerr, TimeTag(h.Expires))
		case !found || cur.Owner != h.Owner:
			return nil // deleted (our DELETE, its answer lost) or taken over: not ours to delete
		}
		l.mu.Lock()
		l.holder, l.value = cur.Holder, cur.value
		l.mu.Unlock()
	}
	return fmt.Errorf("releasing the deploy lease %s: the record kept changing; it expires by itself, or run `mage unlock`", l.name)
}

// ReadLease reports who holds the site's lease; found is false when nobody does.
func ReadLease(ctx context.Context, api Route53Reader, zone Zone, domain string) (Holder, bool, error) {
	c, found, err := readLease(ctx, api, zone, LeaseName(domain))
	return c.Holder, found, err
}

// BreakLease deletes the site's lease whoever holds it (`mage unlock`), and
// says whose it was. Breaking a live run's lease lets it notice at its next
// renewal and stop; until then two runs may act, so break only a lease whose
// run is known to be gone.
func BreakLease(ctx context.Context, api Route53Writer, zone Zone, domain string) (Holder, bool, error) {
	name := LeaseName(domain)
	for attempt := 0; attempt < 3; attempt++ {
		c, found, err := readLease(ctx, api, zone, name)
		if err != nil || !found {
			return Holder{}, false, err
		}
		_, err = ChangeRecordSets(ctx, api, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(zone.ID),
			ChangeBatch: &types.ChangeBatch{Comment: aws.String("blog deploy lease broken by hand"),
				Changes: []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: leaseSet(name, c.value, c.ttl)}}},
		}, nil)
		if err == nil {
			return c.Holder, true, nil
		}
		if !HasCode(err, "InvalidChangeBatch") && !Unanswered(err) {
			return Holder{}, false, fmt.Errorf("deleting the deploy lease %s: %w; check the route53:ChangeResourceRecordSets permission", name, err)
		}
	}
	return Holder{}, false, fmt.Errorf("deleting the deploy lease %s: it kept changing; another run is taking it", name)
}

// thisProcess describes this process for a lease record.
func thisProcess() Holder {
	host, _ := os.Hostname()
	h := Holder{Host: host, PID: os.Getpid()}
	h.Boot, h.PIDStart = processIdentity(h.PID)
	return h
}

func newOwner(host string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if host == "" {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// gone reports a holder that ran on this machine, in this PID namespace,
// whose process no longer exists (or whose PID now belongs to another
// process). A holder elsewhere, or unknown, is not known gone: its lease
// runs to its expiry.
func (h Holder) gone() bool {
	if h.Boot == "" || h.PID <= 0 {
		return false
	}
	boot, _ := processIdentity(os.Getpid())
	if boot != h.Boot {
		return false
	}
	_, start := processIdentity(h.PID)
	return start != h.PIDStart
}

// processIdentity is this machine's boot and PID namespace (Linux: the
// kernel's boot id and /proc/self/ns/pid), and the process's start time in
// clock ticks since boot; "" where unknown.
func processIdentity(pid int) (boot, start string) {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "", ""
	}
	boot = strings.TrimSpace(string(id)) + "/" + ns
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return boot, ""
	}
	// Field 22 is starttime; the command name (field 2) may hold spaces, so
	// count from its closing parenthesis.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) < 20 {
		return boot, ""
	}
	return boot, fields[19]
}
