package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
)

// Options configure Status, Prune, Destroy and Unlock. Config is required.
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	Clock  Clock // default: real time
	// Lease tunes taking the deploy lease (Op and Wait are set here: Wait is
	// deploy.lease_wait).
	Lease LeaseOptions
	// WaitDelay is the first poll interval of the waiters (INSYNC, instances
	// terminated); default the SDK's.
	WaitDelay time.Duration
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

// Clock is what tells the time and waits, so tests need not sleep through a
// grace, a lease or a retry: a test clock's time moves by the waits asked of it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ec2API is the part of EC2 Status, Prune and Destroy use.
type ec2API interface {
	EC2Reader
	ec2.DescribeSecurityGroupsAPIClient
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DeregisterImage(context.Context, *ec2.DeregisterImageInput, ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error)
	DeleteSnapshot(context.Context, *ec2.DeleteSnapshotInput, ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
	DisassociateAddress(context.Context, *ec2.DisassociateAddressInput, ...func(*ec2.Options)) (*ec2.DisassociateAddressOutput, error)
	ReleaseAddress(context.Context, *ec2.ReleaseAddressInput, ...func(*ec2.Options)) (*ec2.ReleaseAddressOutput, error)
	DeleteSecurityGroup(context.Context, *ec2.DeleteSecurityGroupInput, ...func(*ec2.Options)) (*ec2.DeleteSecurityGroupOutput, error)
}

// client is one Status, Prune or Destroy run's clients and settings.
type client struct {
	opts  Options
	cfg   *config.Config
	log   *logrus.Entry
	ec2   ec2API
	r53   Route53Writer
	ssm   SSMAPI // the site's TLS parameters (Destroy, with https)
	clock Clock
}

// connect checks what needs no AWS call, then loads the SDK configuration
// with the caller's credentials.
func connect(ctx context.Context, opts Options, step string) (*client, error) {
	c := opts.Config
	if c == nil {
		return nil, errors.New(step + ": no configuration given")
	}
	if c.Site == "" {
		return nil, config.Problems{step + " needs site: set deploy.site"}
	}
	awsCfg, err := awscfg.LoadWithCredentials(ctx, c, step, opts.AWSOptions...)
	if err != nil {
		return nil, err
	}
	return &client{opts: opts, cfg: c, log: StepLog(opts.Log, step), ec2: ec2.NewFromConfig(awsCfg), r53: route53.NewFromConfig(awsCfg), ssm: ssm.NewFromConfig(awsCfg), clock: OrRealClock(opts.Clock)}, nil
}

// WithLease runs fn holding the site's deploy lease (taken as op, waiting up
// to deploy.lease_wait for another run's), under the context the lease gives
// (it ends if the lease is lost), and releases it after. Everything that
// changes a site runs so: one run at a time.
func WithLease(ctx context.Context, opts Options, op string, fn func(ctx context.Context) error) error {
	s, err := connect(ctx, opts, op)
	if err != nil {
		return err
	}
	return s.withLease(ctx, opts, op, func(ctx context.Context, _ Zone) error { return fn(ctx) })
}

// withLease is WithLease with the client's connection, giving fn the zone.
func (s *client) withLease(ctx context.Context, opts Options, op string, fn func(ctx context.Context, zone Zone) error) error {
	if err := s.cfg.Require(op, "domain"); err != nil {
		return err
	}
	zone, err := FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return err
	}
	lo := opts.Lease
	lo.Op, lo.Wait, lo.Log = op, s.cfg.LeaseWait, s.log
	lctx, lease, err := AcquireLease(ctx, s.r53, zone, s.cfg.Domain, s.cfg.Site, lo)
	if err != nil {
		return err
	}
	err = fn(lctx, zone)
	if cause := context.Cause(lctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		err = fmt.Errorf("%w (%v)", cause, err)
	}
	if rerr := lease.Release(ctx); rerr != nil {
		s.log.WithError(rerr).Warn("releasing the deploy lease failed")
	}
	return err
}

// StepLog is log, or the standard logger with the step's field.
func StepLog(log *logrus.Entry, step string) *logrus.Entry {
	if log != nil {
		return log
	}
	return logrus.NewEntry(logrus.StandardLogger()).WithField("step", step)
}

// OrRealClock is c, or the wall clock.
func OrRealClock(c Clock) Clock {
	if c != nil {
		return c
	}
	return RealClock{}
}
