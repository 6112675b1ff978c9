// Package deploy is one deploy of a site once its image is built, as
// `mage deploy` runs it: holding the site's deploy lease (one run at a time,
// arbitrated by Route53), Bake with, beside it, what Launch and Swap need
// that does not depend on the AMI (the security group made exact; the zone,
// the record and the site's address looked up); then Launch → Swap; then, the lease
// released so a rollback or the next deploy may run, Retire waits out the
// grace of what Swap replaced and terminates it. It composes the steps; it
// adds no step. Every deploy records its timeline in _build/deploy.json.
package deploy

import (
	"context"
	"errors"
	"sync"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/swap"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// ReceiptName is the deploy's receipt under _build/ (without .json).
const ReceiptName = "deploy"

// Receipt is what the last deploy did, and how long each phase took:
// _build/deploy.json.
type Receipt struct {
	BuildID  string           `json:"build_id,omitempty"`
	OK       bool             `json:"ok"`
	Error    string           `json:"error,omitempty"`
	Timeline timeline.Summary `json:"timeline"`
}

// Options configure a deploy. Config is required; the steps' options carry
// their own settings (their Config and Log are set from these).
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	// Bake is nil to take the AMI of Bake's receipt as it stands.
	Bake   *bake.Options
	Launch launch.Options
	Swap   swap.Options
	// Lease tunes the deploy lease (its Op and Wait are set here).
	Lease fleet.LeaseOptions
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
	// Timeline is where the phases go; the Deploy target's has the site,
	// unikernel and image before. nil starts one here, on Swap.Clock.
	Timeline *timeline.Recorder
}

// Result is what each step did.
type Result struct {
	Bake     *bake.Receipt
	Launch   *launch.Receipt
	Swap     *swap.Receipt
	Retired  []string // instances terminated when their grace ended
	Timeline timeline.Summary
}

// Run deploys: the steps under the lease, then the grace. It writes the
// timeline to _build/deploy.json whether the deploy succeeded or not.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Config == nil {
		return nil, errors.New("deploy: no configuration given")
	}
	tl := opts.Timeline
	if tl == nil {
		tl = timeline.New(fleet.OrRealClock(opts.Swap.Clock).Now)
	}
	r := &Result{}
	err := run(ctx, opts, tl, r)
	r.Timeline = tl.Summary()
	rc := &Receipt{OK: err == nil, Timeline: r.Timeline}
	switch {
	case r.Launch != nil:
		rc.BuildID = r.Launch.BuildID
	case r.Bake != nil:
		rc.BuildID = r.Bake.BuildID
	}
	if err != nil {
		rc.Error = err.Error()
	}
	if werr := receipt.Write(opts.Config.BuildDir(), ReceiptName, rc); werr != nil {
		or(opts.Log, fleet.StepLog(nil, "deploy")).WithError(werr).Warn("writing the deploy's timeline to its receipt failed")
	}
	return r, err
}

func run(ctx context.Context, opts Options, tl *timeline.Recorder, r *Result) error {
	seq := tl.Seq()
	seq.Next("lease")
	err := fleet.WithLease(ctx, opts.fleetOptions(), "deploy", func(ctx context.Context) error {
		seq.End()
		defer seq.Next("release")
		lo := opts.Launch
		lo.Config, lo.Log, lo.Timeline = opts.Config, or(lo.Log, opts.Log), tl
		so := opts.swapOptions(tl)
		var (
			sg    string
			ready *swap.Ready
		)
		err := together(ctx,
			func(ctx context.Context) error {
				if opts.Bake == nil {
					return nil
				}
				bo := *opts.Bake
				bo.Config, bo.Log, bo.Exclusive, bo.Timeline = opts.Config, or(bo.Log, opts.Log), true, tl
				if bo.Clock == nil {
					bo.Clock = opts.Swap.Clock
				}
				var err error
				r.Bake, err = bake.Bake(ctx, bo)
				return err
			},
			func(ctx context.Context) (err error) {
				defer tl.Begin("security group")()
				sg, err = launch.SecurityGroup(ctx, lo)
				return err
			},
			func(ctx context.Context) (err error) {
				defer tl.Begin("address")()
				ready, err = swap.Prepare(ctx, so)
				return err
			},
		)
		if err != nil {
			return err
		}
		lo.SecurityGroupID = sg
		if r.Launch, err = launch.Launch(ctx, lo); err != nil {
			return err
		}
		so.InstanceID, so.Ready = r.Launch.InstanceID, ready
		r.Swap, err = swap.Swap(ctx, so)
		return err
	})
	seq.End()
	if err != nil {
		return err
	}
	if r.Retired, err = swap.Retire(ctx, opts.swapOptions(tl)); err != nil {
		return err
	}
	return nil
}

// together runs fns at once and waits for every one. The first to fail
// cancels the others, each of which undoes what it made (every step runs
// its own undo on cancellation); all failures are returned, except the
// cancellations that first failure caused, which say nothing new.
func together(ctx context.Context, fns ...func(context.Context) error) error {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(fns))
	first := -1
	var once sync.Once
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = fn(gctx); errs[i] != nil {
				once.Do(func() { first = i })
				cancel()
			}
		}()
	}
	wg.Wait()
	var failed []error
	for i, err := range errs {
		if err == nil || i != first && ctx.Err() == nil && errors.Is(err, context.Canceled) {
			continue
		}
		failed = append(failed, err)
	}
	return errors.Join(failed...)
}

func (o Options) fleetOptions() fleet.Options {
	return fleet.Options{Config: o.Config, Log: o.Log, Clock: o.Swap.Clock, Lease: o.Lease, WaitDelay: o.Swap.WaitDelay, AWSOptions: o.AWSOptions}
}

func (o Options) swapOptions(tl *timeline.Recorder) swap.Options {
	so := o.Swap
	so.Config, so.Log, so.Lease, so.Timeline = o.Config, or(so.Log, o.Log), o.Lease, tl
	return so
}

func or(a, b *logrus.Entry) *logrus.Entry {
	if a != nil {
		return a
	}
	return b
}
