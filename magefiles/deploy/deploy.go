// Package deploy is one deploy of a site once its image is built, as
// `mage deploy` runs it: holding the site's deploy lease (one run at a time,
// arbitrated by Route53), Bake → Launch → Swap; then, the lease released so a
// rollback or the next deploy may run, Retire waits out the grace of what
// Swap replaced and terminates it. It composes the steps; it adds no step.
package deploy

import (
	"context"
	"errors"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

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
}

// Result is what each step did.
type Result struct {
	Bake    *bake.Receipt
	Launch  *launch.Receipt
	Swap    *swap.Receipt
	Retired []string // instances terminated when their grace ended
}

// Run deploys: the steps under the lease, then the grace.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Config == nil {
		return nil, errors.New("deploy: no configuration given")
	}
	r := &Result{}
	err := fleet.WithLease(ctx, opts.fleetOptions(), "deploy", func(ctx context.Context) error {
		var err error
		if opts.Bake != nil {
			bo := *opts.Bake
			bo.Config, bo.Log, bo.Exclusive = opts.Config, or(bo.Log, opts.Log), true
			if r.Bake, err = bake.Bake(ctx, bo); err != nil {
				return err
			}
		}
		lo := opts.Launch
		lo.Config, lo.Log = opts.Config, or(lo.Log, opts.Log)
		if r.Launch, err = launch.Launch(ctx, lo); err != nil {
			return err
		}
		so := opts.swapOptions()
		so.InstanceID = r.Launch.InstanceID
		r.Swap, err = swap.Swap(ctx, so)
		return err
	})
	if err != nil {
		return r, err
	}
	if r.Retired, err = swap.Retire(ctx, opts.swapOptions()); err != nil {
		return r, err
	}
	return r, nil
}

func (o Options) fleetOptions() fleet.Options {
	return fleet.Options{Config: o.Config, Log: o.Log, Clock: o.Swap.Clock, Lease: o.Lease, WaitDelay: o.Swap.WaitDelay, AWSOptions: o.AWSOptions}
}

func (o Options) swapOptions() swap.Options {
	so := o.Swap
	so.Config, so.Log, so.Lease = o.Config, or(so.Log, o.Log), o.Lease
	return so
}

func or(a, b *logrus.Entry) *logrus.Entry {
	if a != nil {
		return a
	}
	return b
}
