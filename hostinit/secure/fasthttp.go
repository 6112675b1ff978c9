package secure

import (
	"net"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"
)

// FromFastHTTP serves a fasthttp handler (the static server) from net/http,
// which speaks HTTP/2 over TLS where fasthttp speaks HTTP/1.1 only. Each
// request is copied into a fasthttp request and the answer back; the static
// server computes its answers at load, so the copy is most of the cost
// (BenchmarkSmallPage*). Request bodies are not passed: the static server
// answers GET and HEAD, and 405 to the rest.
func FromFastHTTP(h fasthttp.RequestHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req fasthttp.Request
		req.Header.SetMethod(r.Method)
		req.SetRequestURI(r.URL.RequestURI())
		req.Header.SetHost(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		var remote net.Addr
		if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
			remote = a
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, remote, nil)
		// As the static server's own fasthttp.Server (NoDefaultContentType):
		// no invented Content-Type on redirects and 304s.
		ctx.Response.Header.SetNoDefaultContentType(true)
		h(&ctx)

		resp := &ctx.Response
		out := w.Header()
		for k, v := range resp.Header.All() {
			switch string(k) {
			case fasthttp.HeaderContentLength, fasthttp.HeaderConnection, fasthttp.HeaderTransferEncoding, "Keep-Alive":
				// net/http frames the answer itself; hop-by-hop headers are
				// forbidden in HTTP/2.
			default:
				out.Add(string(k), string(v))
			}
		}
		status := resp.StatusCode()
		body := resp.Body()
		if status != http.StatusNotModified && status != http.StatusNoContent && status >= 200 {
			out.Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead && status != http.StatusNotModified && len(body) > 0 {
			_, _ = w.Write(body)
		}
	})
}
