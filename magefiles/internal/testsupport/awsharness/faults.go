package awsharness

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// FaultKind is what goes wrong with a request.
type FaultKind int

const (
	// Throttle answers with the service's throttling error: ThrottlingException
	// (EBS), RequestLimitExceeded (EC2), Throttling (Route53).
	Throttle FaultKind = iota + 1
	// ServerError answers HTTP 500 with the service's internal error code.
	ServerError
	// Drop closes the connection before the request reaches the emulator:
	// the client sees the connection die with no response.
	Drop
	// DropAfter serves the request, then closes the connection instead of
	// answering: the call took effect but the client cannot know it.
	DropAfter
	// Error answers with Fault.Code and Fault.Status, e.g.
	// ResourceNotFoundException/404 for "snapshot not found just after start".
	Error
	// Latency delays the request by Fault.Delay and then serves it.
	Latency
)

func (k FaultKind) String() string {
	switch k {
	case Throttle:
		return "throttle"
	case ServerError:
		return "server-error"
	case Drop:
		return "drop"
	case DropAfter:
		return "drop-after"
	case Error:
		return "error"
	case Latency:
		return "latency"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is one rule of the injector. A request matches when Service and
// Operation match (empty matches any); it is then hit with probability Rate.
type Fault struct {
	Service   string
	Operation string
	Kind      FaultKind
	Rate      float64       // 0..1; 1 hits every matching request
	Delay     time.Duration // Latency only
	Code      string        // Error only
	Status    int           // Error only
	Limit     int           // hit at most this many times; 0 is no limit
	hits      int
}

// Faults is the fault injector in front of the emulator. Latency rules add
// up; of the failing rules, the first that hits wins. Safe for concurrent use.
type Faults struct {
	mu    sync.Mutex
	rules []*Fault
	rng   *rand.Rand
	hits  map[string]int
}

func newFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), hits: map[string]int{}}
}

// Add installs rules; they apply to requests arriving from now on.
func (f *Faults) Add(rules ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rules {
		f.rules = append(f.rules, &r)
	}
}

// Clear removes every rule (counts stay).
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Injected is how many requests each kind of failure hit ("throttle", "drop", ...).
func (f *Faults) Injected() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.hits {
		out[k] = v
	}
	return out
}

// decide picks what happens to one request: total delay, and the failing
// rule that hit (nil when the request is served normally).
func (f *Faults) decide(service, op string) (time.Duration, *Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var delay time.Duration
	var fail *Fault
	for _, r := range f.rules {
		if (r.Service != "" && r.Service != service) || (r.Operation != "" && r.Operation != op) {
			continue
		}
		if r.Limit > 0 && r.hits >= r.Limit {
			continue
		}
		if r.Kind != Latency && fail != nil {
			continue
		}
		if r.Rate < 1 && f.rng.Float64() >= r.Rate {
			continue
		}
		r.hits++
		if r.Kind == Latency {
			delay += r.Delay
			continue
		}
		fail = r
		f.hits[r.Kind.String()]++
	}
	return delay, fail
}

// sleep waits d or until the client gives up.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// hangUp closes the client's connection without an HTTP response.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("awsharness: response writer cannot hijack; drops need HTTP/1.1")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}
