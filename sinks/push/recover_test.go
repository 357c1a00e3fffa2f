package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// recoveryBroker is an embedded broker over TCP with the tick topic, a
// producer and an admin client.
type recoveryBroker struct {
	cc   bus.ClientConfig
	prod *bus.Producer
	adm  *kadm.Client
}

func startRecoveryBroker(t *testing.T, partitions int32) *recoveryBroker {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs(), ClientID: "push-recovery-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureTopic(ctx, cc, testTopic, partitions, -1); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: testTopic, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prod.Close(context.Background())
		cl.Close()
	})
	return &recoveryBroker{cc: cc, prod: prod, adm: kadm.NewClient(cl)}
}

// startPush runs one push process: the sink, its listener and its runtime
// in the instance's own group, reading the broker's log for recoveries.
// stop ends it as a shutdown does (final commit, then the listener).
func (b *recoveryBroker) startPush(t *testing.T, group string, mutate func(*Config)) (ts *testSink, stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.PingInterval = time.Hour
	if mutate != nil {
		mutate(cfg)
	}
	reg := prometheus.NewRegistry()
	s, err := New(sinks.Env{Name: "push", Metrics: reg, Follower: bus.Follower{Client: b.cc}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Run(sctx) }()
	spec, _ := sinks.Lookup("push")
	rt, err := bus.NewRuntime(bus.RuntimeConfig{
		Client: b.cc, Topic: testTopic, Group: group, Name: "push", Sink: s, Batch: spec.Batch,
		CommitInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() { consumed <- rt.Run(rctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			rcancel()
			if err := <-consumed; err != nil {
				t.Errorf("runtime: %v", err)
			}
			scancel()
			if err := <-served; err != nil {
				t.Errorf("push Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	testkit.Eventually(t, 10*time.Second, "push serving with its partitions assigned", func() bool {
		return s.Ready(context.Background()) == nil && s.epoch() != ""
	})
	return &testSink{Sink: s, reg: reg}, stop
}

func (b *recoveryBroker) produce(t *testing.T, ticks []tick.Tick) {
	t.Helper()
	produceTicks(t, b.prod, ticks...)
}

// resumer is a client that keeps its position the way protocol.go says
// and records what it received, checking each partition's offsets only
// ever go up (no duplicate, no reordering).
type resumer struct {
	epoch string
	pos   map[string]int64
	last  map[int32]int64
	got   map[string][]int64 // pair → event times received, in order
	n     int
	// skipped is what conflated frames reported: ticks replaced by a
	// newer one of their pair while this client was behind.
	skipped int
}

func newResumer() *resumer {
	return &resumer{pos: map[string]int64{}, last: map[int32]int64{}, got: map[string][]int64{}}
}

func (r *resumer) subscribeMsg() string {
	if r.epoch == "" {
		return `{"type":"subscribe","channels":["tick"]}`
	}
	b, _ := json.Marshal(position{Epoch: r.epoch, Offsets: r.pos})
	return `{"type":"subscribe","channels":["tick"],"since":` + string(b) + `}`
}

func (r *resumer) apply(p *position) {
	if p == nil {
		return
	}
	r.epoch = p.Epoch
	for k, o := range p.Offsets {
		if old, ok := r.pos[k]; !ok || o > old {
			r.pos[k] = o
		}
	}
}

// absorb takes one frame; ticks must carry a position.
func (r *resumer) absorb(t *testing.T, f frame) {
	t.Helper()
	switch f.Type {
	case "subscribed", "position":
		r.apply(f.Position)
	case "conflated":
		r.skipped += int(f.Skipped)
	case "tick":
		if f.Part == nil {
			t.Fatalf("tick without a position: %s", f.Data)
		}
		p := *f.Part
		if last, ok := r.last[p]; ok && f.Off <= last {
			t.Fatalf("partition %d: offset %d after %d (duplicate or out of order)", p, f.Off, last)
		}
		r.last[p] = f.Off
		k := fmt.Sprint(p)
		r.pos[k] = max(r.pos[k], f.Off)
		tk := f.tick(t)
		r.got[tk.Key()] = append(r.got[tk.Key()], tk.Timestamp)
		r.n++
	default:
		t.Fatalf("unexpected frame %+v", f)
	}
}

// readTicks reads until the client has received (or been told it
// skipped) n ticks in all.
func (r *resumer) readTicks(t *testing.T, c *websocket.Conn, n int) {
	t.Helper()
	for r.n+r.skipped < n {
		f, err := tryRead(c, 20*time.Second)
		if err != nil {
			t.Fatalf("after %d of %d ticks: %v", r.n, n, err)
		}
		r.absorb(t, f)
	}
}

// connect dials, subscribes (resuming when it has a position) and returns
// the reply.
func (r *resumer) connect(t *testing.T, ts *testSink) (*websocket.Conn, frame) {
	t.Helper()
	c := dial(t, ts, "")
	send(t, c, r.subscribeMsg())
	f := read(t, c)
	if f.Type != "subscribed" {
		t.Fatalf("got %+v, want subscribed", f)
	}
	r.absorb(t, f)
	return c, f
}

// burst is rounds ticks of each of pairs, event times from first on.
func burst(pairs []string, first, rounds int64) []tick.Tick {
	var out []tick.Tick
	for i := first; i < first+rounds; i++ {
		for _, p := range pairs {
			ex, sym, _ := strings.Cut(p, ":")
			out = append(out, mkTick(ex, sym, fmt.Sprint(i), i))
		}
	}
	return out
}

func byPair(ticks []tick.Tick) map[string][]int64 {
	out := map[string][]int64{}
	for _, t := range ticks {
		out[t.Key()] = append(out[t.Key()], t.Timestamp)
	}
	return out
}

var recoveryPairs = []string{"binance:BTCUSDT", "binance:ETHUSDT", "okx:BTCUSDT", "okx:SOLUSDT", "kraken:XBTUSD", "sim:AAA"}

// A client cut mid-stream (its TCP connection closed while ticks are in
// flight), with ticks produced while it is away and push itself restarted
// meanwhile, resumes from its position and ends up with exactly what was
// produced: every tick of every pair once, in order, the missed ones
// before the live ones.
//
// The restarted push either resumes from its group's commit, or (a new
// instance id) replays the whole log through its hub while the client
// recovers from the broker: the client must get neither twice.
func TestRecoveryAfterCutAndRestart(t *testing.T) {
	for _, tt := range []struct {
		name, group2 string
		down         int64 // rounds produced while push is down
		queueBytes   int   // the restarted push's limits.queue_bytes
	}{
		{"restart resumes from its commit", "tickflow.push.a", 100, 1 << 20},
		{"restart replays the whole log", "tickflow.push.b", 100, 1 << 20},
		// The client resumes while the new hub is still replaying a
		// backlog far larger than its queue: the replayed ticks the
		// recovery covers must not pile up behind it.
		{"restart replays a big log, small queue", "tickflow.push.c", 3000, 64 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) { testRecoveryAfterCutAndRestart(t, tt.group2, tt.down, tt.queueBytes) })
	}
}

func testRecoveryAfterCutAndRestart(t *testing.T, group2 string, down int64, queueBytes int) {
	b := startRecoveryBroker(t, 4)
	ts, stop := b.startPush(t, "tickflow.push.a", nil)
	r := newResumer()
	c, reply := r.connect(t, ts)
	if reply.Position == nil || len(reply.Position.Offsets) != 4 {
		t.Fatalf("subscribed reply position = %+v, want an epoch and 4 partitions", reply.Position)
	}

	var produced []tick.Tick
	first := burst(recoveryPairs, 1, 200)
	produced = append(produced, first...)
	b.produce(t, first)
	// Read part of it, then cut the connection with the rest in flight.
	r.readTicks(t, c, len(first)/3)
	_ = c.CloseNow()
	received := r.n

	// Meanwhile: more ticks, push restarts, more ticks.
	second := burst(recoveryPairs, 201, 100)
	produced = append(produced, second...)
	b.produce(t, second)
	testkit.Eventually(t, 10*time.Second, "the first push to hand on every tick", func() bool {
		return counter(ts, "tickflow_push_ticks_total") == float64(len(first)+len(second))
	})
	stop()
	third := burst(recoveryPairs, 301, down)
	produced = append(produced, third...)
	b.produce(t, third)
	ts2, _ := b.startPush(t, group2, func(c *Config) {
		c.Limits.QueueBytes = queueBytes
		c.Limits.MaxRecoveryBytes = 16 << 20
	})

	start := time.Now()
	c2, reply := r.connect(t, ts2)
	t.Logf("resume: reply after %s", time.Since(start).Round(time.Millisecond))
	if reply.Recovered == nil || !*reply.Recovered || reply.Recovery == nil {
		t.Fatalf("resume reply = %+v, want recovered:true", reply)
	}
	missed := len(first) + len(second) + len(third) - received
	if reply.Recovery.Ticks != missed {
		t.Errorf("recovery.ticks = %d, want the %d ticks not read before the cut", reply.Recovery.Ticks, missed)
	}
	// Live ticks after the resume follow the missed ones.
	fourth := burst(recoveryPairs, 301+down, 50)
	produced = append(produced, fourth...)
	b.produce(t, fourth)
	r.readTicks(t, c2, len(produced))
	t.Logf("resume: %d missed ticks replayed, every produced tick received %s after the resubscribe", missed, time.Since(start).Round(time.Millisecond))
	if f, err := tryRead(c2, 300*time.Millisecond); err == nil {
		t.Fatalf("after every produced tick, got %+v", f)
	}
	want := byPair(produced)
	for _, p := range recoveryPairs {
		if r.skipped == 0 && fmt.Sprint(r.got[p]) != fmt.Sprint(want[p]) {
			t.Errorf("%s: received %d ticks %v\nproduced %d %v", p, len(r.got[p]), r.got[p], len(want[p]), want[p])
		}
		if !subsequence(r.got[p], want[p]) {
			t.Errorf("%s: received %v, not in the order produced %v", p, r.got[p], want[p])
		}
	}
	if r.n+r.skipped != len(produced) {
		t.Errorf("received %d + skipped %d, want the %d produced", r.n, r.skipped, len(produced))
	}
	if r.skipped > 0 {
		t.Logf("the client fell behind after the replay: %d live ticks conflated, reported", r.skipped)
	}
	if n := counter(ts2, "tickflow_push_recoveries_total", "result", "recovered"); n != 1 {
		t.Errorf("recoveries{recovered} = %v, want 1", n)
	}
	if n := counter(ts2, "tickflow_push_recovered_ticks_total"); n != float64(missed) {
		t.Errorf("recovered ticks = %v, want %d", n, missed)
	}
}

// A position the broker can no longer serve, or one the server will not
// serve, gets recovered:false with the reason (and what is lost), then the
// snapshot and the live feed: never a silent gap.
func TestRecoveryRefused(t *testing.T) {
	b := startRecoveryBroker(t, 2)
	ts, _ := b.startPush(t, "tickflow.push.refused", func(c *Config) { c.Limits.MaxRecoveryRecords = 500 })
	r := newResumer()
	c, _ := r.connect(t, ts)
	early := burst(recoveryPairs[:2], 1, 20)
	b.produce(t, early)
	r.readTicks(t, c, len(early))
	_ = c.CloseNow()
	pos := r.pos

	tests := []struct {
		name    string
		prepare func(t *testing.T) string // the since to send
		label   string
		lost    bool
	}{
		{
			name: "too large a gap",
			prepare: func(t *testing.T) string {
				more := burst(recoveryPairs[:2], 21, 300)
				b.produce(t, more)
				// Handed on before the client comes back: what it reads
				// next is the refusal's snapshot, then the live tick below.
				testkit.Eventually(t, 10*time.Second, "push to hand on every tick", func() bool {
					return counter(ts, "tickflow_push_ticks_total") == float64(len(early)+len(more))
				})
				if err := ts.hub.flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				return mustJSON(position{Epoch: r.epoch, Offsets: pos})
			},
			label: "too_large",
		},
		{
			name: "another epoch",
			prepare: func(*testing.T) string {
				return mustJSON(position{Epoch: "00000000000000000000000000000000", Offsets: pos})
			},
			label: "epoch",
		},
		{
			name: "a partition missing",
			prepare: func(*testing.T) string {
				return mustJSON(position{Epoch: r.epoch, Offsets: map[string]int64{"0": pos["0"]}})
			},
			label: "no_position",
		},
		{
			name: "trimmed by retention",
			prepare: func(t *testing.T) string {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ends, err := b.adm.ListEndOffsets(ctx, testTopic)
				if err != nil {
					t.Fatal(err)
				}
				// Delete everything but the last record of each partition.
				to := kadm.Offsets{}
				ends.Each(func(o kadm.ListedOffset) { to.AddOffset(testTopic, o.Partition, o.Offset-1, -1) })
				resp, err := b.adm.DeleteRecords(ctx, to)
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					t.Fatal(err)
				}
				return mustJSON(position{Epoch: r.epoch, Offsets: pos})
			},
			label: "trimmed",
			lost:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter(ts, "tickflow_push_recoveries_total", "result", tt.label)
			since := tt.prepare(t)
			c := dial(t, ts, "")
			send(t, c, `{"type":"subscribe","channels":["tick"],"since":`+since+`}`)
			f := read(t, c)
			if f.Type != "subscribed" || f.Recovered == nil || *f.Recovered || f.Recovery == nil {
				t.Fatalf("got %+v, want subscribed with recovered:false", f)
			}
			if !strings.HasPrefix(f.Recovery.Reason, tt.label+":") {
				t.Errorf("reason = %q, want %s: ...", f.Recovery.Reason, tt.label)
			}
			if tt.lost != (len(f.Recovery.Lost) > 0) {
				t.Errorf("lost = %+v, want lost ranges: %v", f.Recovery.Lost, tt.lost)
			}
			for _, l := range f.Recovery.Lost {
				if from := pos[fmt.Sprint(l.Partition)] + 1; l.From != from || l.To < l.From {
					t.Errorf("lost %+v: want from %d (after the position)", l, from)
				}
			}
			if f.Position == nil || f.Snapshot < 2 {
				t.Errorf("position %+v, snapshot %d: want a fresh position and the latest tick of every pair produced", f.Position, f.Snapshot)
			}
			for range f.Snapshot {
				if g := read(t, c); g.Type != "tick" {
					t.Fatalf("snapshot: %+v", g)
				}
			}
			if n := counter(ts, "tickflow_push_recoveries_total", "result", tt.label); n != before+1 {
				t.Errorf("recoveries{%s} = %v, want %v", tt.label, n, before+1)
			}
			// The live feed goes on.
			live := burst(recoveryPairs[2:3], 1000, 1)
			b.produce(t, live)
			g := read(t, c)
			if g.Type != "tick" {
				t.Fatalf("live after refusal: %+v", g)
			}
			if tk := g.tick(t); tk.Key() != recoveryPairs[2] {
				t.Fatalf("live after refusal: %s, want %s", tk.Key(), recoveryPairs[2])
			}
		})
	}
}

func TestRecoveryBadPosition(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	c := dial(t, ts, "")
	for _, since := range []string{`{"offsets":{"0":1}}`, `{"epoch":"x","offsets":{"a":1}}`, `{"epoch":"x","offsets":{"0":-2}}`} {
		send(t, c, `{"type":"subscribe","since":`+since+`}`)
		if f := read(t, c); f.Type != "error" || f.Code != codeBadPosition {
			t.Errorf("since %s: got %+v, want error %s", since, f, codeBadPosition)
		}
	}
	// Without a broker log there is nothing to resume from: said so.
	send(t, c, `{"type":"subscribe","since":{"epoch":"x","offsets":{}}}`)
	if f := read(t, c); f.Type != "subscribed" || f.Recovered == nil || *f.Recovered || !strings.HasPrefix(f.Recovery.Reason, "unavailable:") {
		t.Errorf("got %+v, want recovered:false, unavailable", f)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// blockingLog is a broker log whose Bounds waits for release, whatever
// its context says: a recovery stuck on a slow broker.
type blockingLog struct {
	entered, release chan struct{}
}

func (b *blockingLog) Bounds(context.Context, string) (string, map[int32]int64, map[int32]int64, error) {
	b.entered <- struct{}{}
	<-b.release
	return "E", map[int32]int64{0: 0}, map[int32]int64{0: 1}, nil
}

func (b *blockingLog) ReadRange(context.Context, string, map[int32]int64, map[int32]int64, func(int32, int64, []byte, []byte) error) error {
	return nil
}

// Recoveries are bounded: one stuck on the broker delays its own
// subscribe and nobody else's ticks; past recovery_concurrency a resuming
// client waits at most recovery_timeout and gets recovered:false (busy),
// counted, and the live feed.
func TestRecoveryBounded(t *testing.T) {
	bl := &blockingLog{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startSink(t, func(c *Config) {
		c.Limits.RecoveryConcurrency = 1
		c.Limits.RecoveryTimeout = 300 * time.Millisecond
	}, func(_ *sinks.Env, s *Sink) {
		if s != nil {
			s.logRd = bl
			s.Assigned(sinks.Assignment{Topic: testTopic, TopicID: "E", Next: map[int32]int64{0: 0}})
		}
	})
	since := `{"type":"subscribe","channels":["tick"],"since":{"epoch":"E","offsets":{"0":0}}}`
	stuck := dial(t, ts, "")
	send(t, stuck, since)
	<-bl.entered

	other := dial(t, ts, "")
	subscribe(t, other, `{"type":"subscribe","channels":["tick"]}`)
	live := mkTick("binance", "BTCUSDT", "1", 1)
	write(t, ts.Sink, live)
	if f := read(t, other); f.Type != "tick" {
		t.Fatalf("a client beside a stuck recovery got %+v, want the live tick", f)
	}

	busy := dial(t, ts, "")
	send(t, busy, since)
	f := read(t, busy)
	if f.Recovered == nil || *f.Recovered || !strings.HasPrefix(f.Recovery.Reason, "busy:") {
		t.Fatalf("past the concurrency limit: %+v, want recovered:false, busy", f)
	}
	if n := counter(ts, "tickflow_push_recoveries_total", "result", "busy"); n != 1 {
		t.Errorf("recoveries{busy} = %v, want 1", n)
	}
	for range f.Snapshot {
		if g := read(t, busy); g.Type != "tick" {
			t.Fatalf("snapshot after busy: %+v", g)
		}
	}

	close(bl.release)
	var got []string
	for range 2 {
		f := read(t, stuck)
		got = append(got, f.Type)
		if f.Type == "subscribed" && (f.Recovered == nil || !*f.Recovered) {
			t.Fatalf("the stuck recovery, released: %+v, want recovered:true", f)
		}
	}
	if fmt.Sprint(got) != "[subscribed position]" {
		t.Errorf("frames %v, want the reply, then the position", got)
	}
	write(t, ts.Sink, mkTick("binance", "BTCUSDT", "2", 2))
	for _, c := range []*websocket.Conn{stuck, busy} {
		if f := read(t, c); f.Type != "tick" || f.tick(t).Timestamp != 2 {
			t.Errorf("after the recoveries: %+v, want the live tick", f)
		}
	}
}

// subsequence reports whether got is want with some elements left out.
func subsequence(got, want []int64) bool {
	i := 0
	for _, w := range want {
		if i < len(got) && got[i] == w {
			i++
		}
	}
	return i == len(got)
}
