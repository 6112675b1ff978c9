package awscfg

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// noAWS empties the SDK's credential chain: no keys, no profile files, no
// instance metadata.
func noAWS(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_REGION": "", "AWS_DEFAULT_REGION": "",
	} {
		t.Setenv(k, v)
	}
}

func TestNoRegionNamesTheSettings(t *testing.T) {
	noAWS(t)
	_, err := Load(context.Background(), &config.Config{}, "bake")
	if err == nil || !strings.Contains(err.Error(), "bake: no AWS region: set deploy.region") {
		t.Errorf("error = %v", err)
	}
}

func TestNoCredentialsNameTheFixNotAPermission(t *testing.T) {
	noAWS(t)
	c := &config.Config{Region: "eu-west-1"}
	if _, err := Load(context.Background(), c, "swap"); err != nil {
		t.Fatalf("Load needs no credentials: %v", err)
	}
	_, err := LoadWithCredentials(context.Background(), c, "swap")
	for _, want := range []string{"swap: no usable AWS credentials", "AWS_PROFILE", "OIDC", "mage preflight"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestCredentialsFromTheEnvironmentAreEnough(t *testing.T) {
	noAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	cfg, err := LoadWithCredentials(context.Background(), &config.Config{Region: "eu-west-1"}, "launch")
	if err != nil || cfg.Region != "eu-west-1" {
		t.Errorf("cfg region %q, err %v", cfg.Region, err)
	}
}
