// Package awscfg loads the AWS SDK's default configuration the same way for
// every step that talks to AWS: the standard chain (AWS_PROFILE, AWS_REGION,
// web identity in CI, AWS_ENDPOINT_URL for an emulator) with deploy.region
// when set, and nothing custom for endpoints.
package awscfg

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// maxAttempts is the SDK retryer's attempts per call. The default 3 gives
// up on a short throttling burst; a deploy would rather wait a little.
const maxAttempts = 8

// credentialsTimeout bounds finding credentials: the chain may ask the
// instance metadata service or STS, which must not hang a run.
const credentialsTimeout = 30 * time.Second

// Load returns the configuration for step. Extra load options come last
// (tests shorten the retry backoff with them).
func Load(ctx context.Context, c *config.Config, step string, extra ...func(*awsconfig.LoadOptions) error) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRetryMaxAttempts(maxAttempts)}
	if c.Region != "" {
		opts = append(opts, awsconfig.WithRegion(c.Region))
	}
	opts = append(opts, extra...)
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("%s: loading the AWS configuration: %w; check AWS_PROFILE and ~/.aws/config", step, err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("%s: no AWS region: set deploy.region in %s, %s or AWS_REGION", step, config.File, config.EnvVar("region"))
	}
	return cfg, nil
}

// LoadWithCredentials is Load, then makes sure credentials can be had, so
// a run without them stops with that fix rather than with the first API
// call's error about a permission.
func LoadWithCredentials(ctx context.Context, c *config.Config, step string, extra ...func(*awsconfig.LoadOptions) error) (aws.Config, error) {
	cfg, err := Load(ctx, c, step, extra...)
	if err != nil {
		return cfg, err
	}
	rctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(rctx); err != nil {
		return aws.Config{}, fmt.Errorf("%s: no usable AWS credentials (%w); set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "+
			"or in CI assume the deploy role through OIDC (README: \"Set up AWS once\"); `mage preflight` checks a set-up", step, err)
	}
	return cfg, nil
}
