package events_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
)

// The feeds are what the API lists in a process without the risk or
// strategy sink; a drift from its interfaces would turn the endpoints into
// 503s.
var (
	_ api.AlertSource  = (*events.AlertFeed)(nil)
	_ api.SignalSource = (*events.SignalFeed)(nil)
)

// running starts a feed's Run until the test ends.
func running(t *testing.T, run func(context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Against a real broker: a feed started after alerts were raised lists
// them (the backfill), newest first and once each though one was
// republished; it goes on with alerts raised while it runs, skips and
// counts a record that is not an alert, and a feed started afresh (a
// restarted API process) lists the same.
func TestFeedsFromTheTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs(), ClientID: "feed-test"}
	for _, topic := range []string{alert.Topic, signal.Topic} {
		if err := bus.EnsureTopic(ctx, cc, topic, 4, -1); err != nil {
			t.Fatal(err)
		}
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks", Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close(context.Background()) })
	publish := func(topic, key string, v any) {
		t.Helper()
		b, ok := v.([]byte)
		if !ok {
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.Publish(ctx, topic, []byte(key), b); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(id, sym string, at int64, sev alert.Severity) alert.Alert {
		return alert.Alert{ID: id, Rule: alert.PriceVolatility, Status: alert.Firing, Severity: sev, Exchange: "binance", Symbol: sym, Timestamp: at}
	}
	a1, a2 := mk("a1", "BTCUSDT", 100, alert.Warning), mk("a2", "ETHUSDT", 200, alert.Critical)
	for _, a := range []alert.Alert{a1, a2, a1} { // a1 republished after a crash: same ID
		publish(alert.Topic, a.Key(), a)
	}
	s1 := signal.Signal{ID: "s1", Strategy: "btc-up", Type: "price_cross", Exchange: "binance", Symbol: "BTCUSDT", Side: signal.Buy, Price: "104", Timestamp: 150}
	publish(signal.Topic, s1.Key(), s1)

	reg := prometheus.NewRegistry()
	follower := bus.Follower{Client: cc}
	af, err := events.NewAlertFeed(follower, 100, events.FeedOptions{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := events.NewSignalFeed(follower, 100, events.FeedOptions{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	stopAlerts := running(t, af.Run)
	running(t, sf.Run)
	ids := func(as []alert.Alert) (out []string) {
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	testkit.Eventually(t, 30*time.Second, "the backfilled alerts", func() bool { return len(af.RecentAlerts(0, "", 0)) == 2 })
	if got := ids(af.RecentAlerts(0, "", 0)); got[0] != "a2" || got[1] != "a1" {
		t.Fatalf("alerts %v, want a2 then a1", got)
	}
	if got := ids(af.RecentAlerts(0, alert.Critical, 0)); len(got) != 1 || got[0] != "a2" {
		t.Fatalf("critical alerts %v", got)
	}
	testkit.Eventually(t, 30*time.Second, "the backfilled signal", func() bool { return len(sf.RecentSignals("", 0, 0)) == 1 })
	if st := sf.Strategies(); len(st) != 1 || st[0].Name != "btc-up" || st[0].Symbol != "BTCUSDT" || st[0].Signals != 1 {
		t.Fatalf("strategies %+v", st)
	}

	sf.UseEngine(engine{{Name: "configured-but-quiet"}})
	if st := sf.Strategies(); len(st) != 1 || st[0].Name != "configured-but-quiet" {
		t.Fatalf("strategies with an engine %+v", st)
	}

	publish(alert.Topic, "binance:BTCUSDT", []byte(`{not an alert`))
	a3 := mk("a3", "SOLUSDT", 300, alert.Info)
	publish(alert.Topic, a3.Key(), a3)
	testkit.Eventually(t, 30*time.Second, "the live alert", func() bool { return len(af.RecentAlerts(0, "", 0)) == 3 })
	testkit.Eventually(t, 10*time.Second, "the bad record counted", func() bool {
		return testkit.Metric(reg, "tickflow_recent_feed_undecodable_total", "topic", alert.Topic) == 1
	})
	if got := ids(af.RecentAlerts(0, "", 1)); got[0] != "a3" {
		t.Fatalf("newest alert %v", got)
	}

	// A restarted API process.
	stopAlerts()
	af2, err := events.NewAlertFeed(follower, 100, events.FeedOptions{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	running(t, af2.Run)
	testkit.Eventually(t, 30*time.Second, "the alerts again after a restart", func() bool { return len(af2.RecentAlerts(0, "", 0)) == 3 })
}

func TestFeedOptionsValidate(t *testing.T) {
	if _, err := events.NewAlertFeed(nil, 10, events.FeedOptions{}); err == nil {
		t.Error("a feed without a follower was built")
	}
	if _, err := events.NewSignalFeed(&testkit.Follower{}, 0, events.FeedOptions{}); err == nil {
		t.Error("a feed keeping nothing was built")
	}
}

type engine []signal.StrategyStatus

func (e engine) Strategies() []signal.StrategyStatus { return e }
