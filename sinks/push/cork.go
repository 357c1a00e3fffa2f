package push

import (
	"net"
	"sync"
)

// corkMax is how much a corked connection buffers before writing anyway.
const corkMax = 16 << 10

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, corkMax); return &b }}

// corkConn lets a connection's writer send a batch of frames in one write
// system call: coder/websocket flushes after every message, which at
// hundreds of thousands of messages a second makes the system calls, not
// the fan-out, the limit. While corked, writes (the writer's frames, and any
// ping or pong another goroutine writes meanwhile) collect in a pooled
// buffer; uncork sends them.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    *[]byte
}

type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = corkBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what collected and returns the buffer to the pool, so an
// idle connection holds none.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	err := c.flushLocked()
	if c.buf != nil {
		if cap(*c.buf) <= 2*corkMax {
			*c.buf = (*c.buf)[:0]
			corkBufs.Put(c.buf)
		}
		c.buf = nil
	}
	return err
}

func (c *corkConn) flushLocked() error {
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}
