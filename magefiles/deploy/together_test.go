package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestTogetherReportsEveryFailureButTheCancellationsItCaused(t *testing.T) {
	a, b := errors.New("bake failed"), errors.New("group failed")
	waitThenCancelled := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err() // stopped by the other's failure: says nothing new
	}
	err := together(context.Background(), func(context.Context) error { return a }, waitThenCancelled)
	if !errors.Is(err, a) || errors.Is(err, context.Canceled) {
		t.Fatalf("one failure, one cancellation: %v; want the failure alone", err)
	}

	both := make(chan struct{})
	failAfterBoth := func(e error) func(context.Context) error {
		return func(context.Context) error { <-both; return e }
	}
	close(both)
	err = together(context.Background(), failAfterBoth(a), failAfterBoth(b))
	if !errors.Is(err, a) || !errors.Is(err, b) {
		t.Fatalf("two failures: %v; want both", err)
	}

	if err := together(context.Background(), func(context.Context) error { return nil }, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("no failure: %v", err)
	}

	// Cancelled from outside: every step's cancellation is the error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := together(ctx, waitThenCancelled, waitThenCancelled); !errors.Is(err, context.Canceled) || strings.Count(err.Error(), "canceled") != 2 {
		t.Fatalf("cancelled from outside: %v", err)
	}
}
