package risk

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/tick"
)

func TestVolatilityCrossingFiresOnce(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility))
	// +5 % exactly is not above the threshold; 105.01 is. The price then
	// stays up: still one alert.
	h.Write(path("binance", "BTCUSDT", 20*time.Second, "100", "102", "104", "105", "105.01", "106", "107", "106.5")...)
	got := h.alerts()
	if len(got) != 1 {
		t.Fatalf("got %d alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	want := alert.Alert{
		ID:   alert.ID(alert.PriceVolatility, tick.Pair{Exchange: "binance", Symbol: "BTCUSDT"}, t0+80_000),
		Rule: alert.PriceVolatility, Status: alert.Firing, Severity: alert.Warning,
		Exchange: "binance", Symbol: "BTCUSDT", Timestamp: t0 + 80_000,
		ChangePercent: "5.01", Window: "5m0s", FromPrice: "100", ToPrice: "105.01",
	}
	a.Message = ""
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("alert\n got %+v\nwant %+v", a, want)
	}
	if r := h.Bus.Records()[0]; r.Topic != alert.Topic || r.Key != "binance:BTCUSDT" {
		t.Fatalf("published to %s key %s", r.Topic, r.Key)
	}
	if l := h.Sink.RecentAlerts(0, "", 0); len(l) != 1 || l[0].ID != want.ID {
		t.Fatalf("recent = %+v", l)
	}
}

func TestVolatilityWindowIsEventTime(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility))
	// The same +10 % spread over more than the window never fires: at each
	// tick the window's first price is within 5 %.
	var ticks []tick.Tick
	for i := 0; i <= 10; i++ {
		ticks = append(ticks, tk("binance", "ETHUSDT", time.Duration(i)*3*time.Minute, []string{"100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110"}[i]))
	}
	h.Write(ticks...)
	if got := h.alerts(); len(got) != 0 {
		t.Fatalf("slow drift raised %d alerts: %+v", len(got), got)
	}
}

func TestVolatilityDownMove(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility))
	h.Write(path("binance", "SOLUSDT", time.Second, "200", "189.9")...)
	got := h.alerts()
	if len(got) != 1 || got[0].ChangePercent != "-5.05" {
		t.Fatalf("got %+v, want one alert at -5.05 %%", got)
	}
}

func TestVolatilityOscillationCooldown(t *testing.T) {
	// Around the threshold, dipping below the clearing level (4 %) each
	// time: without a cooldown every swing fires; with one only the first.
	prices := []string{"100", "105.5", "100.5", "105.6", "100.2", "105.7", "100.1", "105.8"}
	tests := []struct {
		name         string
		cooldown     time.Duration
		wantFiring   int
		wantResolved int
	}{
		{"no cooldown", 0, 4, 3},
		{"cooldown longer than the swings", 5 * time.Minute, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := onlyRules(alert.PriceVolatility)
			cfg.Volatility.Cooldown = tt.cooldown
			h := newHarness(t, cfg)
			h.Write(path("binance", "BTCUSDT", 10*time.Second, prices...)...)
			got := h.alerts()
			f := len(firing(got))
			if f != tt.wantFiring || len(got)-f != tt.wantResolved {
				t.Fatalf("firing %d resolved %d, want %d and %d: %+v", f, len(got)-f, tt.wantFiring, tt.wantResolved, got)
			}
			if tt.cooldown > 0 && h.Counter("tickflow_risk_alerts_suppressed_total", "rule", alert.PriceVolatility) != 3 {
				t.Fatalf("suppressed = %v, want 3", h.Counter("tickflow_risk_alerts_suppressed_total"))
			}
		})
	}
}

func TestVolatilityHysteresis(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility))
	// 4.5 % is below the threshold but above the clearing level: the alert
	// stays firing; 3.9 % resolves it.
	h.Write(path("binance", "BTCUSDT", 10*time.Second, "100", "105.5", "104.5", "105.9", "103.9")...)
	got := h.alerts()
	if len(got) != 2 || got[0].Status != alert.Firing || got[1].Status != alert.Resolved || got[0].ID != got[1].ID {
		t.Fatalf("want firing then resolved with one ID, got %+v", got)
	}
	if got[1].ChangePercent != "3.9" || got[1].Timestamp != t0+40_000 {
		t.Fatalf("resolved = %+v", got[1])
	}
}

func TestVolatilityVsOpen24h(t *testing.T) {
	cfg := onlyRules()
	cfg.Volatility.Enabled = true
	cfg.Volatility.Open24hThreshold = "0.1"
	h := newHarness(t, cfg)
	a := tk("binance", "BTCUSDT", 0, "100")
	a.Open24h = tick.MustDecimal("90")
	b := tk("binance", "BTCUSDT", time.Second, "100")
	b.Open24h = tick.MustDecimal("91")
	h.Write(a, b)
	got := h.alerts()
	if len(got) != 1 || got[0].Rule != alert.PriceVolatility24h || got[0].Window != "24h" || got[0].FromPrice != "90" {
		t.Fatalf("got %+v, want one 24h alert from 90", got)
	}
}

func TestReplayGivesNoNewAlert(t *testing.T) {
	cfg := onlyRules(alert.PriceVolatility, alert.CrossedBook)
	ticks := path("binance", "BTCUSDT", 10*time.Second, "100", "105.5", "100.5", "99", "92", "96", "97", "98")
	ticks = append(ticks, book(tk("binance", "BTCUSDT", 100*time.Second, "98"), "98.1", "98"), book(tk("binance", "BTCUSDT", 110*time.Second, "98"), "97.9", "98"))

	h := newHarness(t, cfg)
	h.Write(ticks...)
	first := ids(h.alerts())
	if len(first) < 4 {
		t.Fatalf("scenario raised only %v", first)
	}

	// The same ticks again, as the runtime redelivers after a failed commit.
	h.Write(ticks...)
	if again := ids(h.alerts()); !reflect.DeepEqual(again, first) {
		t.Fatalf("replay published more: %v, first run %v", again, first)
	}
	if n := h.Counter("tickflow_risk_ticks_skipped_total", "reason", "replayed"); n != float64(len(ticks)) {
		t.Fatalf("skipped %v replayed ticks, want %d", n, len(ticks))
	}

	// A fresh monitor fed the same ticks derives the same IDs.
	h2 := newHarness(t, cfg)
	h2.Write(ticks...)
	if got := ids(h2.alerts()); !reflect.DeepEqual(got, first) {
		t.Fatalf("fresh monitor: %v, want %v", got, first)
	}
}

// A restart with a state dir, replaying from an offset before the last
// snapshot, publishes exactly what an uninterrupted run publishes.
func TestRestartReplaysSavedState(t *testing.T) {
	cfg := func(dir string) *Config {
		c := onlyRules(alert.PriceVolatility, alert.StaleFeed)
		c.StateDir = dir
		return c
	}
	var ticks []tick.Tick
	prices := []string{"100", "101", "103", "104", "106", "104", "100", "99", "98", "92", "93", "94"}
	for i, p := range prices {
		at := time.Duration(i) * 15 * time.Second
		ticks = append(ticks, tk("binance", "BTCUSDT", at, p))
		if i < 5 || i > 8 { // ETHUSDT goes quiet for a minute
			ticks = append(ticks, tk("binance", "ETHUSDT", at, "2000"))
		}
	}

	whole := newHarness(t, cfg(t.TempDir()))
	whole.Write(ticks...)
	want := ids(whole.alerts())

	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			first := newHarness(t, cfg(dir))
			first.Write(ticks[:8]...)
			if snapshot { // as when the journal has grown: state so far in the snapshot, the rest logged
				if err := first.Sink.journal.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			first.Write(ticks[8:14]...)
			first.Sink.Close(context.Background())
			// Crash: the last batch was saved but its offsets never
			// committed, so the restarted monitor sees it again, then the rest.
			second := newHarness(t, cfg(dir))
			second.Write(ticks[8:]...)
			got := append(ids(first.alerts()), ids(second.alerts())...)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("with restart %v\nuninterrupted %v", got, want)
			}
			if l := second.Sink.RecentAlerts(0, "", 0); len(l) != len(got) {
				t.Fatalf("REST list after restart has %d alerts, want %d", len(l), len(got))
			}
			if n := second.Counter("tickflow_risk_alerts_total"); n != float64(len(second.alerts())) {
				t.Fatalf("alerts_total %v counts replayed alerts; published %d", n, len(second.alerts()))
			}
		})
	}
}

func TestCorruptStateStartsCold(t *testing.T) {
	tests := []struct {
		name string
		file string
		data []byte
	}{
		{"snapshot fails its checksum", journalName + ".snap", []byte("0123456789ab{not json")},
		{"snapshot is not state", journalName + ".snap", nil}, // written below with a good checksum
		{"record is not ticks", journalName + ".log", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			switch {
			case tt.data != nil:
				if err := os.WriteFile(filepath.Join(dir, tt.file), tt.data, 0o644); err != nil {
					t.Fatal(err)
				}
			default:
				st, err := journal.Open(dir, journalName)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := st.Load(); err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(tt.file, ".snap") {
					err = st.Snapshot([]byte(`{"version":1,"pairs":"nope"}`))
				} else {
					err = st.Append([]byte{0x05, 'x', 'y'})
				}
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
			}
			cfg := onlyRules(alert.PriceVolatility)
			cfg.StateDir = dir
			h := newHarness(t, cfg)
			if h.Counter("tickflow_risk_state_errors_total") != 1 {
				t.Fatal("state error not counted")
			}
			if _, err := os.Stat(filepath.Join(dir, tt.file+".corrupt")); err != nil {
				t.Fatalf("bad state not kept aside: %v", err)
			}
			h.Write(path("binance", "BTCUSDT", time.Second, "100", "110")...)
			if len(h.alerts()) != 1 {
				t.Fatal("monitor does not work after bad state")
			}
		})
	}
}

func TestStaleFeed(t *testing.T) {
	cfg := onlyRules(alert.StaleFeed)
	cfg.StaleFeed.After = 30 * time.Second
	h := newHarness(t, cfg)
	var ticks []tick.Tick
	for s := 0; s <= 60; s++ {
		at := time.Duration(s) * time.Second
		ticks = append(ticks, tk("binance", "BTCUSDT", at, "100"))
		if s <= 10 || s >= 55 { // ETHUSDT silent from 10 s to 55 s
			ticks = append(ticks, tk("binance", "ETHUSDT", at, "10"))
		}
		if s <= 5 { // the okx source goes down entirely at 5 s: not stale
			ticks = append(ticks, tk("okx", "BTCUSDT", at, "100"), tk("okx", "ETHUSDT", at, "10"))
		}
	}
	h.Write(ticks[:40]...) // batch boundaries must not matter
	h.Write(ticks[40:]...)
	got := h.alerts()
	if len(got) != 2 {
		t.Fatalf("got %d alerts, want firing and resolved for binance:ETHUSDT: %+v", len(got), got)
	}
	f, r := got[0], got[1]
	eth := tick.Pair{Exchange: "binance", Symbol: "ETHUSDT"}
	if f.Status != alert.Firing || f.Pair() != eth || f.LastTick != t0+10_000 || f.Timestamp != t0+41_000 ||
		f.ID != alert.ID(alert.StaleFeed, eth, t0+10_000) {
		t.Fatalf("firing = %+v", f)
	}
	if r.Status != alert.Resolved || r.ID != f.ID || r.Timestamp != t0+55_000 {
		t.Fatalf("resolved = %+v", r)
	}
	if !strings.Contains(f.Message, "31s") {
		t.Fatalf("message %q does not say how long", f.Message)
	}
}

func TestCrossedBook(t *testing.T) {
	h := newHarness(t, onlyRules(alert.CrossedBook))
	h.Write(
		book(tk("binance", "BTCUSDT", 0, "100"), "99.9", "100.1"),
		book(tk("binance", "BTCUSDT", time.Second, "100"), "100", "100"),     // locked
		book(tk("binance", "BTCUSDT", 2*time.Second, "100"), "100.2", "100"), // crossed: still the same alert
		tk("binance", "BTCUSDT", 3*time.Second, "100"),                       // no book: no judgement
		book(tk("binance", "BTCUSDT", 4*time.Second, "100"), "99.9", "100"),  // normal
	)
	got := h.alerts()
	if len(got) != 2 {
		t.Fatalf("got %+v, want firing and resolved", got)
	}
	if got[0].Status != alert.Firing || got[0].Severity != alert.Critical || got[0].Bid != "100" || got[0].Ask != "100" ||
		!strings.Contains(got[0].Message, "locked") || got[0].Timestamp != t0+1000 {
		t.Fatalf("firing = %+v", got[0])
	}
	if got[1].Status != alert.Resolved || got[1].ID != got[0].ID || got[1].Timestamp != t0+4000 {
		t.Fatalf("resolved = %+v", got[1])
	}
}

func TestPriceSpike(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceSpike))
	h.Write(
		tk("binance", "BTCUSDT", 0, "100"),
		tk("okx", "BTC-USDT", 0, "100.5"),
		tk("bybit", "BTCUSDT", 0, "99.8"),
		tk("bybit", "BTCUSDT", time.Second, "103"), // median of 100, 100.5 is 100.25: +2.74 %
		tk("binance", "BTCUSDT", 2*time.Second, "100.1"),
		tk("bybit", "BTCUSDT", 3*time.Second, "100.2"),  // back in line
		tk("kraken", "BTC/USDT", 60*time.Second, "150"), // others are all older than max_age
	)
	got := h.alerts()
	if len(got) != 2 {
		t.Fatalf("got %+v, want bybit firing and resolved", got)
	}
	f := got[0]
	if f.Exchange != "bybit" || f.Status != alert.Firing || f.Reference != "100.25" || f.DeviationPercent != "2.7431" ||
		!reflect.DeepEqual(f.Others, []string{"binance", "okx"}) {
		t.Fatalf("firing = %+v", f)
	}
	if got[1].Exchange != "bybit" || got[1].Status != alert.Resolved {
		t.Fatalf("resolved = %+v", got[1])
	}
}

// assets gives a tick the instrument the ingest pump would have set.
func assets(t tick.Tick, base, quote string) tick.Tick {
	t.Base, t.Quote = base, quote
	return t
}

// The spike rule compares one normalized instrument across exchanges,
// whatever each exchange calls it: the records' Base/Quote, or for records
// from before they carried one, their symbol resolved. Different quote
// assets never meet, and a record's own instrument (an exchange listing)
// wins over its symbol's form.
func TestPriceSpikeUsesTheNormalizedInstrument(t *testing.T) {
	for _, c := range []struct {
		name   string
		ticks  []tick.Tick
		firing string // "exchange:symbol vs others", "" for no alert
	}{
		{"okx BTC-USDT meets binance BTCUSDT", []tick.Tick{
			assets(tk("okx", "BTC-USDT", 0, "100"), "BTC", "USDT"),
			tk("binance", "BTCUSDT", 0, "100.2"), // an older record: no Base/Quote
			assets(tk("okx", "BTC-USDT", time.Second, "104"), "BTC", "USDT"),
		}, "okx:BTC-USDT vs [binance]"},
		{"kraken XBT/USD meets coinbase BTC-USD", []tick.Tick{
			tk("coinbase", "BTC-USD", 0, "100"),
			tk("kraken", "XBT/USD", 0, "100.1"),
			tk("kraken", "XBT/USD", time.Second, "96"),
		}, "kraken:XBT/USD vs [coinbase]"},
		{"kraken BTC/USD with assets meets coinbase BTC-USD with assets", []tick.Tick{
			assets(tk("coinbase", "BTC-USD", 0, "100"), "BTC", "USD"),
			assets(tk("kraken", "BTC/USD", 0, "100.1"), "BTC", "USD"),
			assets(tk("coinbase", "BTC-USD", time.Second, "110"), "BTC", "USD"),
		}, "coinbase:BTC-USD vs [kraken]"},
		{"USDT and USD are different instruments", []tick.Tick{
			tk("binance", "BTCUSDT", 0, "100"),
			tk("coinbase", "BTC-USD", 0, "100"),
			tk("coinbase", "BTC-USD", time.Second, "110"),
		}, ""},
		{"a listing's instrument regroups a pair", []tick.Tick{
			tk("kraken", "ADA/EUR", 0, "0.5"),
			tk("binance", "ADAEUR", 0, "0.5"), // ambiguous by its form: no group yet
			assets(tk("binance", "ADAEUR", time.Second, "0.6"), "ADA", "EUR"),
		}, "binance:ADAEUR vs [kraken]"},
		{"a symbol without an instrument is compared with nothing", []tick.Tick{
			tk("binance", "ADAEUR", 0, "0.5"),
			tk("bybit", "ADAEUR", 0, "0.5"),
			tk("binance", "ADAEUR", time.Second, "0.9"),
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, onlyRules(alert.PriceSpike))
			h.Write(c.ticks...)
			var got []string
			for _, a := range firing(h.alerts()) {
				got = append(got, fmt.Sprintf("%s:%s vs %v", a.Exchange, a.Symbol, a.Others))
			}
			want := []string{c.firing}
			if c.firing == "" {
				want = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("firing %q, want %q", got, want)
			}
		})
	}
}

func TestPublishFailureIsRetriedWithoutDuplicates(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility, alert.CrossedBook))
	batch := []tick.Tick{
		tk("binance", "BTCUSDT", 0, "100"),
		book(tk("binance", "BTCUSDT", time.Second, "106"), "107", "106"),
	}
	h.Bus.FailNext(1)
	if err := h.Sink.WriteBatch(context.Background(), batch); err == nil {
		t.Fatal("WriteBatch succeeded although the bus refused the alert")
	}
	if len(h.alerts()) != 0 || len(h.Sink.RecentAlerts(0, "", 0)) != 0 {
		t.Fatal("alert listed before the bus acknowledged it")
	}
	h.Write(batch...) // the runtime's retry
	got := h.alerts()
	if len(got) != 2 || got[0].Rule != alert.PriceVolatility || got[1].Rule != alert.CrossedBook {
		t.Fatalf("after retry got %+v, want the two alerts once, in order", got)
	}
	if h.Counter("tickflow_risk_publish_errors_total") != 1 {
		t.Fatal("publish error not counted")
	}
}

func TestInvalidTicksAreCountedNotFatal(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	bad := tk("binance", "BTCUSDT", 0, "100")
	bad.Price = tick.MustDecimal("-1")
	h.Write(bad, tick.Tick{}, tk("binance", "BTCUSDT", time.Second, "100"))
	if n := h.Counter("tickflow_risk_ticks_skipped_total", "reason", "invalid"); n != 2 {
		t.Fatalf("invalid skipped = %v, want 2", n)
	}
	if n := h.Counter("tickflow_risk_ticks_total"); n != 1 {
		t.Fatalf("applied = %v, want 1", n)
	}
}

func TestRecentAlertsFilters(t *testing.T) {
	h := newHarness(t, onlyRules(alert.PriceVolatility, alert.CrossedBook))
	h.Write(
		tk("binance", "BTCUSDT", 0, "100"),
		tk("binance", "BTCUSDT", time.Second, "110"),                   // warning at +1 s
		book(tk("binance", "ETHUSDT", 2*time.Second, "10"), "10", "9"), // critical at +2 s
	)
	tests := []struct {
		since int64
		min   alert.Severity
		limit int
		want  []string
	}{
		{0, "", 0, []string{alert.CrossedBook, alert.PriceVolatility}},
		{0, alert.Critical, 0, []string{alert.CrossedBook}},
		{0, alert.Warning, 0, []string{alert.CrossedBook, alert.PriceVolatility}},
		{t0 + 1500, "", 0, []string{alert.CrossedBook}},
		{0, "", 1, []string{alert.CrossedBook}},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range h.Sink.RecentAlerts(tt.since, tt.min, tt.limit) {
			got = append(got, a.Rule)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("since %d min %q limit %d: got %v, want %v", tt.since, tt.min, tt.limit, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad threshold", func(c *Config) { c.Volatility.Threshold = "5%" }, "volatility.threshold"},
		{"zero threshold", func(c *Config) { c.Volatility.Threshold = "0" }, "volatility.threshold: must be > 0"},
		{"clear ratio above one", func(c *Config) { c.Volatility.ClearRatio = "1.5" }, "volatility.clear_ratio"},
		{"short window", func(c *Config) { c.Volatility.Window = time.Millisecond }, "volatility.window"},
		{"bad 24h threshold", func(c *Config) { c.Volatility.Open24hThreshold = "x" }, "volatility.open_24h_threshold"},
		{"bad severity", func(c *Config) { c.CrossedBook.Severity = "loud" }, "crossed_book.severity"},
		{"negative cooldown", func(c *Config) { c.PriceSpike.Cooldown = -time.Second }, "price_spike.cooldown"},
		{"stale after", func(c *Config) { c.StaleFeed.After = 0 }, "stale_feed.after"},
		{"spike max age", func(c *Config) { c.PriceSpike.MaxAge = 0 }, "price_spike.max_age"},
		{"recent", func(c *Config) { c.Recent = 0 }, "recent"},
		{"webhook url", func(c *Config) { c.Webhook.URL = "ftp://x" }, "webhook.url"},
		{"webhook timeout", func(c *Config) { c.Webhook.URL = "http://x"; c.Webhook.Timeout = 0 }, "webhook.timeout"},
		{"webhook backoff", func(c *Config) { c.Webhook.URL = "http://x"; c.Webhook.MaxBackoff = time.Millisecond }, "webhook.max_backoff"},
		{"webhook ok", func(c *Config) { c.Webhook.URL = "https://hooks.example/x" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// The config loader decodes sinks.risk strictly and reports this
// package's validation errors under the section's key.
func TestConfigThroughLoader(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"volatility: {threshold: \"5 percent\"}", `sinks.risk: volatility.threshold: bad decimal "5 percent"`},
		{"volatility: {treshold: \"0.05\"}", "sinks.risk: volatility: field treshold not found"},
		{"webhook: {url: \"http://hooks.local/x\", retries: -1}", "sinks.risk: webhook.retries: must be >= 0"},
		{"volatility: {window: 10m, threshold: \"0.02\", cooldown: 1m}\n    state_dir: /tmp/x", ""},
	}
	for _, tt := range tests {
		cfg, err := config.Parse([]byte("sinks:\n  risk:\n    enabled: true\n    "+tt.yaml+"\n"), func(string) string { return "" })
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.yaml, err)
				continue
			}
			s, _ := cfg.Sink("risk")
			c := s.Settings.(*Config)
			if c.Volatility.Window != 10*time.Minute || c.Volatility.Threshold != "0.02" || c.StateDir != "/tmp/x" || !c.StaleFeed.Enabled {
				t.Errorf("decoded %+v", c)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// A snapshot keeps the instrument a pair's records carried, so a pair only
// a listing could resolve is still in its group after a restart.
func TestSnapshotKeepsTheInstrument(t *testing.T) {
	cfg := onlyRules(alert.PriceSpike)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(cfg, m)
	e.apply(ptr(assets(tk("binance", "ADAEUR", 0, "0.5"), "ADA", "EUR")))
	snap := e.snapshot()
	b, err := json.Marshal(&snap)
	if err != nil {
		t.Fatal(err)
	}
	var back snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	r := newEngine(cfg, m)
	r.restore(&back)
	r.apply(ptr(tk("kraken", "ADA/EUR", 0, "0.5")))
	g := r.groups[instrument.Instrument{Base: "ADA", Quote: "EUR"}]
	if g == nil || len(g.members) != 2 {
		t.Fatalf("after restore the ADA-EUR group is %+v, want binance's ADAEUR and kraken's ADA/EUR", g)
	}
}

func ptr[T any](v T) *T { return &v }
