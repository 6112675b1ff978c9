package fleet

import (
	"context"
	"errors"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
)

// Options configure Status and Prune. Config is required.
type Options struct {
	Config *config.Config
	Log    *logrus.Entry
	Clock  Clock // default: real time
	// AWSOptions are added to the SDK's default configuration loading.
	AWSOptions []func(*awsconfig.LoadOptions) error
}

// Clock is what waits, so tests need not sleep through a drain or a retry.
type Clock interface {
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ec2API is the part of EC2 Status and Prune use.
type ec2API interface {
	EC2Reader
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DeregisterImage(context.Context, *ec2.DeregisterImageInput, ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error)
	DeleteSnapshot(context.Context, *ec2.DeleteSnapshotInput, ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
}

// client is one Status or Prune run's clients and settings.
type client struct {
	cfg   *config.Config
	log   *logrus.Entry
	ec2   ec2API
	r53   Route53Reader
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
	return &client{cfg: c, log: StepLog(opts.Log, step), ec2: ec2.NewFromConfig(awsCfg), r53: route53.NewFromConfig(awsCfg), clock: OrRealClock(opts.Clock)}, nil
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
