package secure

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// HTTP/2 frame header fields (RFC 9113, section 4.1): a 9-byte header of
// which byte 3 is the type and byte 4 the flags.
const (
	frameHeaderLen = 9
	frameHeaders   = 0x1
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
)

// holdFor bounds how long HEADERS wait for their DATA: far longer than the
// static server takes to hand over a body it holds in memory, short
// enough that a handler which streams (none here) is not noticeably
// delayed.
const holdFor = 2 * time.Millisecond

// h2Conn is the decrypted stream of a TLS connection that agreed on h2,
// handed to net/http's HTTP/2 server. That server flushes each frame it
// writes on its own when nothing else is queued, so an answer's HEADERS
// and its DATA would leave in two TLS records and two write calls, the
// HEADERS while the handler is still handing over its body; measured, the
// writes were a quarter of the server's CPU time. h2Conn holds a write
// that ends with a HEADERS frame of a stream that has a body to come (no
// END_STREAM) until the next write, at most holdFor, and sends both
// together: one record, one system call. Anything else is written at
// once, so nothing that waits on the peer (a frame stuck on flow control)
// is ever held.
//
// It has no ConnectionState method on purpose: net/http would then take
// it for TLS and not serve it as HTTP/2 with prior knowledge.
type h2Conn struct {
	tc net.Conn // the *tls.Conn

	mu    sync.Mutex
	held  []byte
	timer *time.Timer
	err   error // from a write the timer made

	// Where the writes are in the stream of frames, which need not be cut
	// at frame boundaries: the header read so far, and the payload bytes
	// still to come of the current frame.
	hdr  [frameHeaderLen]byte
	hdrN int
	left int
}

func newH2Conn(tc *tls.Conn) *h2Conn { return &h2Conn{tc: tc} }

// scan follows p through the frames, and says whether it ends exactly
// after a complete HEADERS frame (with END_HEADERS) without END_STREAM.
func (c *h2Conn) scan(p []byte) bool {
	for len(p) > 0 {
		if c.left > 0 {
			n := min(c.left, len(p))
			c.left -= n
			p = p[n:]
			continue
		}
		n := copy(c.hdr[c.hdrN:], p)
		c.hdrN += n
		p = p[n:]
		if c.hdrN == frameHeaderLen {
			c.left = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
			c.hdrN = 0
		}
	}
	return c.left == 0 && c.hdrN == 0 &&
		c.hdr[3] == frameHeaders && c.hdr[4]&flagEndHeaders != 0 && c.hdr[4]&flagEndStream == 0
}

func (c *h2Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.scan(p) {
		c.held = append(c.held, p...)
		if c.timer == nil {
			c.timer = time.AfterFunc(holdFor, c.flushHeld)
		} else {
			c.timer.Reset(holdFor)
		}
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.tc.Write(p)
	}
	c.timer.Stop()
	c.held = append(c.held, p...)
	_, err := c.tc.Write(c.held)
	c.held = c.held[:0]
	return len(p), err
}

// flushHeld sends what waited holdFor in vain.
func (c *h2Conn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		return
	}
	_, c.err = c.tc.Write(c.held)
	c.held = c.held[:0]
}

func (c *h2Conn) Read(p []byte) (int, error) { return c.tc.Read(p) }

func (c *h2Conn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if len(c.held) > 0 {
		c.tc.Write(c.held)
		c.held = nil
	}
	c.mu.Unlock()
	return c.tc.Close()
}

func (c *h2Conn) LocalAddr() net.Addr                { return c.tc.LocalAddr() }
func (c *h2Conn) RemoteAddr() net.Addr               { return c.tc.RemoteAddr() }
func (c *h2Conn) SetDeadline(t time.Time) error      { return c.tc.SetDeadline(t) }
func (c *h2Conn) SetReadDeadline(t time.Time) error  { return c.tc.SetReadDeadline(t) }
func (c *h2Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }
