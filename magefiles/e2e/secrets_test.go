package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/rollback"

	"github.com/unikernel-blog/blog/magefiles/fleet"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/logx"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoCredentialReachesALogLine deploys with credentials shaped like real
// ones (a long-term key id, its secret and a session token) at
// LOG_LEVEL=debug, through logx as production logs: bake, two deploys, a
// failed health gate whose console output prints the secret, rollback and
// prune. No line holds the key id, the secret or the token. The SDK's own
// request logging stays off, whatever LOG_LEVEL says.
func TestNoCredentialReachesALogLine(t *testing.T) {
	const (
		keyID  = "AKIAIOSFODNN7EXAMPLE"
		secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
		token  = "IQoJb3JpZ2luX2VjEFakeSessionToken/K7MDENG+bPxRfiCY=="
	)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			e := fleettest.NewEnv(t, false, awsharness.Options{})
			e.C.UploadParallel = 4
			t.Setenv("AWS_ACCESS_KEY_ID", keyID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
			t.Setenv("AWS_SESSION_TOKEN", token)
			t.Setenv("LOG_LEVEL", "debug")
			t.Setenv("LOG_FORMAT", format)
			var out lockedBuffer
			l, err := logx.New(&out, os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			if l.GetLevel() != logrus.DebugLevel {
				t.Fatalf("level %v, want debug", l.GetLevel())
			}
			e.Log = l.WithField("step", "deploy")
			ctx := context.Background()

			cfg, err := awscfg.Load(ctx, e.C, "test")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ClientLogMode != 0 {
				t.Fatalf("the SDK logs requests (ClientLogMode %v): signatures and headers would reach the log", cfg.ClientLogMode)
			}

			deploy := func(build string) error {
				fleettest.WriteImage(t, e.C, build)
				if _, err := bake.Bake(ctx, bake.Options{Config: e.C, Log: e.Log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond}); err != nil {
					t.Fatal(err)
				}
				_, _, err := e.Deploy(ctx)
				return err
			}
			for _, b := range []string{"build1", "build2"} {
				if err := deploy(b); err != nil {
					t.Fatal(err)
				}
			}
			// A kernel that prints the credentials it was (wrongly) given:
			// the failed gate logs its console output.
			e.H.Calls.OnCall(func(c awsharness.Call) {
				if c.Operation != "GetConsoleOutput" {
					return
				}
				ids, _ := e.H.Model.InstancesTagged(context.Background(), fleet.TagSite, e.C.Site)
				for _, id := range ids {
					e.H.Model.SetConsoleOutput(id, "boot: AWS_ACCESS_KEY_ID="+keyID+"\nboot: aws_secret_access_key = "+secret+"\nboot: token "+token+"\n")
				}
			})
			e.Builds.Break("build3", http.StatusServiceUnavailable, "")
			e.C.HealthTimeout = 100 * time.Millisecond
			if err := deploy("build3"); !errors.Is(err, launch.ErrUnhealthy) {
				t.Fatalf("broken build: %v", err)
			} else {
				e.Log.WithError(err).Error("deploy failed") // as mage reports it
			}
			e.C.HealthTimeout = 5 * time.Second
			if _, err := rollback.Rollback(ctx, e.LaunchOptions(), e.SwapOptions()); err != nil {
				t.Fatal(err)
			}
			e.C.KeepImages = 1
			if _, err := fleet.Prune(ctx, e.FleetOptions(), &out, true); err != nil {
				t.Fatal(err)
			}

			log := out.String()
			if n := strings.Count(log, "\n"); n < 20 || !strings.Contains(log, "console") {
				t.Fatalf("only %d log lines, or no console output logged: the flow did not run as meant:\n%s", n, log)
			}
			for name, s := range map[string]string{"access key id": keyID, "secret access key": secret, "session token": token} {
				if strings.Contains(log, s) {
					t.Errorf("the %s reached the log:\n%s", name, log)
				}
			}
			if n := strings.Count(log, logx.Redacted); n < 3 {
				t.Errorf("%d redactions, want the console's three credentials blanked:\n%s", n, log)
			}
		})
	}
}
