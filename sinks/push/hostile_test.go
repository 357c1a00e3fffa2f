package push

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"
)

// Each hostile client gets its documented error and close (or stays open
// when the error is a plain mistake), while a bystander keeps receiving
// every tick.
func TestHostileInput(t *testing.T) {
	ts := startSink(t, func(c *Config) {
		c.Limits.MaxMessageBytes = 1024
		c.Limits.MaxSubscriptions = 50
		c.Limits.MaxMessagesPerSecond = 5
		c.Limits.MessageBurst = 10
	})
	bystander := dial(t, ts, "")
	subscribe(t, bystander, `{"type":"subscribe","channels":["tick"]}`)
	seq := int64(0)
	bystanderStillServed := func(name string) {
		t.Helper()
		seq++
		write(t, ts.Sink, mkTick("sim", "BTCUSDT", fmt.Sprint(seq), seq))
		f := read(t, bystander)
		if f.Type != "tick" || f.tick(t).Timestamp != seq {
			t.Fatalf("after %s the bystander got %+v, want tick %d", name, f, seq)
		}
	}

	tests := []struct {
		name  string
		abuse func(t *testing.T, c *websocket.Conn)
		// wantCode is the error frame; wantClose the close status, 0 when
		// the connection must stay open.
		wantCode  string
		wantClose websocket.StatusCode
	}{
		{
			name: "oversized frame",
			abuse: func(t *testing.T, c *websocket.Conn) {
				send(t, c, `{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`)
			},
			wantCode:  codeTooBig,
			wantClose: websocket.StatusMessageTooBig,
		},
		{
			name:      "huge frame",
			abuse:     func(t *testing.T, c *websocket.Conn) { writeBig(t, c, 8<<20) },
			wantCode:  codeTooBig,
			wantClose: websocket.StatusMessageTooBig,
		},
		{
			name: "binary frame",
			abuse: func(t *testing.T, c *websocket.Conn) {
				if err := c.Write(t.Context(), websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
					t.Fatal(err)
				}
			},
			wantCode:  codeBinary,
			wantClose: websocket.StatusUnsupportedData,
		},
		{
			name:     "invalid JSON",
			abuse:    func(t *testing.T, c *websocket.Conn) { send(t, c, "\x00\xff not json") },
			wantCode: codeBadJSON,
		},
		{
			name: "subscription flood in one message",
			abuse: func(t *testing.T, c *websocket.Conn) {
				syms := make([]string, 100)
				for i := range syms {
					syms[i] = fmt.Sprintf(`"S%d"`, i)
				}
				send(t, c, `{"type":"subscribe","symbols":[`+strings.Join(syms, ",")+`]}`)
			},
			wantCode: codeTooManySubs,
		},
		{
			name: "subscription flood over messages",
			abuse: func(t *testing.T, c *websocket.Conn) {
				// 3 channels x 15 symbols = 45 subscriptions fit, 6 more do not.
				for i := range 3 {
					subscribe(t, c, fmt.Sprintf(`{"type":"subscribe","symbols":["A%d","B%d","C%d","D%d","E%d"]}`, i, i, i, i, i))
				}
				send(t, c, `{"type":"subscribe","symbols":["ONE","MORE"]}`)
			},
			wantCode: codeTooManySubs,
		},
		{
			name: "message-rate flood",
			abuse: func(t *testing.T, c *websocket.Conn) {
				for range 50 {
					if err := c.Write(t.Context(), websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
						return // the server may already have closed
					}
				}
			},
			wantCode:  codeRateLimited,
			wantClose: websocket.StatusPolicyViolation,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts, "")
			tt.abuse(t, c)
			if tt.wantClose == 0 {
				f := read(t, c)
				if f.Type != "error" || f.Code != tt.wantCode {
					t.Fatalf("got %+v, want error %s", f, tt.wantCode)
				}
				send(t, c, `{"type":"ping"}`)
				if f := read(t, c); f.Type != "pong" {
					t.Fatalf("connection not usable after the error: %+v", f)
				}
			} else {
				ce, last := expectClose(t, c)
				if ce.Code != tt.wantClose || last.Code != tt.wantCode {
					t.Fatalf("got close %d %q after error %+v, want close %d after error %s",
						ce.Code, ce.Reason, last, tt.wantClose, tt.wantCode)
				}
			}
			bystanderStillServed(tt.name)
		})
	}
}

// writeBig streams one text message of n bytes, frame by frame, stopping
// when the server closes.
func writeBig(t *testing.T, c *websocket.Conn, n int) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 64<<10))
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
	_ = w.Close()
}

func TestConnectionFlood(t *testing.T) {
	const limit = 20
	ts := startSink(t, func(c *Config) { c.Limits.MaxConnections = limit })
	conns := make([]*websocket.Conn, limit)
	for i := range conns {
		conns[i] = dial(t, ts, "")
		send(t, conns[i], `{"type":"ping"}`)
		read(t, conns[i])
	}
	// Beyond the limit: accepted, told why, closed with 1013.
	for range 5 {
		c := dial(t, ts, "")
		ce, last := expectClose(t, c)
		if ce.Code != websocket.StatusTryAgainLater || last.Code != codeTooManyConns {
			t.Fatalf("over the limit: close %d %q after %+v, want 1013 after %s", ce.Code, ce.Reason, last, codeTooManyConns)
		}
	}
	// The admitted ones are undisturbed.
	for i, c := range conns {
		send(t, c, `{"type":"ping"}`)
		if f := read(t, c); f.Type != "pong" {
			t.Fatalf("conn %d: %+v", i, f)
		}
	}
	if got := counter(ts, "tickflow_push_connections_total", "result", "limit_rejected"); got != 5 {
		t.Errorf("limit_rejected = %v, want 5", got)
	}
	// A slot freed is a slot available again.
	_ = conns[0].Close(websocket.StatusNormalClosure, "bye")
	testkit.Eventually(t, 5*time.Second, "the slot to free", func() bool { return counter(ts, "tickflow_push_connections") == limit-1 })
	c := dial(t, ts, "")
	send(t, c, `{"type":"ping"}`)
	if f := read(t, c); f.Type != "pong" {
		t.Fatalf("after a slot freed: %+v", f)
	}
}
