package awsmodel

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
)

// Zones are listed straight from kumo, where hosted zones live (their
// record sets live in the model, records.go): neither recorded nor faulted,
// for test servers that answer from the zones (the DNS server Pebble asks).

// Zone is a hosted zone as kumo holds it.
type Zone struct {
	ID      string
	Name    string
	Private bool
}

// Zones lists every hosted zone straight from kumo (see RecordSets).
func (s *Model) Zones(ctx context.Context) ([]Zone, error) {
	var zones []Zone
	for marker := ""; ; {
		uri := "/2013-04-01/hostedzone?maxitems=100"
		if marker != "" {
			uri += "&marker=" + marker
		}
		resp := s.send(ctx, http.MethodGet, uri, http.Header{"User-Agent": {"awsmodel api/route53#model"}}, nil)
		if resp.status != http.StatusOK {
			return nil, fmt.Errorf("listing hosted zones: HTTP %d: %s", resp.status, resp.body)
		}
		var out struct {
			Zones []struct {
				ID     string `xml:"Id"`
				Name   string `xml:"Name"`
				Config struct {
					PrivateZone bool `xml:"PrivateZone"`
				} `xml:"Config"`
			} `xml:"HostedZones>HostedZone"`
			IsTruncated bool   `xml:"IsTruncated"`
			NextMarker  string `xml:"NextMarker"`
		}
		if err := xml.Unmarshal(resp.body, &out); err != nil {
			return nil, err
		}
		for _, z := range out.Zones {
			zones = append(zones, Zone{ID: strings.TrimPrefix(z.ID, "/hostedzone/"), Name: z.Name, Private: z.Config.PrivateZone})
		}
		if !out.IsTruncated || out.NextMarker == "" {
			return zones, nil
		}
		// kumo starts the next page after the marker zone (see
		// serveRoute53), so that zone is read on its own.
		marker = out.NextMarker
		one := s.send(ctx, http.MethodGet, "/2013-04-01/hostedzone/"+strings.TrimPrefix(marker, "/hostedzone/"), http.Header{"User-Agent": {"awsmodel api/route53#model"}}, nil)
		var z struct {
			ID     string `xml:"HostedZone>Id"`
			Name   string `xml:"HostedZone>Name"`
			Config struct {
				PrivateZone bool `xml:"PrivateZone"`
			} `xml:"HostedZone>Config"`
		}
		if one.status != http.StatusOK || xml.Unmarshal(one.body, &z) != nil {
			return nil, fmt.Errorf("reading hosted zone %s: HTTP %d", marker, one.status)
		}
		zones = append(zones, Zone{ID: strings.TrimPrefix(z.ID, "/hostedzone/"), Name: z.Name, Private: z.Config.PrivateZone})
	}
}
