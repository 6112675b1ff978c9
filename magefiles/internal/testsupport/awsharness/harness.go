// Package awsharness runs the AWS APIs the pipeline uses in-process, for
// tests: the kumo emulator (github.com/sivchari/kumo: EBS direct APIs,
// Route53, part of EC2) behind the AWS behaviour model (awsmodel), behind this
// harness's fault injector, denials and a recorder of every call. Test-only:
// nothing outside tests may import it.
//
// Start points the SDK's default configuration at it through the environment
// (AWS_ENDPOINT_URL, credentials, region), so the code under test builds its
// clients exactly as in production and needs no test hook for endpoints.
//
// kumo keeps its state in process-wide globals: every harness in a test
// binary sees the same EBS blocks and EC2 instances. Tests therefore tag what
// they create with a name of their own (a unique site) and count by tag.
package awsharness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/sivchari/kumo"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsmodel"
)

// Region is the region the harness sets; any name works against the emulator.
const Region = "us-east-1"

// Harness is a running emulator reachable through the SDK's default configuration.
type Harness struct {
	URL    string          // the endpoint AWS_ENDPOINT_URL points at
	Model  *awsmodel.Model // AWS behaviour kumo lacks: images, snapshots, tokens; and the counting helpers
	Faults *Faults         // what goes wrong, set by the test
	Calls  *Recorder       // every request received, faults included

	images imageCache
}

// Options tune a harness; the zero value is a faithful, fault-free emulator.
type Options struct {
	// PendingDescribes is how many Describe calls report a new image, a
	// completed EBS snapshot or a new instance as still pending before it
	// becomes available, completed or running, and how many GetChange calls
	// see a Route53 change PENDING, so waiters really wait. Default 1;
	// negative means 0.
	PendingDescribes int
	// InvisibleDescribes is how many Describe calls miss a new instance,
	// AMI, snapshot or Elastic IP (EC2's eventual consistency). Default 1;
	// negative means 0.
	InvisibleDescribes int
	// SnapshotNotFoundCalls is how many PutSnapshotBlock and
	// CompleteSnapshot calls find a new snapshot missing. Default 3;
	// negative means 0.
	SnapshotNotFoundCalls int
	// Seed makes the fault injector's choices repeatable. Default 1.
	Seed uint64
}

// Start runs a harness for the test and sets the environment so that
// config.LoadDefaultConfig reaches it. The environment is restored and the
// servers closed when the test ends; t.Setenv forbids t.Parallel.
func Start(t testing.TB, opts Options) *Harness {
	t.Helper()
	opts.PendingDescribes = orDefault(opts.PendingDescribes, 1)
	opts.InvisibleDescribes = orDefault(opts.InvisibleDescribes, 1)
	opts.SnapshotNotFoundCalls = orDefault(opts.SnapshotNotFoundCalls, 3)
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	k := kumo.NewServer()
	t.Cleanup(k.Close)

	h := &Harness{
		Model:  awsmodel.New(k.URL, awsmodel.Options{Pending: opts.PendingDescribes, Lag: opts.InvisibleDescribes, SnapshotLag: opts.SnapshotNotFoundCalls}),
		Faults: newFaults(opts.Seed),
		Calls:  &Recorder{},
		images: imageCache{builds: map[string]string{}},
	}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	t.Cleanup(h.Model.Close)
	h.URL = srv.URL

	// Only the SDK's own variables: what a developer pointing `mage bake` at
	// an emulator would set. Shared config files and IMDS are switched off
	// so nothing from the machine leaks in.
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDAWSTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "awstest-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return h
}

// orDefault is v, def when v is 0, and 0 when v is negative.
func orDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// serve identifies the call, records it, applies the faults, then lets the
// shim (and behind it kumo) answer.
func (h *Harness) serve(w http.ResponseWriter, r *http.Request) {
	body, release, err := readBody(r)
	if err != nil {
		return // the client went away
	}
	defer release()
	r.Body = io.NopCloser(bytes.NewReader(body))
	var form url.Values
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, _ = url.ParseQuery(string(body))
	}
	service, op := identify(r, form)

	delay, fault := h.Faults.decide(service, op)
	call := Call{Service: service, Operation: op}
	if fault != nil {
		call.Fault = fault.Kind.String()
	}
	h.Calls.add(call)
	if !sleep(r, delay) {
		return
	}
	if fault != nil {
		switch fault.Kind {
		case Throttle:
			code, status := awsmodel.ThrottleError(service)
			awsmodel.WriteAPIError(w, service, code, "Rate exceeded (injected by awsharness)", status)
			return
		case ServerError:
			awsmodel.WriteAPIError(w, service, awsmodel.ServerErrorCode(service), "Internal error (injected by awsharness)", http.StatusInternalServerError)
			return
		case Error:
			awsmodel.WriteAPIError(w, service, fault.Code, fault.Code+" (injected by awsharness)", fault.Status)
			return
		case Drop:
			hangUp(w)
			return
		case DropAfter:
			h.Model.Serve(discard{}, r, service, op, body, form)
			hangUp(w)
			return
		}
	}
	h.Model.Serve(w, r, service, op, body, form)
}

// bodies recycles request buffers: a parallel upload sends hundreds of
// 512 KiB blocks, and fresh memory for each is most of the emulator's cost.
var bodies = sync.Pool{New: func() any { return new([1 << 20]byte) }}

// readBody reads the whole request body; release returns its buffer, after
// which the body must not be used.
func readBody(r *http.Request) (body []byte, release func(), err error) {
	n := r.ContentLength
	if n < 0 || n > 1<<20 {
		body, err = io.ReadAll(r.Body)
		return body, func() {}, err
	}
	buf := bodies.Get().(*[1 << 20]byte)
	if _, err := io.ReadFull(r.Body, buf[:n]); err != nil {
		bodies.Put(buf)
		return nil, nil, err
	}
	return buf[:n], func() { bodies.Put(buf) }, nil
}

// Config loads the SDK's default configuration, as the code under test does.
func (h *Harness) Config(t testing.TB) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("awstest: loading the SDK default config: %v", err)
	}
	return cfg
}

// EC2 is an EC2 client on the default configuration.
func (h *Harness) EC2(t testing.TB) *ec2.Client { return ec2.NewFromConfig(h.Config(t)) }

// EBS is an EBS direct API client on the default configuration.
func (h *Harness) EBS(t testing.TB) *ebs.Client { return ebs.NewFromConfig(h.Config(t)) }

// Route53 is a Route53 client on the default configuration.
func (h *Harness) Route53(t testing.TB) *route53.Client { return route53.NewFromConfig(h.Config(t)) }

// UniqueName returns prefix plus a random suffix: a site name no other test
// in the binary shares, since kumo's state is process-wide.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// discard swallows a response the client must never see (DropAfter).
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
