package backtest

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/replay"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

func config(t *testing.T, src string) *strategy.Config {
	t.Helper()
	c := strategy.DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func source(ticks []tick.Tick) replay.Source {
	return replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		for i := range ticks {
			tk := ticks[i] // fn's tick is valid only during the call
			if err := fn(&tk); err != nil {
				return err
			}
		}
		return nil
	})
}

const crossing = `
strategies:
  - {name: cross, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "100", quantity: "2", allow_short: true}
  - {name: other, type: price_cross, exchange: binance, symbol: ETHUSDT, level: "10"}
`

// A known path gives known trades, PnL, drawdown, win rate and exposure.
func TestReportOnAKnownPath(t *testing.T) {
	T0 := testkit.T0
	ticks := testkit.Path("binance", "BTCUSDT", time.Second, "99", "100", "102", "98", "97", "101", "103")
	rep, _, err := Run(context.Background(), config(t, crossing), source(ticks), Options{Strategies: []string{"cross"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Strategies) != 1 || len(rep.Signals) != 3 || rep.First != T0 || rep.Last != T0+6000 || rep.Ticks != 7 {
		t.Fatalf("report %+v", rep)
	}
	s := rep.Strategies[0]
	wr := "0.0000"
	want := Strategy{
		Name: "cross", Type: "price_cross", Exchange: "binance", Symbol: "BTCUSDT", Quantity: "2", AllowShort: true,
		Params: map[string]string{"level": "100"}, Ticks: 7, Signals: 3, Fills: 5,
		Trades: 2, Wins: 0, Losses: 2, WinRate: &wr, RealizedPnL: "-10", UnrealizedPnL: "4", PnL: "-6",
		MaxDrawdown: "14", DrawdownPeak: T0 + 2000, DrawdownLow: T0 + 5000, Exposure: "0.8333", ExposureMs: 5000, Position: "2",
		TradeList: []Trade{
			{Side: "long", Quantity: "2", EntryAt: T0 + 1000, EntryPrice: "100", ExitAt: T0 + 3000, ExitPrice: "98", PnL: "-4"},
			{Side: "short", Quantity: "2", EntryAt: T0 + 3000, EntryPrice: "98", ExitAt: T0 + 5000, ExitPrice: "101", PnL: "-6"},
			{Side: "long", Quantity: "2", EntryAt: T0 + 5000, EntryPrice: "101", ExitAt: T0 + 6000, ExitPrice: "103", PnL: "4", Open: true},
		},
		Equity: []Point{{T0 + 1000, "0"}, {T0 + 3000, "-4"}, {T0 + 5000, "-10"}, {T0 + 6000, "-6"}},
	}
	s.state, s.idx, s.pair = stratState{}, 0, 0
	if !reflect.DeepEqual(*s, want) {
		got, _ := json.MarshalIndent(s, "", " ")
		t.Fatalf("strategy report:\n%s", got)
	}
	if len(rep.Pairs) != 1 || len(rep.Pairs[0].Bars) != 1 ||
		rep.Pairs[0].Bars[0] != (Bar{T: T0 - T0%60_000, Open: "99", High: "103", Low: "97", Close: "103"}) {
		t.Fatalf("pairs %+v", rep.Pairs)
	}
}

// The same ticks give the same report, byte for byte.
func TestReportIsDeterministic(t *testing.T) {
	var ticks []tick.Tick
	prices := []string{"9", "10", "11", "9.5", "10.5", "9"}
	for i := 0; i < 600; i++ {
		ticks = append(ticks,
			testkit.TickAt("binance", "BTCUSDT", time.Duration(i)*time.Second, []string{"99", "101", "100.5", "98"}[i%4]),
			testkit.TickAt("binance", "ETHUSDT", time.Duration(i)*time.Second+time.Millisecond, prices[i%len(prices)]))
	}
	enc := func() []byte {
		rep, _, err := Run(context.Background(), config(t, crossing), source(ticks), Options{Step: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := enc(), enc()
	if !bytes.Equal(a, b) {
		t.Fatal("two runs over the same ticks differ")
	}
	if !bytes.Contains(a, []byte(`"name":"other"`)) || bytes.Count(a, []byte(`"t":`)) < 100 {
		t.Fatalf("report lacks strategies or points: %.300s", a)
	}
}

func TestRunRejects(t *testing.T) {
	cfg := config(t, crossing)
	for _, o := range []Options{{Strategies: []string{"nope"}}, {Step: time.Millisecond}} {
		if _, _, err := Run(context.Background(), cfg, source(nil), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if _, _, err := Run(context.Background(), strategy.DefaultConfig(), source(nil), Options{}); err == nil {
		t.Error("no strategies: no error")
	}
}
