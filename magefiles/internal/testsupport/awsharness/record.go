package awsharness

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Call is one HTTP request the harness received: one attempt, so an SDK
// retry shows as two calls.
type Call struct {
	Service   string // SigV4 signing name: ec2, ebs, route53, sts
	Operation string // API operation, which is also the IAM action name
	Fault     string // the fault injected into this attempt, "" when none
}

// Action is the IAM action the call needs, e.g. "ec2:RegisterImage".
func (c Call) Action() string { return c.Service + ":" + c.Operation }

// Recorder keeps every call made, so a test can assert which API calls a step
// makes (and a later test can compare them with an IAM policy).
type Recorder struct {
	mu     sync.Mutex
	calls  []Call
	onCall []func(Call)
}

func (r *Recorder) add(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	hooks := append([]func(Call){}, r.onCall...)
	r.mu.Unlock()
	for _, h := range hooks {
		h(c)
	}
}

// OnCall runs fn for every call as it arrives, before it is served; a test
// uses it to cancel a run mid-upload. fn must be safe for concurrent use.
func (r *Recorder) OnCall(fn func(Call)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onCall = append(r.onCall, fn)
}

// Calls returns a copy of every call so far, in arrival order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Count is how many calls of service:operation were made (any fault or none).
func (r *Recorder) Count(service, operation string) int {
	n := 0
	for _, c := range r.Calls() {
		if c.Service == service && c.Operation == operation {
			n++
		}
	}
	return n
}

// Actions lists the distinct IAM actions called, sorted, e.g. "ebs:StartSnapshot".
func (r *Recorder) Actions() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range r.Calls() {
		if a := c.Action(); !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// Reset forgets the calls so far (hooks stay).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// identify names the service and operation of an SDK request without
// consuming its body: the service is the SigV4 signing name, the operation
// the Query protocol's Action or, for REST services, the route.
func identify(r *http.Request, form url.Values) (service, operation string) {
	service = signingName(r)
	if service == "" {
		service = userAgentService(r.Header.Get("User-Agent"))
	}
	if a := form.Get("Action"); a != "" {
		return service, a
	}
	// JSON-protocol services (ssm) name the operation in X-Amz-Target:
	// "AmazonSSM.PutParameter".
	if _, op, ok := strings.Cut(r.Header.Get("X-Amz-Target"), "."); ok {
		return service, op
	}
	for _, rt := range restRoutes[service] {
		if rt.method == r.Method && rt.path.MatchString(r.URL.Path) {
			return service, rt.op
		}
	}
	return service, r.Method + " " + r.URL.Path
}

// signingName reads the service from "Credential=AKID/date/region/service/aws4_request".
func signingName(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	if end := strings.IndexAny(cred, ", "); end >= 0 {
		cred = cred[:end]
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
}

// userAgentService reads the SDK's "api/ec2#1.2.3" user-agent token.
func userAgentService(ua string) string {
	for _, tok := range strings.Fields(ua) {
		if rest, ok := strings.CutPrefix(tok, "api/"); ok {
			name, _, _ := strings.Cut(rest, "#")
			return strings.ToLower(name)
		}
	}
	return ""
}

type restRoute struct {
	method string
	path   *regexp.Regexp
	op     string
}

func route(method, pattern, op string) restRoute {
	return restRoute{method, regexp.MustCompile("^" + pattern + "$"), op}
}

// restRoutes maps the REST services' routes (from the API models) to
// operation names. Route53's are here for the Launch/Swap tests.
var restRoutes = map[string][]restRoute{
	"ebs": {
		route("POST", `/snapshots`, "StartSnapshot"),
		route("POST", `/snapshots/completion/[^/]+`, "CompleteSnapshot"),
		route("PUT", `/snapshots/[^/]+/blocks/[0-9]+`, "PutSnapshotBlock"),
		route("GET", `/snapshots/[^/]+/blocks/[0-9]+`, "GetSnapshotBlock"),
		route("GET", `/snapshots/[^/]+/blocks`, "ListSnapshotBlocks"),
		route("GET", `/snapshots/[^/]+/changedblocks`, "ListChangedBlocks"),
	},
	"route53": {
		route("POST", `/2013-04-01/hostedzone`, "CreateHostedZone"),
		route("GET", `/2013-04-01/hostedzone`, "ListHostedZones"),
		route("GET", `/2013-04-01/hostedzonesbyname`, "ListHostedZonesByName"),
		route("GET", `/2013-04-01/hostedzone/[^/]+`, "GetHostedZone"),
		route("DELETE", `/2013-04-01/hostedzone/[^/]+`, "DeleteHostedZone"),
		route("POST", `/2013-04-01/hostedzone/[^/]+/rrset/?`, "ChangeResourceRecordSets"),
		route("GET", `/2013-04-01/hostedzone/[^/]+/rrset/?`, "ListResourceRecordSets"),
		route("GET", `/2013-04-01/change/[^/]+`, "GetChange"),
		route("POST", `/2013-04-01/tags/[^/]+/[^/]+`, "ChangeTagsForResource"),
		route("GET", `/2013-04-01/tags/[^/]+/[^/]+`, "ListTagsForResource"),
	},
}

// String formats a call for test failure messages.
func (c Call) String() string {
	if c.Fault != "" {
		return fmt.Sprintf("%s (%s)", c.Action(), c.Fault)
	}
	return c.Action()
}
