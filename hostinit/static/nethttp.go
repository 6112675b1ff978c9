package static

import (
	"bytes"
	"net/http"
)

// Header values for net/http, shared by every response: a response
// assigns them to its header map and copies nothing. net/http and its
// HTTP/2 server only read them; a handler around this one that adds to a
// header (Header.Add) appends to a slice at its capacity, which copies.
var (
	hAllow         = []string{"GET, HEAD"}
	hCSP           = []string{ContentSecurityPolicy}
	hGzip          = []string{"gzip"}
	hNosniff       = []string{"nosniff"}
	hReferrer      = []string{ReferrerPolicy}
	hRedirectCache = []string{cacheRedirect}
	hServer        = []string{ServerName}
	hTextPlain     = []string{textPlain}
	hVary          = []string{"Accept-Encoding"}
)

// ServeHTTP answers one request from net/http, over HTTP/1.1 or HTTP/2.
// Header keys are written in canonical form, as net/http would make them.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, ranged := r.Header["Range"]
	q := request{
		method: r.Method, path: r.URL.Path, ranged: ranged,
		acceptEncoding: r.Header["Accept-Encoding"], ifNoneMatch: r.Header["If-None-Match"],
	}
	if ims := r.Header["If-Modified-Since"]; len(ims) > 0 {
		q.ifModifiedSince = ims[0]
	}
	a := s.decide(&q)
	h := w.Header()
	h["Server"] = hServer
	h["X-Content-Type-Options"] = hNosniff
	h["Referrer-Policy"] = hReferrer
	h["Content-Security-Policy"] = hCSP
	switch a.kind {
	case answerText:
		if a.status == http.StatusMethodNotAllowed {
			h["Allow"] = hAllow
		}
		writeBody(w, r, a.status, hTextPlain, a.text.hLength, a.text.body)
	case answerRedirect:
		loc := a.route.location
		if r.URL.RawQuery != "" {
			loc = []string{a.route.redirect + "?" + r.URL.RawQuery}
		}
		h["Location"] = loc
		h["Cache-Control"] = hRedirectCache
		w.WriteHeader(a.status)
	case answerRange:
		s.serveRange(w, r, a.file)
	case answerFile:
		f, rep := a.file, a.rep
		if f.gzip != nil {
			h["Vary"] = hVary
		}
		h["Cache-Control"] = f.hCache
		if a.status != http.StatusNotFound {
			h["Etag"] = rep.hETag
			h["Last-Modified"] = s.hLastMod
		}
		if a.status == http.StatusNotModified {
			w.WriteHeader(a.status)
			return
		}
		if rep.gzipped {
			h["Content-Encoding"] = hGzip
		}
		writeBody(w, r, a.status, f.hType, rep.hLength, rep.body)
	}
}

// writeBody sends the headers and, unless the request is HEAD, the body in
// one write: with the length known, net/http neither chunks it nor adds
// anything.
func writeBody(w http.ResponseWriter, r *http.Request, status int, ctype, length []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = ctype
	h["Content-Length"] = length
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// serveRange answers a request with a Range header through net/http's
// ServeContent, which implements RFC 9110's ranges (206, multipart/byteranges
// for several, 416, If-Range against the ETag or date) and its conditional
// requests. Ranges apply to the identity representation: the one a
// resuming download or a media player asks for.
func (s *Server) serveRange(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	h["Content-Type"] = f.hType
	h["Etag"] = f.identity.hETag
	h["Cache-Control"] = f.hCache
	if f.gzip != nil {
		h["Vary"] = hVary
	}
	http.ServeContent(w, r, "", s.modified, bytes.NewReader(f.identity.body))
}
