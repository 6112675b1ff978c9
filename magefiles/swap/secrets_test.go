package swap_test

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

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"
	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/logx"
	"github.com/unikernel-blog/blog/magefiles/swap"
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
			e := newEnv(t, false, awstest.Options{})
			e.c.UploadParallel = 4
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
			e.log = l.WithField("step", "deploy")
			ctx := context.Background()

			cfg, err := awscfg.Load(ctx, e.c, "test")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ClientLogMode != 0 {
				t.Fatalf("the SDK logs requests (ClientLogMode %v): signatures and headers would reach the log", cfg.ClientLogMode)
			}

			deploy := func(build string) error {
				writeImage(t, e, build)
				if _, err := bake.Bake(ctx, bake.Options{Config: e.c, Log: e.log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond}); err != nil {
					t.Fatal(err)
				}
				_, _, err := e.deploy(ctx)
				return err
			}
			for _, b := range []string{"build1", "build2"} {
				if err := deploy(b); err != nil {
					t.Fatal(err)
				}
			}
			// A kernel that prints the credentials it was (wrongly) given:
			// the failed gate logs its console output.
			e.h.Calls.OnCall(func(c awstest.Call) {
				if c.Operation != "GetConsoleOutput" {
					return
				}
				ids, _ := e.h.Shim.InstancesTagged(context.Background(), launch.TagSite, e.c.Site)
				for _, id := range ids {
					e.h.Shim.SetConsoleOutput(id, "boot: AWS_ACCESS_KEY_ID="+keyID+"\nboot: aws_secret_access_key = "+secret+"\nboot: token "+token+"\n")
				}
			})
			e.builds.Break("build3", http.StatusServiceUnavailable, "")
			e.c.HealthTimeout = 100 * time.Millisecond
			if err := deploy("build3"); !errors.Is(err, launch.ErrUnhealthy) {
				t.Fatalf("broken build: %v", err)
			} else {
				e.log.WithError(err).Error("deploy failed") // as mage reports it
			}
			e.c.HealthTimeout = 5 * time.Second
			if _, err := swap.Rollback(ctx, e.sopts(), e.lopts()); err != nil {
				t.Fatal(err)
			}
			e.c.KeepImages = 1
			if _, err := swap.Prune(ctx, e.sopts(), &out, true); err != nil {
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
