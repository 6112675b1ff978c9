package bake

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Retries of PutSnapshotBlock are ours alone: the call is made with the
// SDK's retryer switched off (aws.NopRetryer), because
//   - the SDK's standard retryer draws every retry from one client-wide
//     quota (500 tokens, 5 per retry): with 64 blocks in flight, a burst of
//     throttling empties it and healthy blocks fail with "retry quota
//     exceeded" instead of backing off;
//   - it does not retry ResourceNotFoundException, which EBS answers for a
//     few seconds after StartSnapshot while the new snapshot propagates;
//   - it has no per-attempt timeout, and a stuck PUT would hold a slot for
//     the whole run.
//
// Stacking both would multiply attempts (3 SDK × ours). The few other calls
// (StartSnapshot, CompleteSnapshot, EC2) keep the SDK's standard retryer.
const (
	// maxBlockAttempts: with full-jitter backoff from retryBase capped at
	// retryCap, eight attempts span roughly half a minute: past a throttling
	// burst or a dropped connection, short of hiding an outage.
	maxBlockAttempts = 8
	retryBase        = 200 * time.Millisecond
	retryCap         = 8 * time.Second
	// capFactor keeps the cap a fixed multiple of the base (8 s for 200 ms),
	// so a test with a millisecond base keeps the same shape of backoff.
	capFactor = int64(retryCap / retryBase)
	// attemptTimeout bounds one PutSnapshotBlock: 512 KiB that has not gone
	// through in 30 s (17 KiB/s) is a stuck connection, not a slow one.
	attemptTimeout = 30 * time.Second
	// notFoundGrace is how long after StartSnapshot a ResourceNotFoundException
	// ("The snapshot ... does not exist") is taken for propagation delay
	// rather than a snapshot that is really gone. awslabs/coldsnap saw it last
	// up to 56 s, and the EBS team advised retrying for about two minutes
	// (coldsnap issue #43, pull request #56); a little more than that. Such
	// retries do not count against maxBlockAttempts.
	notFoundGrace = 150 * time.Second
	// maxCompleteAttempts bounds CompleteSnapshot's retries of throttling,
	// 5xx and lost answers, made by us (see completeSnapshot).
	maxCompleteAttempts = 8
)

// notYetFound reports the "snapshot does not exist" a new snapshot answers
// while it propagates.
func notYetFound(err error, sinceStart time.Duration) bool {
	_, ok := errorsAs[*types.ResourceNotFoundException](err)
	return ok && sinceStart < notFoundGrace
}

// retryable classifies a failed attempt by the error's type and API code,
// never its text. sinceStart is the time since StartSnapshot returned.
func retryable(err error, sinceStart time.Duration) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true // our per-attempt timeout; the caller checks the run's own context first
	}
	if _, ok := errorsAs[*types.ResourceNotFoundException](err); ok {
		return sinceStart < notFoundGrace
	}
	if _, ok := errorsAs[*types.RequestThrottledException](err); ok {
		return true
	}
	if _, ok := errorsAs[*types.ConcurrentLimitExceededException](err); ok {
		return true
	}
	if _, ok := errorsAs[*types.InternalServerException](err); ok {
		return true
	}
	if api, ok := errorsAs[smithy.APIError](err); ok {
		switch api.ErrorCode() {
		case "ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded",
			"TooManyRequestsException", "RequestThrottled", "SlowDown",
			"InternalError", "InternalFailure", "ServiceUnavailable", "InternalServerException":
			return true
		}
	}
	if resp, ok := errorsAs[*smithyhttp.ResponseError](err); ok {
		if s := resp.HTTPStatusCode(); s >= 500 || s == 429 {
			return true
		}
	}
	if _, ok := errorsAs[*smithyhttp.RequestSendError](err); ok {
		return true // the connection failed before an answer: dropped, reset, refused
	}
	if _, ok := errorsAs[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// backoff is "full jitter": a random wait up to base·2^(attempt-1), capped
// at capFactor·base (retryCap for the default base),
// so many blocks throttled at once do not come back at once.
func backoff(base time.Duration, attempt int) time.Duration {
	ceil := min(time.Duration(capFactor)*base, base<<min(attempt-1, 16))
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
