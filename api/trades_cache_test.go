package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/tick"
)

// topicTrades is the topic list's contract: every kept trade, any order.
type topicTrades []tick.Trade

func (l topicTrades) RecentTrades(ex, sym string) []tick.Trade {
	var out []tick.Trade
	for _, t := range l {
		if t.Exchange == ex && t.Symbol == sym {
			out = append(out, t)
		}
	}
	return out
}

// GET /api/v1/trades answers from the cache's recent trades (a real
// Redis, written by the cache's trade writer, a batch twice), newest
// first with since and limit, and from the topic list once Redis is down.
func TestRecentTradesFromCache(t *testing.T) {
	rds := testsvc.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := cache.DefaultConfig()
	cfg.Redis.Addrs = []string{rds.Addr()}
	cs, err := cache.New(sinks.Env{Name: "cache"}, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(context.Background())
	if err := cs.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	var trades []tick.Trade
	for i := range 8 {
		tr := trade("okx", "BTC-USDT", int64(1_767_000_000_000+i*1000))
		tr.ReceivedAt = tr.Timestamp*1000 + 5
		trades = append(trades, tr)
	}
	w := cs.TradeWriter()
	for _, b := range [][]tick.Trade{trades[:5], trades[:5], trades[5:]} {
		if err := w.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// The topic list has only the first three: which answered shows.
	srv := api.New(api.Options{TradeCache: cs, Trades: topicTrades(trades[:3])})
	get := func(query string) (string, []tick.Trade) {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/trades/okx/BTC-USDT"+query, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", query, rec.Code, rec.Body)
		}
		var body struct{ Data []tick.Trade }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return rec.Header().Get(api.SourceHeader), body.Data
	}
	ids := func(trs []tick.Trade) string {
		var s []string
		for _, t := range trs {
			s = append(s, fmt.Sprint((t.Timestamp-1_767_000_000_000)/1000))
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct{ query, source, want string }{
		{"", "cache", "7 6 5 4 3 2 1 0"},
		{"?limit=3", "cache", "7 6 5"},
		{fmt.Sprintf("?since=%d", 1_767_000_000_000+5000), "cache", "7 6 5"},
	} {
		src, got := get(c.query)
		if src != c.source || ids(got) != c.want {
			t.Errorf("GET %q: from %q: %s; want from %s: %s", c.query, src, ids(got), c.source, c.want)
		}
	}
	rds.Stop()
	if src, got := get(""); src != "topic" || ids(got) != "2 1 0" {
		t.Errorf("redis down: from %q: %s; want the topic list's 2 1 0", src, ids(got))
	}
}
