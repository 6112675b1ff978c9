package awsmodel

// Route53 record sets, held by the model instead of kumo. kumo v0.33.1
// (internal/service/route53) answers every change INSYNC at once, lists all
// records unsorted on one page whatever StartRecordName and MaxItems say,
// lets a DELETE remove a record whose values it does not match, creates no
// SOA and NS records with a zone, and applies a batch change by change (a
// failing change leaves the earlier ones applied, and a DELETE shifts the
// stored slice in place). The model answers as Route53 documents:
//
//   - ChangeResourceRecordSets: a batch is transactional, validated as a whole
//     and applied all or nothing; CREATE of a record set that exists,
//     DELETE of one that does not exist or whose TTL and values differ, a
//     CNAME beside other records of the same name (the apex has SOA and NS),
//     an A value that is not an IPv4 address and a TXT value that is not
//     quoted all fail with InvalidChangeBatch. Route 53 API Reference,
//     ChangeResourceRecordSets ("Change Batches and Transactional Changes",
//     "Deleting Resource Record Sets": "you must specify all the same values
//     that you specified when you created it"):
//     https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html
//   - Every change starts PENDING ("This is the initial status of all change
//     batch requests") and turns INSYNC only after pendingChecks GetChange
//     calls have seen it PENDING. Route 53 API Reference, GetChange:
//     https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html
//   - ListResourceRecordSets sorts by name with the labels reversed, then by
//     type; starts at the first record set whose name (and type, if given) is
//     greater than or equal to StartRecordName (StartRecordType); returns at
//     most MaxItems, 300 at most and by default, with IsTruncated and
//     NextRecordName/NextRecordType; a type without a name is InvalidInput;
//     PENDING changes are listed ("returns the most current version").
//     Route 53 API Reference, ListResourceRecordSets:
//     https://docs.aws.amazon.com/Route53/latest/APIReference/API_ListResourceRecordSets.html
//   - A new zone has its NS and SOA record sets at the apex, as Route53
//     creates them. Route 53 Developer Guide, "NS and SOA records that Amazon
//     Route 53 creates for a public hosted zone":
//     https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/SOA-NSrecords.html

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const r53NS = "https://route53.amazonaws.com/doc/2013-04-01/"

// maxListItems is ListResourceRecordSets' page size limit and default.
const maxListItems = 300

// RecordSet is one Route53 resource record set.
type RecordSet struct {
	Name          string       `xml:"Name"`
	Type          string       `xml:"Type"`
	SetIdentifier string       `xml:"SetIdentifier,omitempty"`
	Weight        *int64       `xml:"Weight,omitempty"`
	TTL           *int64       `xml:"TTL,omitempty"`
	Records       []string     `xml:"-"`
	Alias         *aliasTarget `xml:"AliasTarget,omitempty"`
}

// xmlRecordSet is RecordSet as Route53 writes it: each value its own
// ResourceRecord element.
type xmlRecordSet struct {
	Name          string           `xml:"Name"`
	Type          string           `xml:"Type"`
	SetIdentifier string           `xml:"SetIdentifier,omitempty"`
	Weight        *int64           `xml:"Weight,omitempty"`
	TTL           *int64           `xml:"TTL,omitempty"`
	Records       []resourceRecord `xml:"ResourceRecords>ResourceRecord"`
	Alias         *aliasTarget     `xml:"AliasTarget,omitempty"`
}

type resourceRecord struct {
	Value string `xml:"Value"`
}

func (rs *RecordSet) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var x xmlRecordSet
	if err := d.DecodeElement(&x, &start); err != nil {
		return err
	}
	*rs = RecordSet{Name: x.Name, Type: x.Type, SetIdentifier: x.SetIdentifier, Weight: x.Weight, TTL: x.TTL, Alias: x.Alias}
	for _, r := range x.Records {
		rs.Records = append(rs.Records, r.Value)
	}
	return nil
}

func (rs RecordSet) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	x := xmlRecordSet{Name: rs.Name, Type: rs.Type, SetIdentifier: rs.SetIdentifier, Weight: rs.Weight, TTL: rs.TTL, Alias: rs.Alias}
	for _, v := range rs.Records {
		x.Records = append(x.Records, resourceRecord{v})
	}
	return e.EncodeElement(x, start)
}

type aliasTarget struct {
	HostedZoneID         string `xml:"HostedZoneId"`
	DNSName              string `xml:"DNSName"`
	EvaluateTargetHealth bool   `xml:"EvaluateTargetHealth"`
}

// Change is one change of a batch, as the model received it.
type Change struct {
	Zone   string // zone id, without /hostedzone/
	Action string // CREATE, DELETE, UPSERT
	Set    RecordSet
}

type zoneRecords struct {
	name string // fully qualified, lower case
	sets []RecordSet
}

type change struct {
	id, comment string
	submitted   time.Time
	pendingLeft int
}

func (s *Model) serveRecords(w http.ResponseWriter, r *http.Request, op string, body []byte) bool {
	switch op {
	case "ChangeResourceRecordSets":
		s.changeRecordSets(w, r, body)
	case "ListResourceRecordSets":
		s.listRecordSets(w, r)
	case "GetChange":
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		s.mu.Lock()
		c, ok := s.changes[id]
		status := "INSYNC"
		if ok && c.pendingLeft > 0 {
			c.pendingLeft--
			status = "PENDING"
		}
		s.mu.Unlock()
		if !ok {
			return false // kumo's own changes (zone creation), INSYNC
		}
		writeR53(w, struct {
			XMLName xml.Name   `xml:"GetChangeResponse"`
			Xmlns   string     `xml:"xmlns,attr"`
			Info    changeInfo `xml:"ChangeInfo"`
		}{Xmlns: r53NS, Info: changeInfo{ID: "/change/" + c.id, Status: status, SubmittedAt: c.submitted.Format(time.RFC3339), Comment: c.comment}})
	default:
		return false
	}
	return true
}

type changeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
	Comment     string `xml:"Comment,omitempty"`
}

// zoneOf returns the zone's records, asking kumo for the zone the first
// time (NoSuchHostedZone when kumo has none).
func (s *Model) zoneOf(r *http.Request, id string) (*zoneRecords, *response) {
	s.mu.Lock()
	z, ok := s.zones[id]
	s.mu.Unlock()
	if ok {
		return z, nil
	}
	resp := s.send(r.Context(), http.MethodGet, "/2013-04-01/hostedzone/"+id, r.Header.Clone(), nil)
	if resp.status != http.StatusOK {
		return nil, resp
	}
	var out struct {
		HostedZone struct{ Name string } `xml:"HostedZone"`
	}
	if err := xml.Unmarshal(resp.body, &out); err != nil {
		return nil, internalError(err)
	}
	name := fqdn(out.HostedZone.Name)
	z = &zoneRecords{name: name, sets: []RecordSet{
		{Name: name, Type: "NS", TTL: ptr(int64(172800)), Records: []string{"ns-1.kumo.local.", "ns-2.kumo.local.", "ns-3.kumo.local.", "ns-4.kumo.local."}},
		{Name: name, Type: "SOA", TTL: ptr(int64(900)), Records: []string{"ns-1.kumo.local. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}},
	}}
	s.mu.Lock()
	if have, ok := s.zones[id]; ok {
		z = have
	} else {
		s.zones[id] = z
	}
	s.mu.Unlock()
	return z, nil
}

func zoneIDFromPath(p string) string {
	rest := strings.TrimPrefix(p, "/2013-04-01/hostedzone/")
	id, _, _ := strings.Cut(rest, "/")
	return id
}

func (s *Model) changeRecordSets(w http.ResponseWriter, r *http.Request, body []byte) {
	id := zoneIDFromPath(r.URL.Path)
	var req struct {
		Batch struct {
			Comment string `xml:"Comment"`
			Changes []struct {
				Action string    `xml:"Action"`
				Set    RecordSet `xml:"ResourceRecordSet"`
			} `xml:"Changes>Change"`
		} `xml:"ChangeBatch"`
	}
	if err := xml.Unmarshal(body, &req); err != nil || len(req.Batch.Changes) == 0 {
		WriteAPIError(w, "route53", "InvalidInput", "the request has no change batch", http.StatusBadRequest)
		return
	}
	z, resp := s.zoneOf(r, id)
	if resp != nil {
		resp.write(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Validated and applied on a copy: all or nothing.
	sets := slices.Clone(z.sets)
	var msgs []string
	var applied []Change
	for _, c := range req.Batch.Changes {
		rs := c.Set
		rs.Name = fqdn(unescapeName(rs.Name))
		if msg := validateSet(z.name, rs); msg != "" {
			msgs = append(msgs, msg)
			continue
		}
		i := slices.IndexFunc(sets, func(x RecordSet) bool { return sameSet(x, rs) })
		switch c.Action {
		case "CREATE":
			if i >= 0 {
				msgs = append(msgs, fmt.Sprintf("Tried to create resource record set [name='%s', type='%s'] but it already exists", rs.Name, rs.Type))
				continue
			}
			if msg := cnameConflict(sets, rs, z.name); msg != "" {
				msgs = append(msgs, msg)
				continue
			}
			sets = append(sets, rs)
		case "DELETE":
			switch {
			case i < 0:
				msgs = append(msgs, fmt.Sprintf("Tried to delete resource record set [name='%s', type='%s'] but it was not found", rs.Name, rs.Type))
				continue
			case !sameValues(sets[i], rs):
				msgs = append(msgs, fmt.Sprintf("Tried to delete resource record set [name='%s', type='%s'] but the values provided do not match the current values", rs.Name, rs.Type))
				continue
			}
			sets = slices.Delete(sets, i, i+1)
		case "UPSERT":
			if i >= 0 {
				sets[i] = rs
				continue
			}
			if msg := cnameConflict(sets, rs, z.name); msg != "" {
				msgs = append(msgs, msg)
				continue
			}
			sets = append(sets, rs)
		default:
			WriteAPIError(w, "route53", "InvalidInput", "Invalid request: Action must be CREATE, DELETE or UPSERT", http.StatusBadRequest)
			return
		}
		applied = append(applied, Change{Zone: id, Action: c.Action, Set: rs})
	}
	if len(msgs) > 0 {
		WriteAPIError(w, "route53", "InvalidChangeBatch", "["+strings.Join(msgs, ", ")+"]", http.StatusBadRequest)
		return
	}
	z.sets = sets
	c := &change{id: "C" + randomUpper(20), comment: req.Batch.Comment, submitted: time.Now().UTC(), pendingLeft: s.pending}
	s.changes[c.id] = c
	s.changeLog = append(s.changeLog, applied...)
	writeR53(w, struct {
		XMLName xml.Name   `xml:"ChangeResourceRecordSetsResponse"`
		Xmlns   string     `xml:"xmlns,attr"`
		Info    changeInfo `xml:"ChangeInfo"`
	}{Xmlns: r53NS, Info: changeInfo{ID: "/change/" + c.id, Status: "PENDING", SubmittedAt: c.submitted.Format(time.RFC3339), Comment: c.comment}})
}

var quotedTXT = regexp.MustCompile(`^(?:"(?:[^"\\]|\\.){0,255}"\s*)+$`)

// validateSet checks one record set as Route53 does before applying a batch.
func validateSet(zone string, rs RecordSet) string {
	switch {
	case rs.Name != zone && !strings.HasSuffix(rs.Name, "."+zone):
		return fmt.Sprintf("RRSet with DNS name %s is not permitted in zone %s", rs.Name, zone)
	case rs.Alias == nil && rs.TTL == nil:
		return fmt.Sprintf("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=?, Name=%s, Type=%s, SetIdentifier=%s]", rs.Name, rs.Type, rs.SetIdentifier)
	case rs.Alias != nil && (rs.TTL != nil || len(rs.Records) > 0):
		// ResourceRecordSet: an alias has no TTL and no ResourceRecords
		// (https://docs.aws.amazon.com/Route53/latest/APIReference/API_ResourceRecordSet.html).
		return fmt.Sprintf("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found more than one in Change with [Action=?, Name=%s, Type=%s, SetIdentifier=%s]", rs.Name, rs.Type, rs.SetIdentifier)
	case rs.TTL != nil && (*rs.TTL < 0 || *rs.TTL > 2147483647):
		// TTL: 0 to 2147483647 seconds (the same page).
		return fmt.Sprintf("Invalid request: TTL %d for %s is out of range 0-2147483647", *rs.TTL, rs.Name)
	case rs.Weight != nil && rs.SetIdentifier == "":
		// A weighted set needs a SetIdentifier (the same page).
		return fmt.Sprintf("Invalid request: a weighted record set needs a SetIdentifier, in %s %s", rs.Name, rs.Type)
	case rs.Alias == nil && len(rs.Records) == 0:
		return fmt.Sprintf("Invalid request: Expected at least one ResourceRecord for %s %s", rs.Name, rs.Type)
	case rs.Type == "CNAME" && len(rs.Records) > 1:
		return fmt.Sprintf("RRSet of type CNAME with DNS name %s has more than one value", rs.Name)
	}
	for _, v := range rs.Records {
		switch rs.Type {
		case "A":
			if ip := net.ParseIP(v); ip == nil || ip.To4() == nil {
				return fmt.Sprintf("Invalid Resource Record: 'FATAL problem: ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '%s''", v)
			}
		case "TXT":
			if !quotedTXT.MatchString(v) {
				return fmt.Sprintf("Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with '%s''", v)
			}
		}
	}
	return ""
}

func sameSet(a, b RecordSet) bool {
	return a.Name == b.Name && a.Type == b.Type && a.SetIdentifier == b.SetIdentifier
}

// sameValues is DELETE's test: the TTL, the values (in any order) and the
// alias all as they stand.
func sameValues(have, want RecordSet) bool {
	if (have.TTL == nil) != (want.TTL == nil) || have.TTL != nil && *have.TTL != *want.TTL {
		return false
	}
	if (have.Alias == nil) != (want.Alias == nil) || have.Alias != nil && (!strings.EqualFold(fqdn(have.Alias.DNSName), fqdn(want.Alias.DNSName)) || have.Alias.HostedZoneID != want.Alias.HostedZoneID) {
		return false
	}
	a, b := slices.Clone(have.Records), slices.Clone(want.Records)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// cnameConflict: a CNAME excludes every other record set at its name, and
// the zone apex always has SOA and NS.
func cnameConflict(sets []RecordSet, rs RecordSet, zone string) string {
	for _, x := range sets {
		if x.Name != rs.Name || x.Type == rs.Type {
			continue
		}
		if rs.Type == "CNAME" || x.Type == "CNAME" {
			return fmt.Sprintf("RRSet of type %s with DNS name %s is not permitted as it conflicts with other records with the same DNS name in zone %s", rs.Type, rs.Name, zone)
		}
	}
	return ""
}

// sortKey is Route53's listing order: the name with its labels reversed,
// then the type.
func sortKey(name string) string {
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".") + "."
}

func (s *Model) listRecordSets(w http.ResponseWriter, r *http.Request) {
	id := zoneIDFromPath(r.URL.Path)
	q := r.URL.Query()
	startName, startType, startID := q.Get("name"), q.Get("type"), q.Get("identifier")
	if startType != "" && startName == "" {
		WriteAPIError(w, "route53", "InvalidInput", "Invalid request: a type is given without a name", http.StatusBadRequest)
		return
	}
	maxItems := maxListItems
	if v := q.Get("maxitems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			WriteAPIError(w, "route53", "InvalidInput", "maxitems must be a positive number", http.StatusBadRequest)
			return
		}
		maxItems = min(n, maxListItems)
	}
	z, resp := s.zoneOf(r, id)
	if resp != nil {
		resp.write(w)
		return
	}
	s.mu.Lock()
	sets := slices.Clone(z.sets)
	s.mu.Unlock()
	slices.SortStableFunc(sets, func(a, b RecordSet) int {
		if c := strings.Compare(sortKey(a.Name), sortKey(b.Name)); c != 0 {
			return c
		}
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.SetIdentifier, b.SetIdentifier)
	})
	start := 0
	if startName != "" {
		key := sortKey(fqdn(unescapeName(startName)))
		start = len(sets)
		for i, rs := range sets {
			k := sortKey(rs.Name)
			if k > key || k == key && (startType == "" || rs.Type > startType || rs.Type == startType && rs.SetIdentifier >= startID) {
				start = i
				break
			}
		}
	}
	page := sets[start:]
	out := struct {
		XMLName     xml.Name    `xml:"ListResourceRecordSetsResponse"`
		Xmlns       string      `xml:"xmlns,attr"`
		Sets        []RecordSet `xml:"ResourceRecordSets>ResourceRecordSet"`
		IsTruncated bool        `xml:"IsTruncated"`
		NextName    string      `xml:"NextRecordName,omitempty"`
		NextType    string      `xml:"NextRecordType,omitempty"`
		NextID      string      `xml:"NextRecordIdentifier,omitempty"`
		MaxItems    string      `xml:"MaxItems"`
	}{Xmlns: r53NS, MaxItems: strconv.Itoa(maxItems)}
	if len(page) > maxItems {
		next := page[maxItems]
		out.IsTruncated, out.NextName, out.NextType, out.NextID = true, next.Name, next.Type, next.SetIdentifier
		page = page[:maxItems]
	}
	out.Sets = page
	if out.Sets == nil {
		out.Sets = []RecordSet{}
	}
	writeR53(w, out)
}

func writeR53(w http.ResponseWriter, v any) {
	data, err := xml.Marshal(v)
	if err != nil {
		internalError(err).write(w)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", NewRequestID())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append([]byte(xml.Header), data...))
}

// fqdn lower-cases a name and ends it with a dot, as Route53 stores names.
func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// unescapeName turns Route53's \052-style escapes into characters.
func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil && u != s {
		s = u
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func randomUpper(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

// --- helpers for tests ----------------------------------------------------

// Records returns the record sets at name in zone (any type), as stored.
func (s *Model) Records(zoneID, name string) []RecordSet {
	zoneID = strings.TrimPrefix(zoneID, "/hostedzone/")
	s.mu.Lock()
	defer s.mu.Unlock()
	z, ok := s.zones[zoneID]
	if !ok {
		return nil
	}
	var out []RecordSet
	for _, rs := range z.sets {
		if rs.Name == fqdn(name) {
			out = append(out, rs)
		}
	}
	return out
}

// Changes lists every record change applied so far, in order.
func (s *Model) Changes() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changeLog)
}
