package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
)

// ebsAPI is the part of the EBS direct APIs a bake uses; *ebs.Client has it.
type ebsAPI interface {
	StartSnapshot(context.Context, *ebs.StartSnapshotInput, ...func(*ebs.Options)) (*ebs.StartSnapshotOutput, error)
	PutSnapshotBlock(context.Context, *ebs.PutSnapshotBlockInput, ...func(*ebs.Options)) (*ebs.PutSnapshotBlockOutput, error)
	CompleteSnapshot(context.Context, *ebs.CompleteSnapshotInput, ...func(*ebs.Options)) (*ebs.CompleteSnapshotOutput, error)
}

// noSDKRetries turns the SDK's retryer off for PutSnapshotBlock: see retry.go.
func noSDKRetries(o *ebs.Options) { o.Retryer = aws.NopRetryer{} }

// startSnapshot starts the snapshot and registers its deletion as undo.
func (b *baker) startSnapshot(ctx context.Context, img *image.Receipt, tags []ec2types.Tag) (string, error) {
	gib := (img.SizeBytes + 1<<30 - 1) >> 30
	ebsTags := make([]ebstypes.Tag, 0, len(tags))
	for _, t := range tags {
		ebsTags = append(ebsTags, ebstypes.Tag{Key: t.Key, Value: t.Value})
	}
	out, err := b.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(gib),
		ClientToken: aws.String(clientToken(img.Digest, b.nonce)),
		Timeout:     aws.Int32(snapshotTimeoutMinutes),
		Description: aws.String(fmt.Sprintf("%s disk image %s", b.cfg.Site, fleet.Short(img.Digest))),
		Tags:        ebsTags,
	})
	if err != nil {
		return "", fmt.Errorf("bake: starting an EBS snapshot of %d GiB: %w; check the ebs:StartSnapshot permission and the region", gib, err)
	}
	id := aws.ToString(out.SnapshotId)
	if id == "" {
		return "", errors.New("bake: StartSnapshot answered without a snapshot id")
	}
	b.undo.Add("deleting partial snapshot "+id,
		fmt.Sprintf("EBS cancels it by itself %d minutes after it started, or delete it now: aws ec2 delete-snapshot --snapshot-id %s", snapshotTimeoutMinutes, id),
		func(ctx context.Context) error { return b.deleteSnapshot(ctx, id) })
	return id, nil
}

// uploaded is what the upload sent.
type uploaded struct {
	uploaded int64
	bytes    int64
	checksum string // LINEAR aggregate, base64; "" when nothing was sent
}

// blockSum is one sent block's raw SHA256.
type blockSum struct {
	index int64
	sum   [sha256.Size]byte
}

// BlockError is one block that could not be uploaded.
type BlockError struct {
	Index    int64
	Attempts int
	Err      error
}

// BlockErrors are all the blocks that failed, by index.
type BlockErrors struct {
	Snapshot   string
	Failed     []BlockError // ascending index
	NotStarted int64        // blocks not uploaded because the run stopped at the first failure
}

func (e *BlockErrors) Error() string {
	idx := make([]string, 0, len(e.Failed))
	for i, f := range e.Failed {
		if i == 20 {
			idx = append(idx, fmt.Sprintf("… %d more", len(e.Failed)-20))
			break
		}
		idx = append(idx, fmt.Sprint(f.Index))
	}
	first := e.Failed[0]
	msg := fmt.Sprintf("bake: %d blocks failed to upload to snapshot %s (indexes %s); block %d after %d attempts: %v",
		len(e.Failed), e.Snapshot, strings.Join(idx, ", "), first.Index, first.Attempts, first.Err)
	if e.NotStarted > 0 {
		msg += fmt.Sprintf("; %d more blocks were not uploaded", e.NotStarted)
	}
	return msg + "; nothing was registered, run `mage bake` again (lower deploy.upload_concurrency if AWS throttles)"
}

// Unwrap exposes every block's error to errors.Is and errors.As.
func (e *BlockErrors) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Err
	}
	return out
}

// upload sends every data block of the plan, b.concurrency at a time.
// Zero blocks are read but not sent. After the first block fails for good,
// no new block starts; the ones in flight finish, so every failure is reported.
func (b *baker) upload(ctx context.Context, log *logrus.Entry, f *os.File, size int64, snapID string, p plan) (*uploaded, error) {
	started := time.Now()
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	var (
		done, sent, sentBytes atomic.Int64
		mu                    sync.Mutex
		sums                  []blockSum
		failed                []BlockError
		readErr               error
	)
	work := make(chan int64)
	go func() {
		defer close(work)
		for _, s := range p.Spans {
			for i := s.First; i <= s.Last; i++ {
				select {
				case work <- i:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	prog := b.progress(log, p.Count, &done, &sentBytes, started)
	defer prog.stop()

	var wg sync.WaitGroup
	for range min(int64(b.concurrency), max(p.Count, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, blockSize)
			for idx := range work {
				zero, err := readBlock(f, size, idx, buf)
				if err != nil {
					mu.Lock()
					if readErr == nil {
						readErr = fmt.Errorf("bake: %w", err)
					}
					mu.Unlock()
					stop()
					return
				}
				if !zero {
					sum := sha256.Sum256(buf)
					attempts, err := b.putBlock(ctx, snapID, idx, buf, sum, started)
					if err != nil {
						if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
							return // stopped (another block failed) or cancelled: unfinished, not failed
						}
						mu.Lock()
						failed = append(failed, BlockError{Index: idx, Attempts: attempts, Err: err})
						mu.Unlock()
						stop()
						continue
					}
					sent.Add(1)
					sentBytes.Add(blockSize)
					mu.Lock()
					sums = append(sums, blockSum{idx, sum})
					mu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	prog.stop()

	switch {
	case readErr != nil:
		return nil, readErr
	case len(failed) > 0:
		slices.SortFunc(failed, func(a, b BlockError) int { return int(a.Index - b.Index) })
		return nil, &BlockErrors{Snapshot: snapID, Failed: failed, NotStarted: p.Count - done.Load() - int64(len(failed))}
	case ctx.Err() != nil && done.Load() < p.Count:
		return nil, fmt.Errorf("bake: upload to snapshot %s stopped after %d of %d blocks: %w", snapID, done.Load(), p.Count, ctx.Err())
	}
	slices.SortFunc(sums, func(a, b blockSum) int { return int(a.index - b.index) })
	return &uploaded{uploaded: sent.Load(), bytes: sentBytes.Load(), checksum: linearChecksum(sums)}, nil
}

// putBlock uploads one block, retrying what is worth retrying (retry.go).
func (b *baker) putBlock(ctx context.Context, snapID string, idx int64, data []byte, sum [sha256.Size]byte, started time.Time) (attempts int, err error) {
	checksum := base64.StdEncoding.EncodeToString(sum[:])
	notFound := 0 // attempts answered "does not exist" while the snapshot propagates
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.attemptTimeout)
		_, err = b.ebs.PutSnapshotBlock(actx, &ebs.PutSnapshotBlockInput{
			SnapshotId:        aws.String(snapID),
			BlockIndex:        aws.Int32(int32(idx)),
			BlockData:         bytes.NewReader(data),
			DataLength:        aws.Int32(blockSize),
			Checksum:          aws.String(checksum),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		}, noSDKRetries)
		cancel()
		if err == nil {
			return attempt, nil
		}
		if ctx.Err() != nil {
			return attempt, err // an answer from AWS is reported; an aborted call wraps ctx's error
		}
		if notYetFound(err, time.Since(started)) {
			notFound++
		}
		if attempt-notFound >= maxBlockAttempts || !retryable(err, time.Since(started)) {
			return attempt, err
		}
		if err := sleepCtx(ctx, backoff(b.retryBase, attempt)); err != nil {
			return attempt, err
		}
	}
}

// linearChecksum is the LINEAR aggregate CompleteSnapshot verifies: SHA256
// over the sent blocks' raw SHA256 digests, in block-index order, base64.
func linearChecksum(sums []blockSum) string {
	if len(sums) == 0 {
		return ""
	}
	h := sha256.New()
	for _, s := range sums {
		h.Write(s.sum[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// completeSnapshot seals the snapshot; EBS checks the count and aggregate.
// It returns the status EBS answered: completed needs no wait.
// CompleteSnapshot is not idempotent (completing again is an error), so the
// SDK's retryer is off and the retries are ours: once an attempt went
// unanswered, the completion may have happened, and a later attempt's
// refusal sends us to read the snapshot's state instead of failing.
func (b *baker) completeSnapshot(ctx context.Context, snapID string, up *uploaded, started time.Time) (ebstypes.Status, error) {
	in := &ebs.CompleteSnapshotInput{
		SnapshotId:         aws.String(snapID),
		ChangedBlocksCount: aws.Int32(int32(up.uploaded)),
	}
	if up.checksum != "" {
		in.Checksum = aws.String(up.checksum)
		in.ChecksumAlgorithm = ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256
		in.ChecksumAggregationMethod = ebstypes.ChecksumAggregationMethodChecksumAggregationLinear
	}
	maybeDone := false
	notFound := 0
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.attemptTimeout)
		out, err := b.ebs.CompleteSnapshot(actx, in, noSDKRetries)
		cancel()
		if err == nil {
			if out.Status == ebstypes.StatusError {
				return "", fmt.Errorf("bake: EBS refused to complete snapshot %s (status error); run `mage bake` again", snapID)
			}
			return out.Status, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("bake: completing snapshot %s: %w", snapID, ctx.Err())
		}
		if notYetFound(err, time.Since(started)) {
			notFound++
		}
		if fleet.Unanswered(err) {
			maybeDone = true
		}
		if attempt-notFound < maxCompleteAttempts && retryable(err, time.Since(started)) {
			if err := sleepCtx(ctx, backoff(b.retryBase, attempt)); err != nil {
				return "", err
			}
			continue
		}
		if maybeDone {
			return b.completedMeanwhile(ctx, snapID, err)
		}
		return "", fmt.Errorf("bake: completing snapshot %s (%d blocks): %w", snapID, up.uploaded, err)
	}
}

// completedMeanwhile reads the state of a snapshot whose completion went
// unanswered and was then refused: completed, or pending while EBS
// processes it (the wait that follows sees it through), means the first
// attempt took effect. EC2 lists a new snapshot only after a moment, so
// "not found" is asked again at the NewlyListed pace.
func (b *baker) completedMeanwhile(ctx context.Context, snapID string, refused error) (ebstypes.Status, error) {
	var out *ec2.DescribeSnapshotsOutput
	var err error
	werr := b.pace(fleet.NewlyListed).AtOnce().Wait(ctx, b.clock, func(ctx context.Context) (bool, error) {
		out, err = b.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapID}})
		return !fleet.HasCode(err, "InvalidSnapshot.NotFound"), nil
	})
	if werr != nil && !errors.Is(werr, fleet.ErrWaitTimeout) {
		return "", werr
	}
	if err != nil || len(out.Snapshots) == 0 {
		return "", fmt.Errorf("bake: completing snapshot %s: an attempt went unanswered, the next was refused (%v), and its state cannot be read: %v; run `mage bake` again", snapID, refused, err)
	}
	switch st := out.Snapshots[0].State; st {
	case ec2types.SnapshotStateCompleted, ec2types.SnapshotStatePending:
		b.log.Infof("snapshot %s: the completion whose answer was lost took effect (state %s)", snapID, st)
		return ebstypes.Status(st), nil
	default:
		return "", fmt.Errorf("bake: snapshot %s is %s after a completion whose answer was lost (%s); run `mage bake` again", snapID, st, aws.ToString(out.Snapshots[0].StateMessage))
	}
}

// progressLog logs the upload's progress every interval, and once at the end.
type progressLog struct {
	once sync.Once
	quit chan struct{}
	wg   sync.WaitGroup
	emit func()
}

func (b *baker) progress(log *logrus.Entry, total int64, done, sentBytes *atomic.Int64, started time.Time) *progressLog {
	p := &progressLog{quit: make(chan struct{})}
	p.emit = func() {
		elapsed := time.Since(started)
		n, mib := done.Load(), float64(sentBytes.Load())/(1<<20)
		rate := mib / max(elapsed.Seconds(), 1e-3)
		eta := "-"
		if n > 0 && n < total {
			eta = (time.Duration(float64(elapsed) / float64(n) * float64(total-n))).Round(time.Second).String()
		}
		log.WithFields(logrus.Fields{"blocks_done": n, "blocks_total": total, "mib_sent": int64(mib)}).
			Infof("upload: %d/%d blocks, %.1f MiB sent, %.1f MiB/s, ETA %s", n, total, mib, rate, eta)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(b.progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.emit()
			case <-p.quit:
				return
			}
		}
	}()
	return p
}

// stop ends the ticker and logs the final line, once.
func (p *progressLog) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.wg.Wait()
		p.emit()
	})
}
