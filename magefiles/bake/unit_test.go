package bake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sys/unix"

	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
)

// fakeEBS answers the EBS direct APIs in memory; put decides each block attempt.
type fakeEBS struct {
	put func(idx int32, attempt int) error

	mu       sync.Mutex
	attempts map[int32]int
	stored   map[int32][]byte
	sdkOpts  []func(*ebs.Options)
	complete *ebs.CompleteSnapshotInput
}

func newFakeEBS(put func(idx int32, attempt int) error) *fakeEBS {
	return &fakeEBS{put: put, attempts: map[int32]int{}, stored: map[int32][]byte{}}
}

func (f *fakeEBS) StartSnapshot(context.Context, *ebs.StartSnapshotInput, ...func(*ebs.Options)) (*ebs.StartSnapshotOutput, error) {
	return &ebs.StartSnapshotOutput{SnapshotId: aws.String("snap-fake")}, nil
}

func (f *fakeEBS) PutSnapshotBlock(ctx context.Context, in *ebs.PutSnapshotBlockInput, opts ...func(*ebs.Options)) (*ebs.PutSnapshotBlockOutput, error) {
	data, _ := io.ReadAll(in.BlockData)
	idx := aws.ToInt32(in.BlockIndex)
	f.mu.Lock()
	f.attempts[idx]++
	attempt := f.attempts[idx]
	f.sdkOpts = opts
	f.mu.Unlock()
	if f.put != nil {
		if err := f.put(idx, attempt); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.stored[idx] = data
	f.mu.Unlock()
	return &ebs.PutSnapshotBlockOutput{}, nil
}

func (f *fakeEBS) CompleteSnapshot(_ context.Context, in *ebs.CompleteSnapshotInput, _ ...func(*ebs.Options)) (*ebs.CompleteSnapshotOutput, error) {
	f.complete = in
	return &ebs.CompleteSnapshotOutput{Status: ebstypes.StatusCompleted}, nil
}

// fakeEC2 answers the EC2 calls; deleteErr makes DeleteSnapshot fail.
type fakeEC2 struct {
	ec2API
	deleteErr error

	mu            sync.Mutex
	deleted       []string
	deleteCtxErr  error
	deleteHasDead bool
	registered    *ec2.RegisterImageInput
}

func (f *fakeEC2) DescribeImages(_ context.Context, in *ec2.DescribeImagesInput, _ ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	if len(in.ImageIds) > 0 {
		return &ec2.DescribeImagesOutput{Images: []ec2types.Image{{ImageId: aws.String(in.ImageIds[0]), State: ec2types.ImageStateAvailable}}}, nil
	}
	return &ec2.DescribeImagesOutput{}, nil
}

func (f *fakeEC2) DescribeSnapshots(_ context.Context, in *ec2.DescribeSnapshotsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error) {
	return &ec2.DescribeSnapshotsOutput{Snapshots: []ec2types.Snapshot{{SnapshotId: aws.String(in.SnapshotIds[0]), State: ec2types.SnapshotStateCompleted}}}, nil
}

func (f *fakeEC2) RegisterImage(_ context.Context, in *ec2.RegisterImageInput, _ ...func(*ec2.Options)) (*ec2.RegisterImageOutput, error) {
	f.registered = in
	return &ec2.RegisterImageOutput{ImageId: aws.String("ami-fake")}, nil
}

func (f *fakeEC2) DeleteSnapshot(ctx context.Context, in *ec2.DeleteSnapshotInput, _ ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, aws.ToString(in.SnapshotId))
	f.deleteCtxErr = ctx.Err()
	_, f.deleteHasDead = ctx.Deadline()
	return &ec2.DeleteSnapshotOutput{}, f.deleteErr
}

// fakeBaker bakes the standard image with fakes, skipping local validation.
func fakeBaker(t *testing.T, e *fakeEBS, x *fakeEC2) (*baker, *testImage, logHook) {
	t.Helper()
	c, img, _ := setup(t, uefiBoot, "uefi")
	log, hook := testLog()
	return newBaker(c, log, fastOptions(c, log), e, x), img, hook
}

func TestUploadWithFakes(t *testing.T) {
	e, x := newFakeEBS(nil), &fakeEC2{}
	b, img, _ := fakeBaker(t, e, x)
	r, err := b.bake(context.Background(), mustReceipt(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := storedBlocks(e), sortedKeys(img.data); !slices.Equal(got, want) {
		t.Fatalf("sent blocks %v, want %v", got, want)
	}
	if aws.ToString(e.complete.Checksum) != expectedAggregate(img) || aws.ToInt32(e.complete.ChangedBlocksCount) != int32(len(img.data)) {
		t.Fatalf("CompleteSnapshot %+v", e.complete)
	}
	// Our retries only: the SDK's retryer is off for PutSnapshotBlock.
	var o ebs.Options
	for _, fn := range e.sdkOpts {
		fn(&o)
	}
	if _, ok := o.Retryer.(aws.NopRetryer); !ok {
		t.Fatalf("PutSnapshotBlock retryer %T; want aws.NopRetryer", o.Retryer)
	}
	if r.BlocksUploaded != int64(len(img.data)) {
		t.Fatalf("receipt %+v", r)
	}
	if reg := x.registered; aws.ToString(reg.VirtualizationType) != "hvm" || reg.BootMode != ec2types.BootModeValuesUefi ||
		!aws.ToBool(reg.EnaSupport) || reg.ImdsSupport != ec2types.ImdsSupportValuesV20 || reg.KernelId != nil {
		t.Fatalf("RegisterImage %+v", reg)
	}
}

func TestUploadFallsBackWithoutSeekData(t *testing.T) {
	sparse.Seek = func(int, int64, int) (int64, error) { return 0, unix.EINVAL }
	t.Cleanup(func() { sparse.Seek = unix.Seek })
	e := newFakeEBS(nil)
	b, img, hook := fakeBaker(t, e, &fakeEC2{})
	if _, err := b.bake(context.Background(), mustReceipt(t, b)); err != nil {
		t.Fatal(err)
	}
	if got, want := storedBlocks(e), sortedKeys(img.data); !slices.Equal(got, want) {
		t.Fatalf("sent blocks %v, want %v (zero blocks must still be skipped)", got, want)
	}
	if !hook.logged("image ") || !strings.Contains(hook.find("image "), "reading every block") {
		t.Fatalf("the fallback was not logged: %q", hook.find("image "))
	}
}

func TestUploadRetriesTransientErrors(t *testing.T) {
	e := newFakeEBS(func(idx int32, attempt int) error {
		switch attempt {
		case 1:
			return &smithy.GenericAPIError{Code: "ThrottlingException"}
		case 2:
			return &smithyhttp.RequestSendError{Err: io.ErrUnexpectedEOF}
		}
		return nil
	})
	b, img, _ := fakeBaker(t, e, &fakeEC2{})
	if _, err := b.bake(context.Background(), mustReceipt(t, b)); err != nil {
		t.Fatal(err)
	}
	for _, idx := range sortedKeys(img.data) {
		if e.attempts[int32(idx)] != 3 {
			t.Fatalf("block %d: %d attempts, want 3", idx, e.attempts[int32(idx)])
		}
	}
}

func TestUploadReportsEveryFailedBlock(t *testing.T) {
	e := newFakeEBS(func(idx int32, attempt int) error {
		time.Sleep(30 * time.Millisecond) // every block is in flight before any fails
		if idx == 10 || idx == 100 {
			return &ebstypes.ValidationException{Message: aws.String("bad block"), Reason: ebstypes.ValidationExceptionReasonInvalidBlock}
		}
		return nil
	})
	x := &fakeEC2{deleteErr: errors.New("access denied")}
	b, _, hook := fakeBaker(t, e, x)
	_, err := b.bake(context.Background(), mustReceipt(t, b))
	var be *BlockErrors
	if !errors.As(err, &be) {
		t.Fatalf("err = %v; want *BlockErrors", err)
	}
	var idx []int64
	for _, f := range be.Failed {
		idx = append(idx, f.Index)
		if f.Attempts != 1 {
			t.Errorf("block %d tried %d times; a ValidationException is not retried", f.Index, f.Attempts)
		}
	}
	if !slices.Equal(idx, []int64{10, 100}) || !strings.Contains(err.Error(), "indexes 10, 100") {
		t.Fatalf("failed blocks %v; error %q", idx, err)
	}
	var ve *ebstypes.ValidationException
	if !errors.As(err, &ve) {
		t.Fatal("the blocks' errors are not reachable with errors.As")
	}
	// The partial snapshot could not be deleted: that is logged with what
	// to do, and the upload error is still the one returned.
	if !slices.Equal(x.deleted, []string{"snap-fake"}) || !strings.Contains(hook.find("cleanup: deleting partial snapshot snap-fake failed"), "aws ec2 delete-snapshot --snapshot-id snap-fake") {
		t.Fatalf("deleted %v; log %q", x.deleted, hook.find("cleanup:"))
	}
	if x.registered != nil {
		t.Fatal("an AMI was registered from a partial snapshot")
	}
}

func TestCleanupRunsWithAFreshBoundedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := newFakeEBS(func(idx int32, attempt int) error {
		cancel()
		return nil
	})
	x := &fakeEC2{}
	b, _, _ := fakeBaker(t, e, x)
	_, err := b.bake(ctx, mustReceipt(t, b))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(x.deleted) != 1 || x.deleteCtxErr != nil || !x.deleteHasDead {
		t.Fatalf("DeleteSnapshot %v with ctx err %v, deadline %v; want one call, live context with a deadline", x.deleted, x.deleteCtxErr, x.deleteHasDead)
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		since time.Duration
		want  bool
	}{
		{"throttling code", &smithy.GenericAPIError{Code: "ThrottlingException"}, 0, true},
		{"ec2 throttling", &smithy.GenericAPIError{Code: "RequestLimitExceeded"}, 0, true},
		{"typed throttling", &ebstypes.RequestThrottledException{}, 0, true},
		{"internal", &ebstypes.InternalServerException{}, 0, true},
		{"5xx", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 502}}, Err: errors.New("x")}, 0, true},
		{"aws 503", &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 503}}, Err: errors.New("x")}}, 0, true},
		{"dropped", &smithyhttp.RequestSendError{Err: io.EOF}, 0, true},
		{"attempt timeout", fmt.Errorf("op: %w", context.DeadlineExceeded), 0, true},
		{"not found just after start", &ebstypes.ResourceNotFoundException{}, time.Second, true},
		{"not found a minute and a half after start (coldsnap saw 56 s; EBS advises about two minutes)", &ebstypes.ResourceNotFoundException{}, 90 * time.Second, true},
		{"not found two minutes after start", &ebstypes.ResourceNotFoundException{}, 2 * time.Minute, true},
		{"not found later", &ebstypes.ResourceNotFoundException{}, 5 * time.Minute, false},
		{"validation", &ebstypes.ValidationException{}, 0, false},
		{"access denied", &ebstypes.AccessDeniedException{}, 0, false},
		{"quota", &ebstypes.ServiceQuotaExceededException{}, 0, false},
		{"4xx", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}}, Err: errors.New("x")}, 0, false},
		{"error text is not a classification", errors.New("ThrottlingException: rate exceeded"), 0, false},
	}
	for _, c := range cases {
		if got := retryable(c.err, c.since); got != c.want {
			t.Errorf("%s: retryable = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	for attempt := 1; attempt <= 20; attempt++ {
		for range 50 {
			if d := backoff(retryBase, attempt); d < 0 || d > retryCap || d > retryBase<<min(attempt-1, 16) {
				t.Fatalf("attempt %d: backoff %s out of bounds", attempt, d)
			}
		}
	}
}

func TestClientToken(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	a, b := clientToken(sha, "n1"), clientToken(sha, "n2")
	if a == b || a != clientToken(sha, "n1") || len(a) > 64 {
		t.Fatalf("tokens %q %q: want stable per run, distinct across runs, ≤ 64 chars", a, b)
	}
	if n1, n2 := newNonce(), newNonce(); n1 == n2 {
		t.Fatal("nonces repeat")
	}
}

func TestPlanBlocksFollowsExtents(t *testing.T) {
	dir := t.TempDir()
	img := standardImage(t, dir)
	f, err := os.Open(img.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := planBlocks(f, img.size)
	if err != nil {
		t.Fatal(err)
	}
	var planned []int64
	for _, s := range p.Spans {
		for i := s.First; i <= s.Last; i++ {
			planned = append(planned, i)
		}
	}
	if int64(len(planned)) != p.Count {
		t.Fatalf("plan counts %d blocks, spans hold %d", p.Count, len(planned))
	}
	// Every data block is planned; the filesystem may round extents up
	// (to its own block size), but not to the whole file.
	for _, i := range sortedKeys(img.data) {
		if !slices.Contains(planned, i) {
			t.Fatalf("data block %d is not planned: %v", i, planned)
		}
	}
	if p.Count > 2*int64(len(img.data))+2 {
		t.Fatalf("plan reads %d blocks for %d data blocks: holes are being read", p.Count, len(img.data))
	}
}

func TestReadBlockZeroFillsTheTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x")
	if err := os.WriteFile(path, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	buf := make([]byte, blockSize)
	for i := range buf {
		buf[i] = 0xee
	}
	zero, err := readBlock(f, 3, 0, buf)
	if err != nil || zero || string(buf[:3]) != "abc" || !sparse.IsZero(buf[3:]) {
		t.Fatalf("readBlock = %v, %v; tail not zeroed", zero, err)
	}
}

// --- small helpers ---

func mustReceipt(t *testing.T, b *baker) *image.Receipt {
	t.Helper()
	r, err := image.ReadReceipt(b.cfg.BuildDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sortedKeys(m map[int64][]byte) []int64 { return slices.Sorted(maps.Keys(m)) }

func storedBlocks(e *fakeEBS) []int64 {
	var out []int64
	for i := range e.stored {
		out = append(out, int64(i))
	}
	slices.Sort(out)
	return out
}

func TestAMINameIsOnePerImage(t *testing.T) {
	site, sha := "blog.example.com", strings.Repeat("ab", 32)
	if name := AMIName(site, sha); name != site+"-"+sha || name == AMIName(site, strings.Repeat("cd", 32)) || name == AMIName("other.example", sha) {
		t.Fatal("the AMI name is not a function of the site and the image alone")
	}
	long := strings.Repeat("a", 63) // the longest site deploy.site allows
	if n := len(AMIName(long, sha)); n > 128 {
		t.Fatalf("AMI name of %d characters; EC2 allows 128", n)
	}
}
