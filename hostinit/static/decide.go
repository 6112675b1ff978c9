package static

import (
	"net/http"
	"path"
	"strconv"
	"strings"
)

// request is what an answer depends on, as a front end reads it. A header
// field sent on several lines has several values; an absent one has none
// or an empty one. decide keeps none of it, so a front end may pass
// strings that share its own buffers.
type request struct {
	method          string
	path            string // decoded, not yet cleaned
	acceptEncoding  []string
	ifNoneMatch     []string
	ifModifiedSince string
	ranged          bool // a Range header is present
}

// kind is the shape of an answer, which the front ends write each in
// their own way.
type kind uint8

const (
	answerFile     kind = iota // a file's representation: 200, 304, or the 404 page
	answerRange                // a file's identity bytes through http.ServeContent
	answerRedirect             // 301 to route.redirect, the request's query kept
	answerText                 // a short text/plain error: 405, or 404 without a page
)

// answer is what a request gets.
type answer struct {
	kind   kind
	status int
	file   *file           // answerFile, answerRange
	rep    *representation // answerFile: the encoding sent
	route  route           // answerRedirect
	text   *text           // answerText
}

// text is a fixed error body, with its header values.
type text struct {
	body    []byte
	hLength []string
}

var (
	text405 = newText("405 method not allowed\n")
	text404 = newText("404 page not found\n")
)

func newText(body string) *text {
	return &text{body: []byte(body), hLength: []string{strconv.Itoa(len(body))}}
}

// decide answers q: the one place where the server's rules live.
func (s *Server) decide(q *request) answer {
	if q.method != http.MethodGet && q.method != http.MethodHead {
		return answer{kind: answerText, status: http.StatusMethodNotAllowed, text: text405}
	}
	r, ok := s.routes[cleanPath(q.path)]
	switch {
	case ok && r.file != nil:
		if q.ranged {
			return answer{kind: answerRange, status: http.StatusOK, file: r.file}
		}
		return s.fileAnswer(q, r.file, http.StatusOK)
	case ok:
		return answer{kind: answerRedirect, status: http.StatusMovedPermanently, route: r}
	case s.notFound != nil:
		return s.fileAnswer(q, s.notFound, http.StatusNotFound)
	}
	return answer{kind: answerText, status: http.StatusNotFound, text: text404}
}

// fileAnswer picks the representation and, for a 200, whether the client's
// copy is current. A 404 page is never "not modified".
func (s *Server) fileAnswer(q *request, f *file, status int) answer {
	rep := &f.identity
	if f.gzip != nil && acceptsGzip(q.acceptEncoding) {
		rep = f.gzip
	}
	if status == http.StatusOK && s.notModified(q, rep.etag) {
		status = http.StatusNotModified
	}
	return answer{kind: answerFile, status: status, file: f, rep: rep}
}

// cleanPath is the path a route is looked up by: dot segments and repeated
// slashes resolved, a trailing slash kept (as fasthttp normalises; net/http
// passes the path as sent). A clean path, the common case, is returned as
// it is.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/./") && !strings.Contains(p, "/../") &&
		!strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..") {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// notModified applies RFC 9110's rules: If-None-Match, when present, decides
// alone; otherwise If-Modified-Since does.
func (s *Server) notModified(q *request, etag string) bool {
	present := false
	for _, line := range q.ifNoneMatch {
		for line != "" {
			present = true
			var t string
			t, line, _ = strings.Cut(line, ",")
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	if present {
		return false
	}
	if ims := q.ifModifiedSince; ims != "" {
		if ims == s.lastMod {
			return true // the date we sent, sent back: nothing to parse
		}
		t, err := http.ParseTime(ims)
		return err == nil && !s.modified.After(t)
	}
	return false
}

// acceptsGzip reads Accept-Encoding: gzip (or x-gzip) with a q-value above
// zero; failing an explicit gzip entry, a "*" entry decides. It allocates
// nothing: it runs on every request.
func acceptsGzip(lines []string) bool {
	explicit, star := -1, -1 // -1 absent, 0 refused, 1 accepted
	for _, header := range lines {
		for header != "" {
			var part string
			part, header, _ = strings.Cut(header, ",")
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			accepted := 1
			for params != "" {
				var param string
				param, params, _ = strings.Cut(params, ";")
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if ok && (k == "q" || k == "Q") {
					accepted = qPositive(strings.TrimSpace(v))
				}
			}
			switch {
			case strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip"):
				explicit = accepted
			case coding == "*":
				star = accepted
			}
		}
	}
	if explicit >= 0 {
		return explicit > 0
	}
	return star > 0
}

// qPositive is 1 for a q-value above zero, 0 for zero or one that cannot be
// read (an unreadable weight accepts nothing): RFC 9110's qvalue is "0"
// ["." 0*3DIGIT] or "1" ["." 0*3("0")].
func qPositive(v string) int {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 1 {
		return 0
	}
	return 1
}
