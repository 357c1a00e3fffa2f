package risk_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/sim"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/push"
	"github.com/tickflow/tickflow/sinks/risk"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

const ticksTopic = "market_data.ticks"

// stack is tickflow's path for alerts and signals, wired as main wires it:
// an embedded broker, the tick topic and the two side topics, one producer
// (ticks in; alerts and signals out), the real push sink listening on
// loopback, and the risk and strategy sinks each under the bus runtime in
// its own consumer group.
type stack struct {
	emb  *bus.Embedded
	prod *bus.Producer
	ps   *push.Sink
	pcfg *push.Config
	preg *prometheus.Registry
	rs   *risk.Sink
	ss   *strategy.Sink
}

func startStack(t *testing.T, ctx context.Context, rcfg *risk.Config, strategies string) *stack {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs(), ClientID: "e2e"}
	for _, topic := range []string{ticksTopic, alert.Topic, signal.Topic} {
		if err := bus.EnsureTopic(ctx, cc, topic, 4, -1); err != nil {
			t.Fatal(err)
		}
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: ticksTopic, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{emb: emb, prod: prod}

	st.pcfg = push.DefaultConfig()
	st.pcfg.Listen = "127.0.0.1:0"
	st.preg = prometheus.NewRegistry()
	if st.ps, err = push.New(sinks.Env{Name: "push", Metrics: st.preg, Follower: bus.Follower{Client: cc}}, st.pcfg); err != nil {
		t.Fatal(err)
	}
	if err := st.ps.Listen(); err != nil {
		t.Fatal(err)
	}
	if st.rs, err = risk.New(sinks.Env{Name: "risk", Publisher: prod}, rcfg); err != nil {
		t.Fatal(err)
	}
	scfg := strategy.DefaultConfig()
	if err := yaml.Unmarshal([]byte(strategies), scfg); err != nil {
		t.Fatal(err)
	}
	if st.ss, err = strategy.New(sinks.Env{Name: "strategy", Publisher: prod}, scfg); err != nil {
		t.Fatal(err)
	}

	// Services first, then the runtimes, as main does; all stop before the
	// producer closes.
	runCtx, stop := context.WithCancel(context.Background())
	var done []chan error
	start := func(f func(context.Context) error) {
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- f(runCtx) }()
	}
	t.Cleanup(func() {
		stop()
		for _, ch := range done {
			if err := <-ch; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		_ = prod.Close(context.Background())
	})
	start(st.ps.Run)
	st.waitFollowing(t, ctx)
	start(st.rs.Run)
	start(st.ss.Run)
	for name, s := range map[string]sinks.Sink{"risk": st.rs, "strategy": st.ss} {
		spec, _ := sinks.Lookup(name)
		rt, err := bus.NewRuntime(bus.RuntimeConfig{
			Client: cc, Topic: ticksTopic, Group: "tickflow." + name, Name: name, Sink: s, Batch: spec.Batch,
			CommitInterval: 100 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		start(rt.Run)
	}
	return st
}

// waitFollowing returns once push follows the alert and signal topics.
// Following starts from the topics' ends, so an alert produced before push
// has listed them would never reach a browser (live fan-out, by design):
// the test puts a probe that is not JSON on each topic until push counts
// one as undecodable on both channels.
func (st *stack) waitFollowing(t *testing.T, ctx context.Context) {
	t.Helper()
	var last time.Time
	testkit.Eventually(t, 30*time.Second, "push following the alert and signal topics", func() bool {
		if testkit.Metric(st.preg, "tickflow_push_events_undecodable_total", "channel", "alert") > 0 &&
			testkit.Metric(st.preg, "tickflow_push_events_undecodable_total", "channel", "signal") > 0 {
			return true
		}
		if time.Since(last) > 100*time.Millisecond { // one probe per topic per poll period
			last = time.Now()
			for _, topic := range []string{alert.Topic, signal.Topic} {
				if err := st.prod.Publish(ctx, topic, []byte(probeKey), []byte(probeKey)); err != nil {
					t.Fatal(err)
				}
			}
		}
		return false
	})
}

// probeKey marks the probes waitFollowing publishes.
const probeKey = "probe"

// subscribe connects a WebSocket client of the push sink to the alert and
// signal channels.
func (st *stack) subscribe(t *testing.T, ctx context.Context) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+st.ps.Addr()+st.pcfg.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channels":["alert","signal"]}`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(ctx, t, ws); f.Type != "subscribed" {
		t.Fatalf("got %+v, want subscribed", f)
	}
	return ws
}

// consume reads the alert and signal topics from the start until it has
// at least the wanted number of each.
func (st *stack) consume(t *testing.T, ctx context.Context, wantAlerts, wantSignals int) ([]alert.Alert, []signal.Signal) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.emb.Addrs()...), kgo.ConsumeTopics(alert.Topic, signal.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var alerts []alert.Alert
	var sigs []signal.Signal
	for len(alerts) < wantAlerts || len(sigs) < wantSignals {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("waiting for records: %v (have %d alerts, %d signals)", err, len(alerts), len(sigs))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == probeKey {
				return
			}
			switch r.Topic {
			case alert.Topic:
				var a alert.Alert
				if err := json.Unmarshal(r.Value, &a); err != nil {
					t.Fatal(err)
				}
				if string(r.Key) != a.Key() {
					t.Errorf("alert record key %q, want %q", r.Key, a.Key())
				}
				alerts = append(alerts, a)
			case signal.Topic:
				var s signal.Signal
				if err := json.Unmarshal(r.Value, &s); err != nil {
					t.Fatal(err)
				}
				if string(r.Key) != s.Key() {
					t.Errorf("signal record key %q, want %q", r.Key, s.Key())
				}
				sigs = append(sigs, s)
			}
		})
	}
	return alerts, sigs
}

// pushed reads frames until it has seen an alert with alertID and a signal
// with signalID.
func pushed(t *testing.T, ctx context.Context, ws *websocket.Conn, alertID, signalID string) {
	t.Helper()
	seen := map[string]bool{}
	for !seen["alert/"+alertID] || !seen["signal/"+signalID] {
		f := readFrame(ctx, t, ws)
		var id struct {
			ID       string `json:"id"`
			Exchange string `json:"exchange"`
			Symbol   string `json:"symbol"`
		}
		if err := json.Unmarshal(f.Data, &id); err != nil {
			t.Fatalf("frame %+v: %v", f, err)
		}
		if f.Key != id.Exchange+":"+id.Symbol {
			t.Fatalf("frame key %q for %+v", f.Key, id)
		}
		seen[f.Type+"/"+id.ID] = true
	}
}

func (st *stack) rest(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(api.New(api.Options{Alerts: st.rs, Signals: st.ss, Push: st.ps}).Handler())
	t.Cleanup(srv.Close)
	return srv
}

// Ticks with a known path: exactly the expected alert and signal reach the
// topics, a push client and the REST API.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := startStack(t, ctx, risk.DefaultConfig(), `
strategies:
  - {name: btc-up, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "103", direction: up}
`)
	ws := st.subscribe(t, ctx)

	// +6 % in two seconds on BTCUSDT, crossing 103 on the way.
	base := time.Now().Add(-time.Minute).UnixMilli()
	for i, p := range []string{"100", "101", "102.5", "104", "106"} {
		tk := tick.Tick{Exchange: "binance", Symbol: "BTCUSDT", Timestamp: base + int64(i)*500, Price: tick.MustDecimal(p)}
		if err := st.prod.Produce(ctx, &tk); err != nil {
			t.Fatal(err)
		}
	}

	alerts, sigs := st.consume(t, ctx, 1, 1)
	a, s := alerts[0], sigs[0]
	// +4 % at 104 is under the threshold; the alert fires at 106 (+6 %).
	if len(alerts) != 1 || a.Rule != alert.PriceVolatility || a.ToPrice != "106" || a.ChangePercent != "6" {
		t.Fatalf("alerts on the topic: %+v", alerts)
	}
	if len(sigs) != 1 || s.Strategy != "btc-up" || s.Side != signal.Buy || s.Price != "104" {
		t.Fatalf("signals on the topic: %+v", sigs)
	}
	pushed(t, ctx, ws, a.ID, s.ID)

	srv := st.rest(t)
	var ra struct{ Data []alert.Alert }
	getJSON(t, srv.URL+"/api/v1/alerts", &ra)
	if len(ra.Data) != 1 || ra.Data[0].ID != a.ID {
		t.Fatalf("REST alerts %+v", ra.Data)
	}
	var rsig struct{ Data []signal.Signal }
	getJSON(t, srv.URL+"/api/v1/signals?strategy=btc-up", &rsig)
	if len(rsig.Data) != 1 || rsig.Data[0].ID != s.ID {
		t.Fatalf("REST signals %+v", rsig.Data)
	}
	var rst struct{ Data []signal.StrategyStatus }
	getJSON(t, srv.URL+"/api/v1/strategies", &rst)
	if len(rst.Data) != 1 || rst.Data[0].Paper.Position != "1" || rst.Data[0].Paper.UnrealizedPnL != "2" {
		t.Fatalf("REST strategies %+v", rst.Data)
	}
}

// The demo source: the simulated exchange through the ingest queue and
// pump, with thresholds low enough for its random walk to trip a
// volatility alert and a momentum signal within a few seconds.
func TestEndToEndFromSimulator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rcfg := risk.DefaultConfig()
	rcfg.StaleFeed.Enabled, rcfg.CrossedBook.Enabled, rcfg.PriceSpike.Enabled = false, false, false
	rcfg.Volatility.Window, rcfg.Volatility.Threshold = 5*time.Second, "0.00001"
	st := startStack(t, ctx, rcfg, `
strategies:
  - {name: sim-mom, type: momentum, exchange: sim, symbol: BTCUSDT, window: 5s, threshold: "0.00001"}
`)
	ws := st.subscribe(t, ctx)

	reg := prometheus.NewRegistry()
	q, err := ingest.NewQueue(1024, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	feed, err := sim.New(sim.Options{Symbols: []string{"BTCUSDT"}, Interval: 20 * time.Millisecond, Seed: 7, Queue: q, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	pump, err := ingest.NewPump(q, st.prod, ingest.PumpOptions{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone, pumpDone := make(chan error, 1), make(chan error, 1)
	go func() { simDone <- feed.Run(simCtx) }()
	go func() { pumpDone <- pump.Run(simCtx) }()
	defer func() {
		stopSim()
		if err := <-simDone; err != nil {
			t.Errorf("sim: %v", err)
		}
		q.Close()
		<-pumpDone
	}()

	alerts, sigs := st.consume(t, ctx, 1, 1)
	a, s := alerts[0], sigs[0]
	if a.Exchange != sim.Exchange || a.Rule != alert.PriceVolatility || s.Exchange != sim.Exchange || s.Strategy != "sim-mom" {
		t.Fatalf("alert %+v, signal %+v", a, s)
	}
	pushed(t, ctx, ws, a.ID, s.ID)

	srv := st.rest(t)
	var ra struct{ Data []alert.Alert }
	getJSON(t, srv.URL+"/api/v1/alerts?limit=1000", &ra)
	var rsig struct{ Data []signal.Signal }
	getJSON(t, srv.URL+"/api/v1/signals?strategy=sim-mom&limit=1000", &rsig)
	if !containsID(ra.Data, a.ID, func(x alert.Alert) string { return x.ID }) ||
		!containsID(rsig.Data, s.ID, func(x signal.Signal) string { return x.ID }) {
		t.Fatalf("REST does not list alert %s / signal %s", a.ID, s.ID)
	}
}

func containsID[T any](xs []T, id string, key func(T) string) bool {
	for _, x := range xs {
		if key(x) == id {
			return true
		}
	}
	return false
}

type frame struct {
	Type string          `json:"type"`
	Key  string          `json:"key"`
	Data json.RawMessage `json:"data"`
}

func readFrame(ctx context.Context, t *testing.T, ws *websocket.Conn) frame {
	t.Helper()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
