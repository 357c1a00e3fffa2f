package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/tick"
)

// fakeTrades is a trade history answering by the TradeHistory contract.
type fakeTrades struct {
	trades []tick.Trade // newest first
	err    error
	last   api.TickQuery
}

func (f *fakeTrades) Trades(_ context.Context, q api.TickQuery) ([]tick.Trade, error) {
	f.last = q
	if f.err != nil {
		return nil, f.err
	}
	var out []tick.Trade
	for _, t := range f.trades {
		switch {
		case t.Exchange != q.Exchange || t.Symbol != q.Symbol,
			!q.From.IsZero() && t.Timestamp < q.From.UnixMilli(),
			!q.To.IsZero() && t.Timestamp > q.To.UnixMilli(),
			q.Before != 0 && t.Timestamp >= q.Before:
			continue
		}
		if len(out) == q.Limit {
			break
		}
		out = append(out, t)
	}
	return out, nil
}

func trade(ex, sym string, ts int64) tick.Trade {
	return tick.Trade{Exchange: ex, Symbol: sym, Base: "BTC", Quote: "USD", Price: tick.MustDecimal("50100.10"),
		Size: tick.MustDecimal("0.00100000"), Side: tick.Sell, TradeID: fmt.Sprint(ts), Timestamp: ts}
}

type tradesData struct {
	Exchange, Symbol string
	Trades           []tick.Trade `json:"trades"`
	NextBefore       int64        `json:"next_before"`
}

// Stored trades over a range, paged backwards with next_before; Kraken's
// slashed symbol arrives escaped.
func TestTradeHistory(t *testing.T) {
	h := &fakeTrades{}
	for ts := int64(10); ts >= 1; ts-- {
		h.trades = append(h.trades, trade("kraken", "BTC/USD", ts*1000))
	}
	h.trades = append(h.trades, trade("okx", "BTC-USDT", 5000))
	e := &env{srv: api.New(api.Options{TradeHistory: h})}
	r := e.get(t, "/api/v1/trades/Kraken/btc%2Fusd/history?limit=4&from=2000&to=9000")
	if r.status != http.StatusOK || r.source != "store" {
		t.Fatalf("%d %q: %s", r.status, r.source, r.raw)
	}
	var d tradesData
	if err := json.Unmarshal(r.body.Data, &d); err != nil {
		t.Fatal(err)
	}
	if h.last.Exchange != "kraken" || h.last.Symbol != "BTC/USD" || h.last.Limit != 4 || h.last.From.UnixMilli() != 2000 || h.last.To.UnixMilli() != 9000 {
		t.Fatalf("query %+v", h.last)
	}
	var ids []string
	for _, tr := range d.Trades {
		ids = append(ids, tr.TradeID)
	}
	if strings.Join(ids, ",") != "9000,8000,7000,6000" || d.NextBefore != 6000 {
		t.Fatalf("page %v next_before %d", ids, d.NextBefore)
	}
	if !strings.Contains(r.raw, `"price":"50100.10","size":"0.00100000","side":"sell"`) {
		t.Errorf("trade not exact: %s", r.raw)
	}
	r = e.get(t, fmt.Sprintf("/api/v1/trades/kraken/BTC%%2FUSD/history?limit=4&from=2000&to=9000&before=%d", d.NextBefore))
	if err := json.Unmarshal(r.body.Data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Trades) != 4 || d.Trades[0].TradeID != "5000" || d.Trades[3].TradeID != "2000" {
		t.Fatalf("second page %+v", d.Trades)
	}
	r = e.get(t, "/api/v1/trades/okx/BTC-USDT/history")
	d = tradesData{}
	if err := json.Unmarshal(r.body.Data, &d); err != nil || len(d.Trades) != 1 || d.NextBefore != 0 || h.last.Limit != api.DefaultTicksLimit {
		t.Fatalf("okx: %v %+v (limit asked %d)", err, d, h.last.Limit)
	}
}

func TestTradeHistoryErrors(t *testing.T) {
	e := &env{srv: api.New(api.Options{TradeHistory: &fakeTrades{}})}
	for target, code := range map[string]string{
		"/api/v1/trades/ok%24x/BTC-USDT/history":             "invalid_exchange",
		"/api/v1/trades/okx/BTC%20USDT/history":              "invalid_symbol",
		"/api/v1/trades/okx/BTC-USDT/history?limit=0":        "invalid_limit",
		"/api/v1/trades/okx/BTC-USDT/history?limit=1001":     "invalid_limit",
		"/api/v1/trades/okx/BTC-USDT/history?from=yesterday": "invalid_from",
		"/api/v1/trades/okx/BTC-USDT/history?to=-5":          "invalid_to",
		"/api/v1/trades/okx/BTC-USDT/history?from=9&to=8":    "invalid_range",
		"/api/v1/trades/okx/BTC-USDT/history?before=x":       "invalid_before",
	} {
		e.get(t, target).wantError(t, http.StatusBadRequest, code)
	}
	none := &env{srv: api.New(api.Options{})}
	none.get(t, "/api/v1/trades/okx/BTC-USDT/history").wantError(t, http.StatusServiceUnavailable, "unavailable")
	down := &env{srv: api.New(api.Options{TradeHistory: &fakeTrades{err: errDown}})}
	r := down.get(t, "/api/v1/trades/okx/BTC-USDT/history")
	r.wantError(t, http.StatusServiceUnavailable, "unavailable")
	if !strings.Contains(r.raw, errDown.Error()) {
		t.Errorf("the store's failure is not named: %s", r.raw)
	}
}
