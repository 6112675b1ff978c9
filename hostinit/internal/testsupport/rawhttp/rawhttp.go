// Package rawhttp is an HTTP/1.1 keep-alive client for the servers'
// benchmarks that allocates nothing per request, so that a benchmark
// running client and server in one process reports the server's
// allocations per request alone. It reads only what those benchmarks
// need: the status and a body framed by Content-Length.
package rawhttp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Conn sends one fixed request, again and again, on one connection.
type Conn struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
}

// New prepares GET path for host on conn; header is name, value pairs.
func New(conn net.Conn, host, path string, header ...string) *Conn {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", header[i], header[i+1])
	}
	b.WriteString("\r\n")
	return &Conn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), req: []byte(b.String())}
}

var errNoLength = errors.New("rawhttp: a response without Content-Length")

// Get sends the request and reads the answer, returning its status and
// body length.
func (c *Conn) Get() (status, length int, err error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, 0, err
	}
	length = -1
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			// HTTP/1.1 200 OK
			if len(line) < 12 {
				return 0, 0, fmt.Errorf("rawhttp: status line %q", line)
			}
			status = digits(line[9:12])
			continue
		}
		if len(line) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte{':'}); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length = digits(bytes.TrimSpace(v))
		}
	}
	if length < 0 {
		return status, 0, errNoLength
	}
	if _, err := c.r.Discard(length); err != nil {
		return status, 0, fmt.Errorf("rawhttp: reading a %d-byte body: %w", length, err)
	}
	return status, length, nil
}

func digits(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = 10*n + int(c-'0')
	}
	return n
}

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }
