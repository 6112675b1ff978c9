package awsmodel

import (
	"encoding/xml"
	"net/http"
	"strconv"
)

// serveRoute53 corrects kumo's ListHostedZones paging. Route53's NextMarker
// names the first zone of the next page, but kumo v0.33.1 starts the next page
// after the marker, so one zone was lost at every page boundary: with more than
// 100 zones in the process (kumo's state is global, and every test makes
// zones) a lookup could miss the very zone it wanted. The model answers such a
// page as Route53 does: the marker zone, then kumo's page of one fewer.
func (s *Model) serveRoute53(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	if s.serveRecords(w, r, op, body) {
		return
	}
	q := r.URL.Query()
	marker := q.Get("marker")
	maxItems := 100
	if v, err := strconv.Atoi(q.Get("maxitems")); err == nil && v > 0 {
		maxItems = v
	}
	if op != "ListHostedZones" || marker == "" || maxItems < 2 {
		s.forward(r, body).write(w)
		return
	}
	first := s.send(r.Context(), http.MethodGet, "/2013-04-01/hostedzone/"+marker, r.Header.Clone(), nil)
	var zone struct {
		HostedZone struct {
			Inner string `xml:",innerxml"`
		} `xml:"HostedZone"`
	}
	if first.status != http.StatusOK || xml.Unmarshal(first.body, &zone) != nil {
		first.write(w) // the marker names no zone: Route53's error, as kumo gives it
		return
	}
	q.Set("maxitems", strconv.Itoa(maxItems-1))
	rest := s.send(r.Context(), http.MethodGet, r.URL.Path+"?"+q.Encode(), r.Header.Clone(), nil)
	var page struct {
		XMLName     xml.Name
		HostedZones struct {
			Inner string `xml:",innerxml"`
		} `xml:"HostedZones"`
		IsTruncated bool   `xml:"IsTruncated"`
		NextMarker  string `xml:"NextMarker"`
	}
	if rest.status != http.StatusOK || xml.Unmarshal(rest.body, &page) != nil {
		rest.write(w)
		return
	}
	type raw struct {
		Inner string `xml:",innerxml"`
	}
	out := struct {
		XMLName     xml.Name `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ListHostedZonesResponse"`
		HostedZones struct {
			Zones []raw  `xml:"HostedZone"`
			Rest  string `xml:",innerxml"`
		} `xml:"HostedZones"`
		Marker      string `xml:"Marker"`
		IsTruncated bool   `xml:"IsTruncated"`
		NextMarker  string `xml:"NextMarker,omitempty"`
		MaxItems    int    `xml:"MaxItems"`
	}{Marker: marker, IsTruncated: page.IsTruncated, NextMarker: page.NextMarker, MaxItems: maxItems}
	out.HostedZones.Zones = []raw{{zone.HostedZone.Inner}}
	out.HostedZones.Rest = page.HostedZones.Inner
	data, err := xml.Marshal(out)
	if err != nil {
		internalError(err).write(w)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	w.Write(append([]byte(xml.Header), data...))
}
