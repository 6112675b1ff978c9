package bake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/timeline"
)

// Reasons behind the numbers.
const (
	// snapshotTimeoutMinutes is StartSnapshot's server-side timeout: EBS
	// cancels a snapshot not completed within it. An upload of a few GiB
	// takes minutes; an hour leaves room, and a run killed before it could
	// clean up leaves its partial snapshot for no longer than that.
	snapshotTimeoutMinutes = 60
	// defaultProgressEvery is how often upload progress is logged.
	defaultProgressEvery = 2 * time.Second
)

// baker holds one bake's clients and settings.
type baker struct {
	cfg   *config.Config
	log   *logrus.Entry
	ebs   ebsAPI
	ec2   ec2API
	nonce string // this run's, for the StartSnapshot ClientToken
	// exclusive: the caller holds the site's deploy lease, so no other bake
	// of the site runs and snapshots no AMI uses are leftovers.
	exclusive bool

	concurrency    int
	progressEvery  time.Duration
	attemptTimeout time.Duration
	retryBase      time.Duration
	waitDelay      time.Duration
	clock          fleet.Clock
	seq            *timeline.Seq // the bake's phases; nil when not recording

	undo fleet.Undo
}

func newBaker(c *config.Config, log *logrus.Entry, opts Options, e ebsAPI, x ec2API) *baker {
	b := &baker{
		cfg: c, log: log, ebs: e, ec2: x, nonce: newNonce(), exclusive: opts.Exclusive,
		concurrency:    c.UploadParallel,
		progressEvery:  opts.ProgressEvery,
		attemptTimeout: opts.AttemptTimeout,
		retryBase:      opts.RetryBase,
		waitDelay:      opts.WaitDelay,
		clock:          fleet.OrRealClock(opts.Clock),
	}
	if b.concurrency < 1 {
		b.concurrency = 64
	}
	if b.progressEvery <= 0 {
		b.progressEvery = defaultProgressEvery
	}
	if b.attemptTimeout <= 0 {
		b.attemptTimeout = attemptTimeout
	}
	if b.retryBase <= 0 {
		b.retryBase = retryBase
	}
	return b
}

func newNonce() string {
	var n [8]byte
	_, _ = rand.Read(n[:])
	return hex.EncodeToString(n[:])
}

// clientToken makes StartSnapshot idempotent within one run and distinct
// across runs. AWS answers a repeated token with the snapshot it already
// made, so the SDK's retry of a StartSnapshot whose answer was lost gets the
// same snapshot, not a twin. A token derived from the image alone would hand
// the next run the snapshot this run deleted (or a half-written one), so the
// token also hashes a random per-run nonce. The price: a run killed outright
// (SIGKILL, power loss) cannot resume its snapshot; the next run starts a
// new one and EBS cancels the orphan after snapshotTimeoutMinutes.
func clientToken(imageDigest, nonce string) string {
	sum := sha256.Sum256([]byte(imageDigest + "/" + nonce))
	return hex.EncodeToString(sum[:16])
}

// bake runs the recipe, then, holding the lease, deletes what dead runs
// left: by then EC2 lists a snapshot a run killed moments before had
// started (a new snapshot takes a moment to be listed), which a look before
// the upload may have missed.
func (b *baker) bake(ctx context.Context, img *image.Receipt) (*Receipt, error) {
	r, err := b.run(ctx, img)
	if err == nil && b.exclusive {
		b.seq.Next("orphans")
		b.deleteOrphans(ctx, b.log)
	}
	return r, err
}

// run is the recipe; on error every step that created something is undone.
func (b *baker) run(ctx context.Context, img *image.Receipt) (r *Receipt, err error) {
	log := b.log.WithField("image_digest", fleet.Short(img.Digest))
	total := blocksIn(img.SizeBytes)

	existing, err := b.findImage(ctx, img.Digest)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		log.WithField("image_id", existing.ImageID).Infof("AMI %s already holds this image; nothing to upload", existing.ImageID)
		return &Receipt{ImageID: existing.ImageID, SnapshotID: existing.SnapshotID, ImageDigest: img.Digest, BlocksTotal: total, Reused: true}, nil
	}

	f, err := os.Open(img.Path)
	if err != nil {
		return nil, fmt.Errorf("bake: opening the image: %w; run `mage image`", err)
	}
	defer f.Close()
	plan, err := planBlocks(f, img.SizeBytes)
	if err != nil {
		return nil, fmt.Errorf("bake: finding the data in %s: %w", img.Path, err)
	}
	log.Infof("image %d MiB: %d blocks of 512 KiB, %d in data regions (%s); holes are not read",
		img.SizeBytes>>20, total, plan.Count, plan.how)

	defer func() {
		if err != nil {
			b.undo.Run(ctx, log)
		}
	}()

	tags := b.tags(img)
	if b.exclusive {
		b.deleteOrphans(ctx, log)
	}
	b.seq.Next("upload")
	snapID, err := b.startSnapshot(ctx, img, tags)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	log = log.WithField("snapshot_id", snapID)
	up, err := b.upload(ctx, log, f, img.SizeBytes, snapID, plan)
	if err != nil {
		return nil, err
	}
	b.seq.Next("snapshot")
	status, err := b.completeSnapshot(ctx, snapID, up, started)
	if err != nil {
		return nil, err
	}
	if status != ebstypes.StatusCompleted { // completed in the answer: no wait at all
		if err := b.waitSnapshot(ctx, snapID); err != nil {
			return nil, err
		}
	}
	b.seq.Next("ami")
	amiID, snapID, err := b.register(ctx, img, snapID, tags)
	if err != nil {
		return nil, err
	}
	if err := b.waitImage(ctx, amiID); err != nil {
		return nil, err
	}
	log.WithField("image_id", amiID).Infof("AMI %s is available: %d of %d blocks uploaded (%d MiB)", amiID, up.uploaded, total, up.bytes>>20)
	b.undo.Forget()
	return &Receipt{
		ImageID: amiID, SnapshotID: snapID, ImageDigest: img.Digest,
		BlocksTotal: total, BlocksUploaded: up.uploaded, BytesUploaded: up.bytes,
	}, nil
}

// deleteOrphans deletes the site's snapshots no AMI uses: under the deploy
// lease no other bake runs, so they are what runs that died left (a pending
// one would otherwise wait out its server-side timeout). One an AMI does use
// after all (EC2 did not list the AMI yet, this run's own among them) is
// refused as in use, and kept.
func (b *baker) deleteOrphans(ctx context.Context, log *logrus.Entry) {
	snaps, err := fleet.SiteSnapshots(ctx, b.ec2, b.cfg.Site)
	if err != nil {
		log.WithError(err).Warn("listing the site's snapshots to delete what dead runs left failed; mage prune deletes them")
		return
	}
	amis, err := fleet.SiteImages(ctx, b.ec2, b.cfg.Site)
	if err != nil {
		log.WithError(err).Warn("listing the site's AMIs failed; mage prune deletes leftover snapshots")
		return
	}
	st := fleet.State{AMIs: amis, Snapshots: snaps}
	for _, sn := range st.Orphans() {
		err := b.deleteSnapshot(ctx, sn.ID)
		switch {
		case err == nil:
			log.Infof("deleted snapshot %s (%s), left by a bake that stopped", sn.ID, sn.State)
		case fleet.HasCode(err, "InvalidSnapshot.InUse", "InvalidSnapshot.NotFound"):
		default:
			log.WithError(err).Warnf("deleting snapshot %s, left by a bake that stopped, failed; mage prune deletes it", sn.ID)
		}
	}
}

// errorsAs is errors.As returning the target, for terse classification.
func errorsAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}
