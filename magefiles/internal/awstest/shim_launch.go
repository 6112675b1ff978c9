package awstest

// What Launch and Swap need of EC2 beyond Shim, for their tests only. Each
// gap was checked against kumo v0.33.1 (internal/service/ec2: RunInstances
// reads no ClientToken; XMLInstance has no dnsName and kumo never sets a
// public address):
//
//   - RunInstances ClientToken: AWS answers a repeated token with the
//     instances it already started (in their current state) instead of
//     starting twins. The front tags each instance started with a token
//     (tag TokenTag) so a repeat finds it even when the first answer was
//     lost (DropAfter), and replays it.
//   - Public addresses: every instance gets a public IPv4 address in
//     198.18.0.0/15 (RFC 2544's benchmarking range, never routed) derived
//     from its id, and the matching ec2-A-B-C-D.compute-1.amazonaws.com name.
//
// It is a front in front of Harness.serve: faults and the recorder see every
// call as before.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TokenTag is the tag the launch front puts on instances started with a ClientToken.
const TokenTag = "awstest:client-token"

// StartLaunch is Start with the launch front: RunInstances honours
// ClientToken and instances have public addresses.
func StartLaunch(t testing.TB, opts Options) *Harness {
	t.Helper()
	h := Start(t, opts)
	f := &launchFront{h: h}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	return h
}

type launchFront struct {
	h   *Harness
	run sync.Mutex // a RunInstances and its token lookup are atomic
}

func (f *launchFront) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var form url.Values
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, _ = url.ParseQuery(string(body))
	}
	service, op := identify(r, form)
	if service != "ec2" || (op != "RunInstances" && op != "DescribeInstances") {
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.h.serve(w, r)
		return
	}
	if token := form.Get("ClientToken"); op == "RunInstances" && token != "" {
		f.run.Lock()
		defer f.run.Unlock()
		insts, err := f.h.Shim.instances(r.Context(), url.Values{})
		if err != nil {
			writeAPIError(w, "ec2", "InternalError", "awstest: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var same []xmlInstance
		for _, in := range insts {
			if hasTag(fromXMLTags(in.TagSet), TokenTag, token) {
				same = append(same, in)
			}
		}
		if len(same) > 0 {
			f.replay(w, r, same)
			return
		}
		n := 1
		for form.Has(fmt.Sprintf("TagSpecification.%d.ResourceType", n)) {
			n++
		}
		p := fmt.Sprintf("TagSpecification.%d.", n)
		form.Set(p+"ResourceType", "instance")
		form.Set(p+"Tag.1.Key", TokenTag)
		form.Set(p+"Tag.1.Value", token)
		body = []byte(form.Encode())
		r.ContentLength = int64(len(body))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	bw := &bufferedWriter{ResponseWriter: w}
	f.h.serve(bw, r)
	if bw.hijacked {
		return
	}
	out := bw.buf.Bytes()
	if bw.status == 0 {
		bw.status = http.StatusOK
	}
	if bw.status == http.StatusOK {
		out = withPublicAddresses(out)
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(bw.status)
	_, _ = w.Write(out)
}

// replay answers a repeated token as AWS does: the same instances, with
// their state now. The faults apply to it like to any call.
func (f *launchFront) replay(w http.ResponseWriter, r *http.Request, insts []xmlInstance) {
	delay, fault := f.h.Faults.decide("ec2", "RunInstances")
	call := Call{Service: "ec2", Operation: "RunInstances"}
	if fault != nil {
		call.Fault = fault.Kind.String()
	}
	f.h.Calls.add(call)
	if !sleep(r, delay) {
		return
	}
	if fault != nil {
		switch fault.Kind {
		case Throttle:
			code, status := throttleError("ec2")
			writeAPIError(w, "ec2", code, "Rate exceeded (injected by awstest)", status)
		case ServerError:
			writeAPIError(w, "ec2", "InternalError", "Internal error (injected by awstest)", http.StatusInternalServerError)
		case Error:
			writeAPIError(w, "ec2", fault.Code, fault.Code+" (injected by awstest)", fault.Status)
		case Drop, DropAfter:
			hangUp(w)
		}
		return
	}
	resp := runInstancesResponse{Xmlns: ec2NS, RequestID: newRequestID(), ReservationID: insts[0].reservation, OwnerID: AccountID, Instances: insts}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	_ = xml.NewEncoder(&b).Encode(resp)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(withPublicAddresses(b.Bytes()))
}

var instanceIDRE = regexp.MustCompile(`<instanceId>(i-[^<]+)</instanceId>`)

// withPublicAddresses adds dnsName and ipAddress after every instance id.
func withPublicAddresses(body []byte) []byte {
	return instanceIDRE.ReplaceAllFunc(body, func(m []byte) []byte {
		id := string(instanceIDRE.FindSubmatch(m)[1])
		ip := PublicIP(id)
		return fmt.Appendf(nil, "%s<dnsName>%s</dnsName><ipAddress>%s</ipAddress>", m, PublicDNSName(ip), ip)
	})
}

// PublicIP is the public IPv4 address the launch front gives an instance.
func PublicIP(instanceID string) string {
	s := sha256.Sum256([]byte(instanceID))
	return fmt.Sprintf("198.%d.%d.%d", 18+int(s[0]&1), s[1], 1+int(s[2])%254)
}

// PublicDNSName is EC2's public name for a public IPv4 address in us-east-1.
func PublicDNSName(ip string) string {
	return "ec2-" + strings.ReplaceAll(ip, ".", "-") + ".compute-1.amazonaws.com"
}

// bufferedWriter holds an answer back so the front can amend it; a hijack
// (an injected drop) passes straight through.
type bufferedWriter struct {
	http.ResponseWriter
	status   int
	buf      bytes.Buffer
	hijacked bool
}

func (b *bufferedWriter) WriteHeader(s int) {
	if b.status == 0 {
		b.status = s
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}

func (b *bufferedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	b.hijacked = true
	return b.ResponseWriter.(http.Hijacker).Hijack()
}
