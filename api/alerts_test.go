package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/risk"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

// The alert and signal endpoints run against the real risk and strategy
// sinks, with a bus that accepts everything.

type nopBus struct{}

func (nopBus) Publish(context.Context, string, []byte, []byte) error { return nil }

const e0 = int64(1_767_323_045_000) // 2026-01-02T03:04:05Z

func px(ex, sym string, at int64, price, bid, ask string) tick.Tick {
	t := tick.Tick{Exchange: ex, Symbol: sym, Timestamp: at, Price: tick.MustDecimal(price)}
	if bid != "" {
		t.Bid, t.Ask = tick.MustDecimal(bid), tick.MustDecimal(ask)
	}
	return t
}

func riskEnv(t *testing.T) *env {
	t.Helper()
	s, err := risk.New(sinks.Env{Name: "risk", Publisher: nopBus{}}, risk.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(ctx, []tick.Tick{
		px("binance", "BTCUSDT", e0, "100", "", ""),
		px("binance", "BTCUSDT", e0+1000, "106", "", ""),      // volatility: warning
		px("binance", "ETHUSDT", e0+2000, "10", "10.1", "10"), // crossed book: critical
		px("binance", "ETHUSDT", e0+3000, "10", "9.9", "10"),  // resolved
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: api.New(api.Options{Alerts: s})}
}

func alertsOf(t *testing.T, r response) []alert.Alert {
	t.Helper()
	var as []alert.Alert
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if err := json.Unmarshal(r.body.Data, &as); err != nil {
		t.Fatalf("data is not alerts: %v\n%s", err, r.raw)
	}
	return as
}

func TestAlerts(t *testing.T) {
	e := riskEnv(t)
	tests := []struct {
		target string
		want   []string // rule/status, newest first
	}{
		{"/api/v1/alerts", []string{"crossed_book/resolved", "crossed_book/firing", "price_volatility/firing"}},
		{"/api/v1/alerts?severity=critical", []string{"crossed_book/resolved", "crossed_book/firing"}},
		{"/api/v1/alerts?severity=warning&limit=1", []string{"crossed_book/resolved"}},
		{"/api/v1/alerts?since=1767323047000", []string{"crossed_book/resolved", "crossed_book/firing"}},
		{"/api/v1/alerts?since=2026-01-02T03:04:08Z", []string{"crossed_book/resolved"}},
		{"/api/v1/alerts?since=2027-01-01T00:00:00Z", []string{}},
	}
	for _, tt := range tests {
		got := []string{}
		for _, a := range alertsOf(t, e.get(t, tt.target)) {
			got = append(got, a.Rule+"/"+string(a.Status))
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.target, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v", tt.target, got, tt.want)
				break
			}
		}
	}
	a := alertsOf(t, e.get(t, "/api/v1/alerts?severity=warning"))
	if v := a[len(a)-1]; v.ChangePercent != "6" || v.FromPrice != "100" || v.ToPrice != "106" || v.Window != "5m0s" {
		t.Errorf("volatility alert %+v", v)
	}
}

func TestAlertsBadParams(t *testing.T) {
	e := riskEnv(t)
	for target, code := range map[string]string{
		"/api/v1/alerts?severity=loud":   "invalid_severity",
		"/api/v1/alerts?since=yesterday": "invalid_since",
		"/api/v1/alerts?since=-5":        "invalid_since",
		"/api/v1/alerts?limit=0":         "invalid_limit",
		"/api/v1/alerts?limit=1001":      "invalid_limit",
		"/api/v1/alerts?limit=x":         "invalid_limit",
	} {
		e.get(t, target).wantError(t, http.StatusBadRequest, code)
	}
	none := &env{srv: api.New(api.Options{})}
	none.get(t, "/api/v1/alerts").wantError(t, http.StatusServiceUnavailable, "unavailable")
}

func strategyEnv(t *testing.T) *env {
	t.Helper()
	var cfg strategy.Config = *strategy.DefaultConfig()
	src := `
strategies:
  - {name: btc-up, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "100", direction: up}
  - {name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, fast: 2, slow: 3}
`
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	s, err := strategy.New(sinks.Env{Name: "strategy", Publisher: nopBus{}}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	batch := []tick.Tick{
		px("binance", "BTCUSDT", e0, "99", "", ""),
		px("binance", "BTCUSDT", e0+1000, "101", "", ""), // buy
		px("binance", "BTCUSDT", e0+2000, "98", "", ""),
		px("binance", "BTCUSDT", e0+3000, "100", "", ""), // buy
	}
	// WriteBatch refuses until Run has the pool going; retry as the
	// runtime would.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.WriteBatch(ctx, batch)
		if err == nil {
			break
		}
		if !errors.Is(err, sinks.ErrNotConnected) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	return &env{srv: api.New(api.Options{Signals: s})}
}

func TestSignalsAndStrategies(t *testing.T) {
	e := strategyEnv(t)
	var sigs []signal.Signal
	r := e.get(t, "/api/v1/signals?strategy=btc-up")
	if err := json.Unmarshal(r.body.Data, &sigs); err != nil || r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if len(sigs) != 2 || sigs[0].Price != "100" || sigs[1].Price != "101" || sigs[0].Side != signal.Buy {
		t.Fatalf("signals %+v", sigs)
	}
	r = e.get(t, "/api/v1/signals?strategy=eth-sma")
	if err := json.Unmarshal(r.body.Data, &sigs); err != nil || len(sigs) != 0 {
		t.Fatalf("eth-sma signals %s", r.raw)
	}
	r = e.get(t, "/api/v1/signals?since=1767323048000&limit=5")
	if err := json.Unmarshal(r.body.Data, &sigs); err != nil || len(sigs) != 1 {
		t.Fatalf("since: %s", r.raw)
	}

	var sts []signal.StrategyStatus
	r = e.get(t, "/api/v1/strategies")
	if err := json.Unmarshal(r.body.Data, &sts); err != nil || r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if len(sts) != 2 || sts[0].Name != "btc-up" || sts[0].Params["level"] != "100" || sts[0].Signals != 2 ||
		sts[0].Paper.Position != "1" || sts[0].Paper.EntryPrice != "101" || sts[0].Paper.UnrealizedPnL != "-1" || sts[1].Type != "sma_cross" {
		t.Fatalf("strategies %s", r.raw)
	}

	e.get(t, "/api/v1/signals?strategy=nope").wantError(t, http.StatusNotFound, "strategy_not_found")
	e.get(t, "/api/v1/signals?limit=0").wantError(t, http.StatusBadRequest, "invalid_limit")
	e.get(t, "/api/v1/signals?since=soon").wantError(t, http.StatusBadRequest, "invalid_since")
	none := &env{srv: api.New(api.Options{})}
	none.get(t, "/api/v1/signals").wantError(t, http.StatusServiceUnavailable, "unavailable")
	none.get(t, "/api/v1/strategies").wantError(t, http.StatusServiceUnavailable, "unavailable")
}
