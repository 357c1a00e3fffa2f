package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// dialSmallBuffer connects with a tiny kernel receive buffer, so a client
// that stops reading stalls the server's writes quickly.
func dialSmallBuffer(t testing.TB, ts *testSink) *websocket.Conn {
	t.Helper()
	// Before connect, so the window advertised in the handshake is small
	// too; set afterwards, the kernel may still accept a large window's
	// worth of data.
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	tr := &http.Transport{DialContext: d.DialContext}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url(), &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// One client that never reads and 100 that do: the 100 get every tick in
// order with bounded latency, the stalled one is conflated and then
// disconnected with a reason, and WriteBatch stays prompt throughout.
func TestSlowConsumerIsolation(t *testing.T) {
	const (
		normal = 100
		pairs  = 20
		ticks  = 300 // one every 20 ms: 6 s of feed
		// Generous, since a reading client's goroutine can go unscheduled
		// for a second on a loaded 2-core machine under -race and would
		// then be cut as slow; but well inside the feed, because the lag
		// is judged as ticks arrive: the stalled client is cut only while
		// the feed still runs.
		maxLag = 2 * time.Second
	)
	ts := startSink(t, func(c *Config) {
		// Conflate past 16 KiB, about 50 ticks (1 s of this feed): a
		// reading client's goroutine left unscheduled for half a second
		// under -race on a loaded box got conflated at 8 KiB; the stalled
		// one still conflates well before max_lag cuts it.
		c.Limits.QueueBytes = 32 << 10
		c.Limits.MaxLag = maxLag
		c.PingInterval = time.Hour // this test is about lag, not liveness
	}, func(_ *sinks.Env, s *Sink) {
		if s != nil {
			s.tcpWriteBuffer = 4096
		}
	})

	slow := dialSmallBuffer(t, ts)
	subscribe(t, slow, `{"type":"subscribe","channels":["tick"]}`)
	clients := make([]*websocket.Conn, normal)
	for i := range clients {
		clients[i] = dial(t, ts, "")
		subscribe(t, clients[i], `{"type":"subscribe","channels":["tick"]}`)
	}

	results := make([]received, normal)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = receiveAll(c, ticks)
		}()
	}

	var slowest time.Duration
	for seq := int64(1); seq <= ticks; seq++ {
		tk := mkTick("sim", fmt.Sprintf("P%02dUSDT", seq%pairs), fmt.Sprint(seq), seq)
		start := time.Now()
		if err := ts.WriteBatch(t.Context(), []tick.Tick{tk}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		time.Sleep(20 * time.Millisecond) // paces the feed (load shape), not a synchronisation
	}
	wg.Wait()

	var all []time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		all = append(all, r.latency...)
	}
	slices.Sort(all)
	p50, p99, worst := all[len(all)/2], all[len(all)*99/100], all[len(all)-1]
	t.Logf("%d normal clients got all %d ticks in order; latency p50 %s p99 %s max %s; slowest WriteBatch %s",
		normal, ticks, p50, p99, worst, slowest)
	// Latency is the benchmark's business (BenchmarkPush*); what this test
	// asserts is isolation: every normal client got every tick in order
	// and none was cut, and WriteBatch never waited for the stalled client,
	// which it would have done until max_lag cut that client.
	if slowest > maxLag/2 {
		t.Errorf("WriteBatch took %s with a stalled client connected: it waited for it", slowest)
	}

	testkit.Eventually(t, 4*maxLag, "the stalled client to be disconnected", func() bool {
		return counter(ts, "tickflow_push_disconnects_total", "reason", "slow_consumer") == 1
	})
	if got := counter(ts, "tickflow_push_conflated_ticks_total"); got == 0 {
		t.Error("the stalled client was disconnected without being conflated first")
	}
	// Reading now drains the stale backlog and ends with the reason.
	ce, last := expectClose(t, slow)
	if ce.Code != websocket.StatusPolicyViolation || !strings.HasPrefix(ce.Reason, "too slow") {
		t.Errorf("close = %d %q, want 1008 \"too slow...\"", ce.Code, ce.Reason)
	}
	if last.Code != codeSlowConsumer {
		t.Errorf("last error frame = %+v, want %s", last, codeSlowConsumer)
	}
	testkit.Eventually(t, 5*time.Second, "the stalled client's handler to finish", func() bool {
		return counter(ts, "tickflow_push_connections") == normal
	})
}

type received struct {
	err     error
	latency []time.Duration
}

// receiveAll reads n ticks and checks each pair's ticks arrive in order
// without gaps (ticks carry a global sequence as their timestamp).
func receiveAll(c *websocket.Conn, n int) (r received) {
	last := map[string]int64{}
	var prev int64
	for got := 0; got < n; {
		f, err := tryRead(c, 20*time.Second)
		if err != nil {
			r.err = fmt.Errorf("after %d ticks: %w", got, err)
			return r
		}
		if f.Type != "tick" {
			r.err = fmt.Errorf("unexpected %+v", f)
			return r
		}
		var tk tick.Tick
		if err := tick.Unmarshal(f.Data, &tk); err != nil {
			r.err = err
			return r
		}
		r.latency = append(r.latency, time.Since(time.UnixMicro(tk.ReceivedAt)))
		if p, ok := last[tk.Symbol]; ok && tk.Timestamp <= p {
			r.err = fmt.Errorf("%s: tick %d after %d", tk.Symbol, tk.Timestamp, p)
			return r
		}
		last[tk.Symbol] = tk.Timestamp
		prev = max(prev, tk.Timestamp)
		got++
	}
	if prev != int64(n) {
		r.err = fmt.Errorf("newest tick %d, want %d", prev, n)
	}
	return r
}
