package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	"github.com/sirupsen/logrus"
)

// CleanupTimeout bounds undoing after an error or Ctrl-C: a few API calls.
// mage exits 5 s after Ctrl-C (and at once on `mage -t`), so a longer budget
// would only be cut short; what the undo does not finish is tagged, and the
// next run, holding the lease, removes it.
const CleanupTimeout = 4 * time.Second

// Undo is how to take back what a run created, newest first. Each step that
// creates something adds its undo right after the create call returns; a
// step whose result is kept (the candidate went live) forgets its undo.
type Undo struct {
	mu    sync.Mutex
	steps []*undoStep
}

type undoStep struct {
	what string // "terminating candidate i-…"
	hint string // what a person does if the undo fails
	fn   func(context.Context) error
}

// Add registers fn and returns a function that forgets it again.
func (u *Undo) Add(what, hint string, fn func(context.Context) error) (forget func()) {
	s := &undoStep{what: what, hint: hint, fn: fn}
	u.mu.Lock()
	u.steps = append(u.steps, s)
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		for i, x := range u.steps {
			if x == s {
				u.steps = append(u.steps[:i], u.steps[i+1:]...)
				return
			}
		}
	}
}

// Len is how many steps are registered.
func (u *Undo) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.steps)
}

// Forget drops every registered step: what the run created is its result.
func (u *Undo) Forget() {
	u.mu.Lock()
	u.steps = nil
	u.mu.Unlock()
}

// Run undoes every registered step, newest first, with a fresh context
// bounded by CleanupTimeout: the run's own context may be the thing that
// was cancelled. Failures are logged with their hint, not returned: the
// error that caused the undo is the one to report.
func (u *Undo) Run(ctx context.Context, log *logrus.Entry) {
	u.mu.Lock()
	steps := u.steps
	u.steps = nil
	u.mu.Unlock()
	if len(steps) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
	defer cancel()
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if err := s.fn(cctx); err != nil {
			log.WithError(err).Warnf("cleanup: %s failed; %s", s.what, s.hint)
			continue
		}
		log.Infof("cleanup: %s", s.what)
	}
}

// HasCode reports whether err is an AWS API error with one of the codes:
// errors are classified by their code, never by their text.
func HasCode(err error, codes ...string) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	for _, c := range codes {
		if api.ErrorCode() == c {
			return true
		}
	}
	return false
}

// Unanswered reports an error that carries no answer from AWS (cancelled,
// connection lost after the SDK's retries): the call may have taken effect.
func Unanswered(err error) bool {
	var api smithy.APIError
	return err != nil && !errors.As(err, &api)
}
