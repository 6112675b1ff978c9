package rawhttp

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGetReadsStatusAndBodyOfEachAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			http.Error(w, "no gzip asked", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte(strings.Repeat("x", 5000)))
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := New(conn, "x", "/", "Accept-Encoding", "gzip")
	defer c.Close()
	for range 3 { // the same connection answers again
		if status, n, err := c.Get(); err != nil || status != 200 || n != 5000 {
			t.Fatalf("Get: %d, %d bytes, %v; want 200 with 5000", status, n, err)
		}
	}
}

func TestGetRefusesAnAnswerWithoutLength(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
		w.(http.Flusher).Flush() // chunked
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := New(conn, "x", "/")
	defer c.Close()
	if _, _, err := c.Get(); err != errNoLength {
		t.Errorf("chunked answer: %v, want %v", err, errNoLength)
	}
}

// The client allocates nothing per request: measured against a server
// that allocates nothing either (it answers each request with the same
// bytes), since AllocsPerRun counts the whole process.
func TestGetAllocatesNothing(t *testing.T) {
	client, server := net.Pipe()
	answer := []byte("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
	go func() {
		r := bufio.NewReader(server)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if bytes.Equal(line, []byte("\r\n")) {
				if _, err := server.Write(answer); err != nil {
					return
				}
			}
		}
	}()
	c := New(client, "x", "/")
	defer c.Close()
	if status, _, err := c.Get(); err != nil || status != 204 {
		t.Fatalf("Get: %d %v", status, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { c.Get() }); allocs != 0 {
		t.Errorf("%.0f allocations per request", allocs)
	}
}
