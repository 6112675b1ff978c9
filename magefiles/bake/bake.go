// Package bake turns the disk image into an AMI: it writes an EBS snapshot
// straight from this machine with the EBS direct APIs and registers the AMI
// from it. No builder instance, no S3 bucket, no import task.
//
// The recipe (Bake): validate everything locally; reuse the AMI already
// tagged with this image's digest if there is one; otherwise StartSnapshot,
// PutSnapshotBlock every 512 KiB block that holds data (holes never read,
// zero blocks never sent, many in flight, retried), CompleteSnapshot with
// the LINEAR aggregate checksum, wait for the snapshot, RegisterImage, wait
// for the AMI. What is created is undone, newest first, if a later step fails
// or the run is cancelled.
package bake

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/internal/awscfg"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "bake"

// Receipt records the AMI that serves the image: _build/bake.json.
type Receipt struct {
	ImageID        string  `json:"image_id"`        // the AMI
	SnapshotID     string  `json:"snapshot_id"`     // its root snapshot
	ImageDigest    string  `json:"image_digest"`    // the disk image it holds: its digest (image.Receipt.Digest), as tagged blog:image-digest
	BuildID        string  `json:"build_id"`        // the site build the image goes out with, from the image receipt
	Commit         string  `json:"commit"`          // the repository's commit, likewise
	BlocksTotal    int64   `json:"blocks_total"`    // 512 KiB blocks in the image
	BlocksUploaded int64   `json:"blocks_uploaded"` // blocks sent (data, not zero); 0 when reused
	BytesUploaded  int64   `json:"bytes_uploaded"`  //
	Seconds        float64 `json:"seconds"`         // wall time of the step
	Reused         bool    `json:"reused"`          // an AMI of this image already existed
}

// Options configure a bake. Config is required; the rest default sensibly
// and exist so tests can run the real recipe quickly.
type Options struct {
	Config *config.Config // site, region, upload_concurrency, pvgrub_kernel_id, paths
	Log    *logrus.Entry

	ProgressEvery  time.Duration // progress log interval; default 2s
	AttemptTimeout time.Duration // one PutSnapshotBlock attempt; default attemptTimeout
	RetryBase      time.Duration // first retry backoff; default retryBase
	WaitDelay      time.Duration // overrides the interval of every wait (fleet.Pace.Scaled), for emulators; default the paces'
	Clock          fleet.Clock   // paces the waits; default real time
	// Timeline records the phases (bake: the lookups; upload; snapshot:
	// completion; ami: registration; orphans); nil records nothing.
	Timeline *timeline.Recorder
	// Exclusive says the caller holds the site's deploy lease: snapshots of
	// the site no AMI uses are then leftovers of runs that died, deleted
	// before a new one starts.
	Exclusive bool
}

// Bake makes sure an AMI of the image in _build/image.json exists, and
// writes _build/bake.json. Everything that can be checked locally is checked
// before the first AWS call. The AWS clients come from the SDK's default
// configuration (AWS_PROFILE, AWS_REGION, web identity, AWS_ENDPOINT_URL…),
// with deploy.region if set.
func Bake(ctx context.Context, opts Options) (*Receipt, error) {
	start := time.Now()
	seq := opts.Timeline.Seq()
	seq.Next("bake")
	defer seq.End()
	c := opts.Config
	if c == nil {
		return nil, errors.New("bake: no configuration given")
	}
	log := fleet.StepLog(opts.Log, "bake")
	img, err := image.ReadReceipt(c.BuildDir())
	if err != nil {
		return nil, err
	}
	if err := checkBoot(c, img); err != nil {
		return nil, err
	}
	if err := verifyImage(img, c.BuildDir(), log); err != nil {
		return nil, err
	}

	awsCfg, err := awscfg.LoadWithCredentials(ctx, c, "bake")
	if err != nil {
		return nil, err
	}

	b := newBaker(c, log, opts,
		ebs.NewFromConfig(awsCfg, func(o *ebs.Options) { o.HTTPClient = widen(awsCfg.HTTPClient, c.UploadParallel) }),
		ec2.NewFromConfig(awsCfg))
	b.seq = seq
	r, err := b.bake(ctx, img)
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	r.BuildID, r.Commit = img.BuildID, img.Commit
	if err := receipt.Write(c.BuildDir(), ReceiptName, r); err != nil {
		return nil, fmt.Errorf("bake: AMI %s is ready but writing its receipt failed: %w", r.ImageID, err)
	}
	return r, nil
}

// ReadReceipt loads _build/bake.json; it fails with the fix when Bake has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "bake", "no AMI baked", "run `mage bake`")
}

// widen lets as many connections stay open as blocks are in flight: the SDK
// keeps 10 per host, so a 64-wide upload would open and close connections
// all the time. It only changes the SDK's own buildable client, which keeps
// what the default configuration set on it (AWS_CA_BUNDLE).
func widen(client aws.HTTPClient, conns int) aws.HTTPClient {
	bc, ok := client.(*awshttp.BuildableClient)
	if !ok {
		return client
	}
	return bc.WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, conns)
		t.MaxIdleConns = max(t.MaxIdleConns, conns)
	})
}

// checkBoot validates the boot settings the AMI will be registered with.
func checkBoot(c *config.Config, img *image.Receipt) error {
	boot := img.Boot
	if boot.RootDeviceName == "" {
		return fmt.Errorf("bake: the image receipt %s names no root device; run `mage image` again", receipt.Path(c.BuildDir(), image.ReceiptName))
	}
	switch boot.VirtualizationType {
	case "hvm":
		if boot.NeedsKernelID {
			return fmt.Errorf("bake: the image receipt asks for a kernel id with hvm virtualization; only paravirtual AMIs take one: run `mage image` again")
		}
	case "paravirtual":
		if boot.BootMode != "" {
			return fmt.Errorf("bake: the image receipt asks for boot mode %q with paravirtual virtualization; run `mage image` again", boot.BootMode)
		}
	default:
		return fmt.Errorf("bake: the image receipt has virtualization type %q; expected hvm or paravirtual: run `mage image` again", boot.VirtualizationType)
	}
	if boot.NeedsKernelID {
		if err := c.Require("bake ("+img.Layout+" boot: a paravirtual AMI started by Amazon's PV-GRUB)", "pvgrub_kernel_id"); err != nil {
			return err
		}
	}
	return nil
}
