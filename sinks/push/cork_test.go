package push

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// countConn records the writes that reach the socket.
type countConn struct {
	net.Conn
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestCork(t *testing.T) {
	under := &countConn{}
	c := &corkConn{Conn: under}
	_, _ = c.Write([]byte("a"))
	c.cork()
	for _, s := range []string{"b", "c", "d"} {
		_, _ = c.Write([]byte(s))
	}
	if len(under.writes) != 1 {
		t.Fatalf("corked writes reached the socket: %q", under.writes)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("e"))
	want := []string{"a", "bcd", "e"}
	var got []string
	for _, w := range under.writes {
		got = append(got, string(w))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("socket writes = %q, want %q", got, want)
	}
	if c.buf != nil {
		t.Error("an uncorked connection kept its buffer")
	}
	// A batch larger than corkMax goes out in corkMax-sized writes.
	under.writes = nil
	c.cork()
	chunk := bytes.Repeat([]byte("x"), 1000)
	for range 40 {
		_, _ = c.Write(chunk)
	}
	_ = c.uncork()
	total := 0
	for _, w := range under.writes {
		total += len(w)
		if len(w) > corkMax+len(chunk) {
			t.Errorf("a write of %d bytes, past the cork bound", len(w))
		}
	}
	if total != 40000 || len(under.writes) < 2 {
		t.Errorf("%d bytes in %d writes, want 40000 in at least 2", total, len(under.writes))
	}
}
