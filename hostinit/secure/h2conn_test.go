package secure

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// frame is an HTTP/2 frame header and payload.
func frame(typ, flags byte, payload int) []byte {
	f := []byte{byte(payload >> 16), byte(payload >> 8), byte(payload), typ, flags, 0, 0, 0, 1}
	return append(f, bytes.Repeat([]byte{'x'}, payload)...)
}

// pipeConn is an h2Conn over a pipe instead of TLS, whose writes arrive,
// one read per write, at the returned channel.
func pipeConn(t *testing.T) (*h2Conn, <-chan []byte) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	writes := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			writes <- bytes.Clone(buf[:n])
		}
	}()
	return &h2Conn{tc: a}, writes
}

// TestH2ConnHoldsHeadersForTheirData: a write ending with HEADERS of a
// stream whose DATA is to come waits for the next write and leaves with
// it; HEADERS that end their stream, and every other frame, leave at
// once; a frame cut across writes is followed; what waits in vain leaves
// after holdFor.
func TestH2ConnHoldsHeadersForTheirData(t *testing.T) {
	c, writes := pipeConn(t)
	none := func(what string) {
		t.Helper()
		select {
		case w := <-writes:
			t.Fatalf("%s: %d bytes written, want them held", what, len(w))
		case <-time.After(holdFor / 4):
		}
	}
	one := func(what string, want []byte) {
		t.Helper()
		select {
		case w := <-writes:
			if !bytes.Equal(w, want) {
				t.Fatalf("%s: wrote %d bytes, want %d", what, len(w), len(want))
			}
		case <-time.After(time.Second):
			t.Fatalf("%s: nothing written", what)
		}
	}
	settings := frame(0x4, 0, 6)
	c.Write(settings)
	one("SETTINGS", settings)

	headers, data := frame(frameHeaders, flagEndHeaders, 40), frame(0x0, flagEndStream, 100)
	c.Write(headers)
	none("HEADERS without END_STREAM")
	c.Write(data)
	one("HEADERS and their DATA", append(bytes.Clone(headers), data...))

	ended := frame(frameHeaders, flagEndHeaders|flagEndStream, 40) // a 304, a HEAD
	c.Write(ended)
	one("HEADERS with END_STREAM", ended)

	// The same HEADERS cut in three writes, the header itself split.
	c.Write(headers[:4])
	one("a partial frame", headers[:4])
	c.Write(headers[4:20])
	one("a partial frame", headers[4:20])
	c.Write(headers[20:])
	none("the end of HEADERS without END_STREAM")
	one("HEADERS whose DATA does not come, after holdFor", headers[20:])
}
