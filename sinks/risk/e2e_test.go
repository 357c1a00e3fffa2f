package risk_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/push"
	"github.com/tickflow/tickflow/sinks/risk"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

const ticksTopic = "market_data.ticks"

// End to end: ticks produced to the embedded broker are consumed by the
// risk and strategy sinks under the bus runtime, in their own consumer
// groups; the alert and signal they raise reach the Kafka topics (read
// back with a plain kgo consumer), a WebSocket client of the real push
// sink, and the REST API.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

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
	t.Cleanup(func() { _ = prod.Close(context.Background()) })

	// The push sink, listening for real.
	pcfg := push.DefaultConfig()
	pcfg.Listen = "127.0.0.1:0"
	ps, err := push.New(sinks.Env{Name: "push"}, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Listen(); err != nil {
		t.Fatal(err)
	}
	peer := func(name string) (sinks.Sink, bool) { return ps, name == "push" }

	rs, err := risk.New(sinks.Env{Name: "risk", Publisher: prod, Peer: peer}, risk.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	scfg := strategy.DefaultConfig()
	if err := yaml.Unmarshal([]byte(`
strategies:
  - {name: btc-up, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "103", direction: up}
`), scfg); err != nil {
		t.Fatal(err)
	}
	ss, err := strategy.New(sinks.Env{Name: "strategy", Publisher: prod, Peer: peer}, scfg)
	if err != nil {
		t.Fatal(err)
	}

	// Services first, then the runtimes, as main does.
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
	})
	start(ps.Run)
	start(rs.Run)
	start(ss.Run)
	for name, s := range map[string]sinks.Sink{"risk": rs, "strategy": ss} {
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

	// A WebSocket client of the push sink, on the alert and signal channels.
	ws, _, err := websocket.Dial(ctx, "ws://"+ps.Addr()+pcfg.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channels":["alert","signal"]}`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(ctx, t, ws); f.Type != "subscribed" {
		t.Fatalf("got %+v, want subscribed", f)
	}

	// +6 % in two seconds on BTCUSDT, crossing 103 on the way.
	base := time.Now().Add(-time.Minute).UnixMilli()
	for i, p := range []string{"100", "101", "102.5", "104", "106"} {
		tk := tick.Tick{Exchange: "binance", Symbol: "BTCUSDT", Timestamp: base + int64(i)*500, Price: tick.MustDecimal(p)}
		if err := prod.Produce(ctx, &tk); err != nil {
			t.Fatal(err)
		}
	}

	// Kafka: one alert and one signal, keyed by pair.
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...), kgo.ConsumeTopics(alert.Topic, signal.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var alerts []alert.Alert
	var sigs []signal.Signal
	for len(alerts) < 1 || len(sigs) < 1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("waiting for records: %v (have %d alerts, %d signals)", err, len(alerts), len(sigs))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) != "binance:BTCUSDT" {
				t.Errorf("record key %q", r.Key)
			}
			switch r.Topic {
			case alert.Topic:
				var a alert.Alert
				if err := json.Unmarshal(r.Value, &a); err != nil {
					t.Fatal(err)
				}
				alerts = append(alerts, a)
			case signal.Topic:
				var s signal.Signal
				if err := json.Unmarshal(r.Value, &s); err != nil {
					t.Fatal(err)
				}
				sigs = append(sigs, s)
			}
		})
	}
	a, s := alerts[0], sigs[0]
	// +4 % at 104 is under the threshold; the alert fires at 106 (+6 %).
	if len(alerts) != 1 || a.Rule != alert.PriceVolatility || a.ToPrice != "106" || a.ChangePercent != "6" {
		t.Fatalf("alerts on the topic: %+v", alerts)
	}
	if len(sigs) != 1 || s.Strategy != "btc-up" || s.Side != signal.Buy || s.Price != "104" {
		t.Fatalf("signals on the topic: %+v", sigs)
	}

	// Push: an alert frame and a signal frame, in either order.
	got := map[string]string{}
	for len(got) < 2 {
		f := readFrame(ctx, t, ws)
		var id struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(f.Data, &id); err != nil {
			t.Fatalf("frame %+v: %v", f, err)
		}
		if f.Key != "binance:BTCUSDT" {
			t.Fatalf("frame key %q", f.Key)
		}
		got[f.Type] = id.ID
	}
	if got["alert"] != a.ID || got["signal"] != s.ID {
		t.Fatalf("push frames %v, want alert %s and signal %s", got, a.ID, s.ID)
	}

	// REST.
	srv := httptest.NewServer(api.New(api.Options{Components: []any{rs, ss, ps}}).Handler())
	defer srv.Close()
	var ra struct {
		Data []alert.Alert `json:"data"`
	}
	getJSON(t, srv.URL+"/api/v1/alerts", &ra)
	if len(ra.Data) != 1 || ra.Data[0].ID != a.ID {
		t.Fatalf("REST alerts %+v", ra.Data)
	}
	var rsig struct {
		Data []signal.Signal `json:"data"`
	}
	getJSON(t, srv.URL+"/api/v1/signals?strategy=btc-up", &rsig)
	if len(rsig.Data) != 1 || rsig.Data[0].ID != s.ID {
		t.Fatalf("REST signals %+v", rsig.Data)
	}
	var rst struct {
		Data []signal.StrategyStatus `json:"data"`
	}
	getJSON(t, srv.URL+"/api/v1/strategies", &rst)
	if len(rst.Data) != 1 || rst.Data[0].Paper.Position != "1" || rst.Data[0].Paper.UnrealizedPnL != "2" {
		t.Fatalf("REST strategies %+v", rst.Data)
	}
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
