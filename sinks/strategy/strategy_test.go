package strategy

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

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// Each strategy type, fed a known price path, gives known signals.
func TestStrategyTypesOnKnownPaths(t *testing.T) {
	type step struct {
		at    time.Duration
		price string
	}
	every := func(d time.Duration, prices ...string) []step {
		out := make([]step, len(prices))
		for i, p := range prices {
			out[i] = step{time.Duration(i) * d, p}
		}
		return out
	}
	tests := []struct {
		name   string
		entry  string
		path   []step
		want   []sig
		reason string // a fragment of the first signal's reason
	}{
		{
			name:   "price_cross up only",
			entry:  `{type: price_cross, level: "100", direction: up}`,
			path:   every(time.Second, "99", "99.5", "100", "101", "99", "100.5"),
			want:   []sig{{"s", signal.Buy, "100", 2000}, {"s", signal.Buy, "100.5", 5000}},
			reason: "crossed above 100",
		},
		{
			name:  "price_cross both ways",
			entry: `{type: price_cross, level: "100.25"}`,
			path:  every(time.Second, "100.3", "100.25", "100.24", "100.26"),
			want:  []sig{{"s", signal.Sell, "100.25", 1000}, {"s", signal.Buy, "100.26", 3000}},
		},
		{
			name:   "sma_cross on ticks",
			entry:  `{type: sma_cross, fast: 2, slow: 3}`,
			path:   every(time.Second, "10", "10", "10", "9", "12", "8", "5"),
			want:   []sig{{"s", signal.Buy, "12", 4000}, {"s", signal.Sell, "5", 6000}},
			reason: "SMA(2) 10.5 crossed above SMA(3) 10.33333333 on ticks",
		},
		{
			name:  "sma_cross on 1m closes",
			entry: `{type: sma_cross, fast: 1, slow: 2, bars: 1m}`,
			path: []step{
				{0, "10"}, {30 * time.Second, "11"}, // close 11
				{60 * time.Second, "9"}, {90 * time.Second, "10"}, // close 10: first judgement, fast below
				{120 * time.Second, "12"}, // close 12: crosses above when the next bar opens
				{180 * time.Second, "5"},  // ... here, filled at this tick's price
				{240 * time.Second, "6"},  // close 5: crosses below
			},
			want:   []sig{{"s", signal.Buy, "5", 180_000}, {"s", signal.Sell, "6", 240_000}},
			reason: "on 1m0s bars",
		},
		{
			name:   "breakout on ticks",
			entry:  `{type: breakout, period: 3}`,
			path:   every(time.Second, "10", "11", "12", "12.5", "13", "12", "11.9", "11.8"),
			want:   []sig{{"s", signal.Buy, "12.5", 3000}, {"s", signal.Sell, "11.9", 6000}},
			reason: "broke above the 3 ticks high 12",
		},
		{
			name:  "breakout on 1m bars",
			entry: `{type: breakout, period: 2, bars: 1m}`,
			path: []step{
				{0, "10"}, {10 * time.Second, "12"}, // bar 10..12
				{60 * time.Second, "11"}, {70 * time.Second, "9"}, // bar 9..11
				{120 * time.Second, "12.1"}, // channel 9..12: above
				{130 * time.Second, "8"},    // below
			},
			want: []sig{{"s", signal.Buy, "12.1", 120_000}, {"s", signal.Sell, "8", 130_000}},
		},
		{
			name:  "momentum",
			entry: `{type: momentum, window: 1m, threshold: "0.02"}`,
			path: []step{
				{0, "100"}, {10 * time.Second, "101"}, {20 * time.Second, "102.1"}, {30 * time.Second, "103"},
				{70 * time.Second, "103"}, {80 * time.Second, "100.9"}, {90 * time.Second, "99"},
			},
			want:   []sig{{"s", signal.Buy, "102.1", 20_000}, {"s", signal.Sell, "99", 90_000}},
			reason: "price rose from 100 to 102.1 within 1m0s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entry := strings.Replace(tt.entry, "{", "{name: s, exchange: binance, symbol: BTCUSDT, ", 1)
			h := newHarness(t, parseConfig(t, "strategies:\n  - "+entry+"\n"), nil)
			var ticks []tick.Tick
			for _, s := range tt.path {
				ticks = append(ticks, tk("binance", "BTCUSDT", s.at, s.price))
			}
			h.Write(ticks...)
			got := h.signals()
			if !reflect.DeepEqual(sigs(got), tt.want) {
				t.Fatalf("signals %v, want %v", sigs(got), tt.want)
			}
			if tt.reason != "" && !strings.Contains(got[0].Reason, tt.reason) {
				t.Fatalf("reason %q does not contain %q", got[0].Reason, tt.reason)
			}
			for _, s := range got {
				if s.Strategy != "s" || s.Exchange != "binance" || s.Symbol != "BTCUSDT" ||
					s.ID != signal.ID("s", tick.Pair{Exchange: "binance", Symbol: "BTCUSDT"}, s.Side, s.Timestamp) {
					t.Fatalf("signal %+v", s)
				}
			}
		})
	}
}

const twoStrategies = `
strategies:
  - {name: btc-cross, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "100", quantity: "2", allow_short: true}
  - {name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, params: {fast: 2, slow: 3}}
`

func TestSinkPublishesAndPaperTrades(t *testing.T) {
	h := newHarness(t, parseConfig(t, twoStrategies), nil)
	h.Write(
		tk("binance", "BTCUSDT", 0, "99"),
		tk("binance", "ETHUSDT", 0, "10"),
		tk("binance", "BTCUSDT", time.Second, "100"), // buy 2 @ 100
		tk("binance", "SOLUSDT", time.Second, "1"),   // no strategy: ignored
		tk("binance", "BTCUSDT", 2*time.Second, "104"),
		tk("binance", "BTCUSDT", 3*time.Second, "99.5"), // sell: close at -1, open short 2 @ 99.5
		tk("binance", "BTCUSDT", 4*time.Second, "98"),   // mark: short is up 3
	)
	got := h.signals()
	if !reflect.DeepEqual(sigs(got), []sig{{"btc-cross", signal.Buy, "100", 1000}, {"btc-cross", signal.Sell, "99.5", 3000}}) {
		t.Fatalf("signals %v", sigs(got))
	}
	for _, r := range h.Bus.Records() {
		if r.Topic != signal.Topic || r.Key != "binance:BTCUSDT" {
			t.Fatalf("published to %s key %s", r.Topic, r.Key)
		}
	}
	st := h.Sink.Strategies()
	if len(st) != 2 || st[0].Name != "btc-cross" || st[1].Name != "eth-sma" {
		t.Fatalf("strategies %+v", st)
	}
	want := signal.PaperAccount{Quantity: "2", AllowShort: true, Position: "-2", EntryPrice: "99.5", MarkPrice: "98",
		RealizedPnL: "-1", UnrealizedPnL: "3", Fills: 3}
	if st[0].Paper != want {
		t.Fatalf("paper\n got %+v\nwant %+v", st[0].Paper, want)
	}
	if st[0].Signals != 2 || st[0].Params["level"] != "100" || st[1].Params["slow"] != "3" {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(string(st[0].State), `"prev":"98"`) {
		t.Fatalf("state %s", st[0].State)
	}
	if l := h.Sink.RecentSignals("btc-cross", 0, 1); len(l) != 1 || l[0].Side != signal.Sell {
		t.Fatalf("recent %+v", l)
	}
	if l := h.Sink.RecentSignals("eth-sma", 0, 0); len(l) != 0 {
		t.Fatalf("recent for eth-sma %+v", l)
	}
}

func TestPaperLongOnly(t *testing.T) {
	var p paper
	q := tick.MustDecimal("0.5")
	for _, f := range []struct {
		side  signal.Side
		price string
	}{
		{signal.Sell, "10"}, // nothing to close, no shorting
		{signal.Buy, "10"},
		{signal.Buy, "11"}, // already long: no pyramiding
		{signal.Sell, "13.5"},
		{signal.Buy, "12"},
		{signal.Sell, "11"},
	} {
		price := tick.MustDecimal(f.price)
		p.apply(f.side, &price, &q, false)
	}
	if p.Position.Sign() != 0 || p.Realized.Text('f') != "1.25" || p.Fills != 4 {
		t.Fatalf("paper %+v realized %s", p, p.Realized.Text('f'))
	}
}

func TestReplayPublishesNothingNew(t *testing.T) {
	h := newHarness(t, parseConfig(t, twoStrategies), nil)
	ticks := path("binance", "BTCUSDT", time.Second, "99", "101", "98", "102")
	h.Write(ticks...)
	first := sigs(h.signals())
	h.Write(ticks...)
	if again := sigs(h.signals()); !reflect.DeepEqual(again, first) {
		t.Fatalf("replay published more: %v, first %v", again, first)
	}
	if n := h.Counter("tickflow_strategy_ticks_skipped_total", "reason", "replayed"); n != 4 {
		t.Fatalf("replayed skipped %v, want 4", n)
	}
}

func TestPublishFailureIsRetried(t *testing.T) {
	h := newHarness(t, parseConfig(t, twoStrategies), nil)
	batch := path("binance", "BTCUSDT", time.Second, "99", "101", "98")
	h.Bus.FailNext(1)
	if err := h.Sink.WriteBatch(context.Background(), batch); err == nil {
		t.Fatal("WriteBatch succeeded although the bus refused")
	}
	h.Write(batch...)
	if got := sigs(h.signals()); len(got) != 2 || got[0].side != signal.Buy || got[1].side != signal.Sell {
		t.Fatalf("after retry %v, want buy then sell once", got)
	}
	if st := h.Sink.Strategies()[0]; st.Paper.Fills != 3 || st.Signals != 2 {
		t.Fatalf("paper applied %d fills for %d signals", st.Paper.Fills, st.Signals)
	}
}

// A restart from the saved state, replaying from before it, gives exactly
// the signals and paper accounts of an uninterrupted run, whether the state
// is all in the journal's log or partly in its snapshot.
func TestRestartFromSavedState(t *testing.T) {
	src := `
strategies:
  - {name: sma, type: sma_cross, exchange: binance, symbol: BTCUSDT, fast: 2, slow: 4}
  - {name: brk, type: breakout, exchange: binance, symbol: BTCUSDT, period: 3}
  - {name: mom, type: momentum, exchange: binance, symbol: BTCUSDT, window: 30s, threshold: "0.03"}
`
	cfg := func(dir string) *Config {
		c := parseConfig(t, src)
		c.StateDir = dir
		return c
	}
	ticks := path("binance", "BTCUSDT", 5*time.Second,
		"100", "101", "99", "98", "103", "104", "100", "96", "95", "99", "104", "106", "101", "97", "99", "102")

	whole := newHarness(t, cfg(t.TempDir()), nil)
	whole.Write(ticks...)
	want := whole.signals()
	if len(want) < 4 {
		t.Fatalf("scenario gives only %v", sigs(want))
	}

	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			first := newHarness(t, cfg(dir), nil)
			first.Write(ticks[:6]...)
			if snapshot {
				if err := first.Sink.journal.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			first.Write(ticks[6:10]...)
			first.Sink.Close(context.Background())
			second := newHarness(t, cfg(dir), nil) // the last batch was never committed
			second.Write(ticks[6:]...)
			got := append(first.signals(), second.signals()...)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("with restart %v\nuninterrupted %v", sigs(got), sigs(want))
			}
			if a, b := second.Sink.Strategies(), whole.Sink.Strategies(); !reflect.DeepEqual(a, b) {
				t.Fatalf("state after restart\n%+v\nuninterrupted\n%+v", a, b)
			}
			if n := len(second.Sink.RecentSignals("", 0, 0)); n != len(want) {
				t.Fatalf("REST list after restart has %d signals, want %d", n, len(want))
			}
			second.Sink.Close(context.Background())

			// A strategy whose parameters changed keeps none of the old
			// one's state or fills; the others keep theirs.
			changed := cfg(dir)
			changed.Strategies[0].Params.Content[3].Value = "5" // slow: 4 -> 5
			third := newHarness(t, changed, nil)
			st := third.Sink.Strategies()
			var sma struct{ Closes []json.RawMessage }
			if err := json.Unmarshal(st[0].State, &sma); err != nil || len(sma.Closes) != 5 {
				t.Fatalf("changed strategy's state %s", st[0].State)
			}
			if st[0].Paper.Fills != 0 || st[0].Signals != 0 {
				t.Fatalf("changed strategy kept the old fills: %+v", st[0])
			}
			if !reflect.DeepEqual(st[1:], whole.Sink.Strategies()[1:]) {
				t.Fatal("unchanged strategies lost their state")
			}
		})
	}
}

func TestCorruptStateStartsAfresh(t *testing.T) {
	for _, file := range []string{journalName + ".snap", journalName + ".log"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			st, err := journal.Open(dir, journalName)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.Load(); err != nil {
				t.Fatal(err)
			}
			if file == journalName+".snap" {
				err = st.Snapshot([]byte("{"))
			} else {
				err = st.Append([]byte{0x01})
			}
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			c := parseConfig(t, twoStrategies)
			c.StateDir = dir
			h := newHarness(t, c, nil)
			if h.Counter("tickflow_strategy_state_errors_total") != 1 {
				t.Fatal("state error not counted")
			}
			if _, err := os.Stat(filepath.Join(dir, file+".corrupt")); err != nil {
				t.Fatalf("bad state not kept aside: %v", err)
			}
			h.Write(path("binance", "BTCUSDT", time.Second, "99", "101")...)
			if len(h.signals()) != 1 {
				t.Fatal("engine does not work after bad state")
			}
		})
	}
}

func TestWriteBatchBeforeRunIsNotConnected(t *testing.T) {
	s, err := New(senv(), parseConfig(t, twoStrategies))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(context.Background(), path("binance", "BTCUSDT", time.Second, "99")); err == nil {
		t.Fatal("WriteBatch without a running pool succeeded")
	}
}

// Bad strategy configs stop startup with an error naming the strategy,
// through the real config loader.
func TestBadStrategyConfig(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		want  string
	}{
		{"unknown type", `{name: a1, type: martingale, exchange: binance, symbol: BTCUSDT}`,
			`strategies[0] "a1" (martingale): type: unknown strategy type "martingale" (known: breakout, momentum, price_cross, sma_cross`},
		{"missing level", `{name: btc-x, type: price_cross, exchange: binance, symbol: BTCUSDT}`,
			`strategies[0] "btc-x" (price_cross): level: required`},
		{"bad decimal", `{name: btc-x, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "5O050"}`,
			`strategies[0] "btc-x" (price_cross): level: bad decimal "5O050"`},
		{"missing slow", `{name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, fast: 20}`,
			`"eth-sma" (sma_cross): slow: required`},
		{"slow not above fast", `{name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, fast: 20, slow: 10}`,
			`"eth-sma" (sma_cross): slow: must be greater than fast (20), got 10`},
		{"not a number", `{name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, fast: many, slow: 10}`,
			`"eth-sma" (sma_cross): cannot unmarshal !!str`},
		{"unknown parameter", `{name: b, type: breakout, exchange: binance, symbol: BTCUSDT, period: 3, lookback: 5}`,
			`"b" (breakout): unknown parameter "lookback" (breakout takes bars, period)`},
		{"bad bars", `{name: b, type: breakout, exchange: binance, symbol: BTCUSDT, period: 3, bars: 1x}`,
			`"b" (breakout): bars: "1x"`},
		{"missing threshold", `{name: m, type: momentum, exchange: binance, symbol: BTCUSDT}`,
			`"m" (momentum): threshold: required`},
		{"bad quantity", `{name: q, type: momentum, exchange: binance, symbol: BTCUSDT, threshold: "0.1", quantity: "-1"}`,
			`"q" (momentum): quantity: "-1" is not a positive decimal`},
		{"missing symbol", `{name: q, type: momentum, exchange: binance, threshold: "0.1"}`,
			`"q" (momentum): symbol: required`},
		{"missing name", `{type: momentum, exchange: binance, symbol: X, threshold: "0.1"}`,
			`strategies[0] "" (momentum): name: required`},
		{"parameter inline and under params", `{name: d, type: price_cross, exchange: binance, symbol: X, level: "1", params: {level: "2"}}`,
			`parameter "level" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte("sinks:\n  strategy:\n    enabled: true\n    strategies:\n      - "+tt.entry+"\n"), func(string) string { return "" })
			if err == nil {
				t.Fatal("config accepted")
			}
			if !strings.Contains(err.Error(), "sinks.strategy: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("duplicate name", func(t *testing.T) {
		c := parseConfig(t, twoStrategies)
		c.Strategies[1].Name = "btc-cross"
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `strategies[1] "btc-cross": name already used by strategies[0]`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("good config loads", func(t *testing.T) {
		cfg, err := config.Parse([]byte("sinks:\n  strategy:\n    enabled: true\n"+indent(twoStrategies, "    ")), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		s, _ := cfg.Sink("strategy")
		if got := len(s.Settings.(*Config).Strategies); got != 2 {
			t.Fatalf("%d strategies", got)
		}
	})
}

func TestPoolSettingsValidate(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.Workers = 0 },
		func(c *Config) { c.Queue = 0 },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.Recent = 0 },
	} {
		c := DefaultConfig()
		mut(c)
		if c.Validate() == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

var _ = clock.Real

// The incremental channel equals a full recomputation on a long random path.
func TestBreakoutChannelMatchesRescan(t *testing.T) {
	st, err := newBreakout(&breakoutParams{Period: 7, Bars: "tick"})
	if err != nil {
		t.Fatal(err)
	}
	b := st.(*breakout)
	x := int64(1000)
	for i := 0; i < 5000; i++ {
		x += int64((i*7919)%11) - 5
		d := tick.MustDecimal(fmt.Sprint(x))
		b.push(&d, &d)
		n := b.st.Count
		hi, lo := b.st.Highs[0], b.st.Lows[0]
		for j := 1; j < n; j++ {
			if b.st.Highs[j].Cmp(&hi) > 0 {
				hi = b.st.Highs[j]
			}
			if b.st.Lows[j].Cmp(&lo) < 0 {
				lo = b.st.Lows[j]
			}
		}
		if hi.Cmp(&b.st.High) != 0 || lo.Cmp(&b.st.Low) != 0 {
			t.Fatalf("step %d: channel %s..%s, rescan %s..%s", i, b.st.Low.String(), b.st.High.String(), lo.String(), hi.String())
		}
	}
}
