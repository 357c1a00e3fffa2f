package strategy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

const allTypes = `
strategies:
  - {name: btc-cross, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "100", quantity: "2", allow_short: true}
  - {name: btc-sma, type: sma_cross, exchange: binance, symbol: BTCUSDT, fast: 3, slow: 8}
  - {name: eth-breakout, type: breakout, exchange: binance, symbol: ETHUSDT, period: 10, allow_short: true}
  - {name: eth-mom, type: momentum, exchange: binance, symbol: ETHUSDT, window: 5s, threshold: "0.01"}
  - {name: sol-sma-bars, type: sma_cross, exchange: binance, symbol: SOLUSDT, fast: 2, slow: 4, bars: 1s}
`

// walk is a random walk over three pairs, interleaved, with a repeated
// event time now and then (which live skips as replayed).
func walk(n int, seed int64) []tick.Tick {
	rng := rand.New(rand.NewSource(seed))
	prices := map[string]int{"BTCUSDT": 10000, "ETHUSDT": 10000, "SOLUSDT": 10000}
	var out []tick.Tick
	for i := 0; i < n; i++ {
		sym := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT"}[rng.Intn(3)]
		prices[sym] += rng.Intn(41) - 20
		at := time.Duration(i/2) * 100 * time.Millisecond
		out = append(out, tk("binance", sym, at, fmt.Sprintf("%d.%02d", prices[sym]/100, prices[sym]%100)))
	}
	return out
}

// The Backtester decides exactly the signals the live sink publishes, byte
// for byte, and ends with the same paper accounts, however the live ticks
// are batched.
func TestBacktesterDecidesAsTheSink(t *testing.T) {
	ticks := walk(3000, 1)
	cfg := parseConfig(t, allTypes)
	h := newHarness(t, cfg, nil)
	for i := 0; i < len(ticks); i += 97 {
		h.Write(ticks[i:min(i+97, len(ticks))]...)
	}
	var live [][]byte
	for _, r := range h.Bus.Records() {
		live = append(live, r.Value)
	}
	if len(live) < 20 {
		t.Fatalf("only %d live signals: the walk does not exercise the strategies", len(live))
	}

	b, err := NewBacktester(parseConfig(t, allTypes))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for i := range ticks {
		st, err := b.Tick(context.Background(), &ticks[i])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st.Signals {
			if b.Strategies()[r.Strategy].Name != r.Signal.Strategy {
				t.Fatalf("signal of %s reported for strategy %d", r.Signal.Strategy, r.Strategy)
			}
			v, _ := json.Marshal(r.Signal)
			got = append(got, v)
		}
	}
	if len(got) != len(live) {
		t.Fatalf("backtest decided %d signals, live published %d", len(got), len(live))
	}
	for i := range got {
		if string(got[i]) != string(live[i]) {
			t.Fatalf("signal %d:\n backtest %s\n live     %s", i, got[i], live[i])
		}
	}
	status := h.Sink.Strategies()
	for i := range status {
		var p Paper
		b.Paper(i, &p)
		if status[i].Paper.Position != p.Position.Text('f') || status[i].Paper.RealizedPnL != reduced(&p.Realized) || status[i].Paper.Fills != p.Fills {
			t.Errorf("%s: live paper %+v, backtest position %s realized %s fills %d", status[i].Name, status[i].Paper,
				p.Position.Text('f'), reduced(&p.Realized), p.Fills)
		}
	}
}

func TestBacktesterSkipsWhatLiveSkips(t *testing.T) {
	b, err := NewBacktester(parseConfig(t, allTypes))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		t       tick.Tick
		applied bool
		pair    int
	}{
		{tk("binance", "BTCUSDT", time.Second, "99"), true, 0},
		{tk("binance", "BTCUSDT", time.Second, "101"), false, 0},                     // same event time: replayed
		{tk("binance", "BTCUSDT", 0, "101"), false, 0},                               // older
		{tk("binance", "XRPUSDT", 0, "1"), false, -1},                                // nobody's pair
		{tick.Tick{Exchange: "binance", Symbol: "ETHUSDT", Timestamp: t0}, false, 1}, // invalid: no price
		{tk("binance", "BTCUSDT", 2*time.Second, "100"), true, 0},
	} {
		st, err := b.Tick(ctx, &c.t)
		if err != nil {
			t.Fatal(err)
		}
		if st.Applied != c.applied || (st.Applied && st.Pair != c.pair) {
			t.Errorf("%s@%d %s: applied %v pair %d, want %v %d", c.t.Key(), c.t.Timestamp-t0, c.t.Price.Text('f'), st.Applied, st.Pair, c.applied, c.pair)
		}
		if c.t.Price.Text('f') == "100" && (len(st.Signals) != 1 || st.Signals[0].Signal.Side != signal.Buy) {
			t.Errorf("crossing 100: signals %+v", st.Signals)
		}
	}
}
