package secure

import (
	"net"
	"sync"
)

// limit is one cap on the connections of several listeners: a slot is
// taken when a connection is accepted and given back when it is closed.
// While every slot is taken, each listener holds the one connection it
// accepted last, unserved, until a slot frees, and the others wait in the
// kernel's accept queue. A connection is accepted before its slot is
// taken so that an idle listener holds no slot: a freed slot goes to a
// connection that is waiting, on whichever listener.
// (netutil.LimitListener caps one listener.)
type limit chan struct{}

// newLimit is a cap of n connections; 0 or less is no cap.
func newLimit(n int) limit {
	if n <= 0 {
		return nil
	}
	return make(limit, n)
}

func (l limit) listener(ln net.Listener) net.Listener {
	if l == nil {
		return ln
	}
	return &limitedListener{Listener: ln, slots: l, done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots     limit
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
		return &limitedConn{Conn: c, slots: l.slots}, nil
	case <-l.done:
		c.Close()
		return nil, net.ErrClosed
	}
}

func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitedConn struct {
	net.Conn
	slots       limit
	releaseOnce sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(func() { <-c.slots })
	return err
}
