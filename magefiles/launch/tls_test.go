package launch_test

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testca"
	"github.com/unikernel-blog/blog/magefiles/launch"
)

// TestLaunchRefusesACandidateWithoutTheDomainsCertificate: with https, a
// candidate serving the right build under a certificate for another name
// fails the gate and is terminated; one with the domain's certificate passes.
func TestLaunchRefusesACandidateWithoutTheDomainsCertificate(t *testing.T) {
	h := awsharness.Start(t, awsharness.Options{})
	builds := h.StartBuildServer(t)
	c := fleettest.Config(t, "blog.example.com", builds)
	fleettest.Bake(t, h, c, "build1")
	ca := testca.New(t, "test root")
	var serving atomic.Pointer[tls.Certificate] // read by the handshakes
	other := ca.Leaf(t, "other.example.com")
	serving.Store(&other)
	builds.ServeTLS(t, func() (*tls.Certificate, error) { return serving.Load(), nil })
	c.HTTPS, c.HealthURL, c.ACMERoots = true, builds.HTTPSHealthURL(), ca.PEMFile(t)
	log, _ := quietLog()

	_, err := launch.Launch(context.Background(), opts(c, log))
	if !errors.Is(err, launch.ErrCertificate) {
		t.Fatalf("launch with a certificate for another name: %v", err)
	}
	if live, _, _ := fleettest.Leftovers(t, h, c.Site); len(live) != 0 {
		t.Fatalf("instances left running: %v", live)
	}

	right := ca.Leaf(t, c.Domain)
	serving.Store(&right)
	r, err := launch.Launch(context.Background(), opts(c, log))
	if err != nil {
		t.Fatalf("launch with the domain's certificate: %v", err)
	}
	t.Logf("candidate %s passed the TLS gate", r.InstanceID)
}
