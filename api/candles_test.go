package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/tick"
)

// recordingCandles is a CandleReader that records the query it was given.
type recordingCandles struct {
	mu   sync.Mutex
	last tick.CandleQuery
	out  []tick.Candle
	err  error
}

func (r *recordingCandles) Candles(_ context.Context, q tick.CandleQuery) ([]tick.Candle, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = q
	return r.out, r.err
}

type candlesResponse struct {
	Success bool `json:"success"`
	Data    struct {
		Exchange, Symbol, Interval string
		From, To                   int64
		Candles                    []struct {
			Start                  int64
			Open, High, Low, Close string
			Ticks                  uint64
			Volume                 *string // nil when absent
			Trades                 uint64
		}
		Source      string
		Partial     bool
		Unavailable []struct{ Layer, Error string }
	} `json:"data"`
	header string                          // the source header
	Error  *struct{ Code, Message string } `json:"error"`
}

func getCandles(t *testing.T, srv *api.Server, target string) (int, candlesResponse) {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	var body candlesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: %d, not the envelope: %s", target, rec.Code, rec.Body)
	}
	body.header = rec.Header().Get(api.SourceHeader)
	return rec.Code, body
}

func TestCandlesQueryParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	ms := func(s string) time.Time {
		tt, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	for _, tc := range []struct {
		name     string
		query    string
		status   int
		code     string // error code when status != 200
		interval time.Duration
		from, to time.Time
	}{
		{"defaults: 1m, 500 buckets up to the end of the current one", "", 200, "", time.Minute,
			ms("2026-01-01T18:45:00Z"), ms("2026-01-02T03:05:00Z")},
		{"rfc3339 widened to whole buckets", "?interval=5m&from=2026-01-01T10:02:00Z&to=2026-01-01T10:21:00Z", 200, "", 5 * time.Minute,
			ms("2026-01-01T10:00:00Z"), ms("2026-01-01T10:25:00Z")},
		{"unix ms on boundaries stay", "?interval=1h&from=1767225600000&to=1767229200000", 200, "", time.Hour,
			time.UnixMilli(1767225600000), time.UnixMilli(1767229200000)},
		{"1d aligned to UTC midnight", "?interval=1d&from=2026-01-01T23:00:00%2B02:00&to=2026-01-02T01:00:00Z", 200, "", 24 * time.Hour,
			ms("2026-01-01T00:00:00Z"), ms("2026-01-03T00:00:00Z")},
		{"15m", "?interval=15m&to=2026-01-01T00:00:00Z&from=2025-12-31T23:00:00Z", 200, "", 15 * time.Minute,
			ms("2025-12-31T23:00:00Z"), ms("2026-01-01T00:00:00Z")},
		{"bad interval", "?interval=2m", 400, "invalid_interval", 0, time.Time{}, time.Time{}},
		{"interval case matters", "?interval=1H", 400, "invalid_interval", 0, time.Time{}, time.Time{}},
		{"bad from", "?from=yesterday", 400, "invalid_from", 0, time.Time{}, time.Time{}},
		{"bad to", "?to=-5", 400, "invalid_to", 0, time.Time{}, time.Time{}},
		{"from after to", "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "invalid_range", 0, time.Time{}, time.Time{}},
		{"same bucket is not empty", "?from=2026-01-01T00:00:10Z&to=2026-01-01T00:00:20Z", 200, "", time.Minute,
			ms("2026-01-01T00:00:00Z"), ms("2026-01-01T00:01:00Z")},
		{"too many buckets", "?interval=1m&from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "invalid_range", 0, time.Time{}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &recordingCandles{}
			srv := api.New(api.Options{Clock: clock.NewFake(now), Candles: rc})
			status, body := getCandles(t, srv, "/api/v1/candles/Binance/btcusdt"+tc.query)
			if status != tc.status {
				t.Fatalf("status %d, want %d (%+v)", status, tc.status, body.Error)
			}
			if tc.status != 200 {
				if body.Success || body.Error == nil || body.Error.Code != tc.code {
					t.Fatalf("error %+v, want code %s", body.Error, tc.code)
				}
				return
			}
			q := rc.last
			if q.Exchange != "binance" || q.Symbol != "BTCUSDT" || q.Interval != tc.interval || !q.From.Equal(tc.from) || !q.To.Equal(tc.to) {
				t.Fatalf("query %+v, want %s %s..%s", q, tc.interval, tc.from, tc.to)
			}
			if body.Data.From != tc.from.UnixMilli() || body.Data.To != tc.to.UnixMilli() || body.Data.Candles == nil {
				t.Fatalf("page %+v", body.Data)
			}
		})
	}
}

func TestCandlesUnavailable(t *testing.T) {
	status, body := getCandles(t, api.New(api.Options{}), "/api/v1/candles/binance/BTCUSDT")
	if status != http.StatusServiceUnavailable || body.Error == nil || body.Error.Code != "unavailable" ||
		!strings.Contains(body.Error.Message, "cache: not configured; store: not configured") {
		t.Fatalf("neither configured: %d %+v", status, body.Error)
	}
	rc := &recordingCandles{err: errors.New("clickhouse unreachable (test)")}
	status, body = getCandles(t, api.New(api.Options{Candles: rc}), "/api/v1/candles/binance/BTCUSDT")
	if status != http.StatusServiceUnavailable || !strings.Contains(body.Error.Message, "clickhouse unreachable") {
		t.Fatalf("store down: %d %+v", status, body.Error)
	}
}

// TestCandlesAndTicksFromClickHouse runs the API against the real store
// sink on a real ClickHouse: candles are computed there, and with no cache
// configured the tick endpoints fall back to it.
func TestCandlesAndTicksFromClickHouse(t *testing.T) {
	ch := testsvc.StartClickHouse(t)
	cfg := store.DefaultConfig()
	cfg.ClickHouse.URL, cfg.ClickHouse.Database = ch.HTTPURL(), "api_test"
	s, err := store.New(sinks.Env{Name: "store"}, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	mkT := func(offset time.Duration, price string) tick.Tick {
		tk := tick.Tick{Exchange: "binance", Symbol: "BTCUSDT", Timestamp: base + offset.Milliseconds(),
			ReceivedAt: (base + offset.Milliseconds()) * 1000, Price: tick.MustDecimal(price)}
		tk.Bid, tk.Ask, tk.Volume = tk.Price, tk.Price, tick.MustDecimal("10")
		return tk
	}
	ticks := []tick.Tick{
		mkT(0, "50100.00"), mkT(30*time.Second, "50200.5"), mkT(59*time.Second, "50000.12345678"),
		// 10:01 empty
		mkT(2*time.Minute, "49999.99"), mkT(2*time.Minute+time.Second, "0.00000001"),
	}
	// Written twice: a replay must not show in any answer.
	for range 2 {
		if err := s.WriteBatch(ctx, ticks); err != nil {
			t.Fatal(err)
		}
	}
	srv := api.New(api.Options{Candles: s, History: s})
	status, body := getCandles(t, srv, "/api/v1/candles/binance/BTCUSDT?interval=1m&from=2026-01-02T10:00:00Z&to=2026-01-02T10:03:00Z")
	if status != 200 {
		t.Fatalf("candles: %d %+v", status, body.Error)
	}
	type c struct {
		start                  int64
		open, high, low, close string
		ticks                  uint64
	}
	var got []c
	for _, k := range body.Data.Candles {
		got = append(got, c{k.Start, k.Open, k.High, k.Low, k.Close, k.Ticks})
	}
	want := []c{
		{base, "50100.00", "50200.5", "50000.12345678", "50000.12345678", 3},
		{base + 120_000, "49999.99", "49999.99", "0.00000001", "0.00000001", 2},
	}
	if len(got) != len(want) {
		t.Fatalf("candles %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("candle %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// The tick endpoints with no cache: answered by the store, each once.
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/ticks/binance/BTCUSDT?limit=10", nil))
	var page struct {
		Data struct {
			Ticks []tick.Tick `json:"ticks"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
		t.Fatalf("ticks: %d %s", rec.Code, rec.Body)
	}
	if len(page.Data.Ticks) != len(ticks) {
		t.Fatalf("ticks page has %d, want %d: %s", len(page.Data.Ticks), len(ticks), rec.Body)
	}
	for i, tk := range page.Data.Ticks {
		w := ticks[len(ticks)-1-i]
		if tk.Timestamp != w.Timestamp || tk.Price.Cmp(&w.Price) != 0 {
			t.Errorf("tick %d = %d %s, want %d %s", i, tk.Timestamp, tk.Price.String(), w.Timestamp, w.Price.String())
		}
	}
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/tick/binance/BTCUSDT", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"price":"0.00000001"`) {
		t.Fatalf("latest tick: %d %s", rec.Code, rec.Body)
	}
}

// TestCandlesFromCacheAndStore runs the candles endpoint against the real
// cache sink on a real Redis and the real store sink on a real ClickHouse.
// The store has every tick; the cache started mid-bucket, so its first
// bucket is short. The answer is the store's before the cache's coverage
// and the cache's from the next bucket boundary on, and it equals the
// store's own answer over the same ticks; with one backend down the other
// answers and the source says which.
func TestCandlesFromCacheAndStore(t *testing.T) {
	rds := testsvc.StartRedis(t)
	ch := testsvc.StartClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	scfg := store.DefaultConfig()
	scfg.ClickHouse.URL, scfg.ClickHouse.Database = ch.HTTPURL(), "api_candles_test"
	st, err := store.New(sinks.Env{Name: "store"}, *scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	if err := st.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	ccfg := cache.DefaultConfig()
	ccfg.Redis.Addrs = []string{rds.Addr()}
	cs, err := cache.New(sinks.Env{Name: "cache"}, *ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(context.Background())
	if err := cs.Connect(ctx); err != nil {
		t.Fatal(err)
	}

	// Ten minutes of a pair, seven ticks a minute, prices of mixed scales.
	base := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	var all []tick.Tick
	for i := range 70 {
		ts := base + int64(i)*60_000/7 + int64(i%3)
		price := fmt.Sprintf("%d.%0*d", 50000+(i*37)%200-(i*11)%90, 1+i%3, (i*7)%10)
		tk := tick.Tick{Exchange: "binance", Symbol: "BTCUSDT", Timestamp: ts, ReceivedAt: ts*1000 + 7,
			Price: tick.MustDecimal(price), Volume: tick.MustDecimal("10")}
		tk.Bid, tk.Ask = tk.Price, tk.Price
		all = append(all, tk)
	}
	if err := st.WriteBatch(ctx, all); err != nil {
		t.Fatal(err)
	}
	cacheFrom := base + 3*60_000 + 30_000 // the cache started at 10:03:30
	var late []tick.Tick
	for _, tk := range all {
		if tk.Timestamp >= cacheFrom {
			late = append(late, tk)
		}
	}
	// In several batches, one of them twice (a retry); all of it again
	// is a replay, which changes nothing.
	writeCache := func() error {
		for i := 0; i < len(late); i += 9 {
			b := late[i:min(i+9, len(late))]
			if err := cs.WriteBatch(ctx, b); err != nil {
				return err
			}
			if i == 18 {
				if err := cs.WriteBatch(ctx, b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := writeCache(); err != nil {
		t.Fatal(err)
	}
	// Trades for the first eight minutes only: the last two buckets must
	// show no volume rather than 0. The store has them all (twice), the
	// cache those from its start (one batch twice).
	var trades, lateTrades []tick.Trade
	for i := range 8 * 13 {
		ts := base + int64(i)*60_000/13
		tr := tick.Trade{Exchange: "binance", Symbol: "BTCUSDT", TradeID: fmt.Sprint(7_000_000 + i), Timestamp: ts,
			ReceivedAt: ts*1000 + 11, Side: tick.Buy, Price: tick.MustDecimal("50000"),
			Size: tick.MustDecimal(fmt.Sprintf("%d.%0*d", 1+i%3, 1+i%7, (i*7919)%10_000_000))}
		trades = append(trades, tr)
		if ts >= cacheFrom {
			lateTrades = append(lateTrades, tr)
		}
	}
	stw := st.TradeWriter()
	if err := stw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := stw.WriteBatch(ctx, trades); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]tick.Trade{lateTrades[:20], lateTrades[:20], lateTrades[20:]} {
		if err := cs.TradeWriter().WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	both := api.New(api.Options{Candles: st, CandleCache: cs})
	storeOnly := api.New(api.Options{Candles: st})
	cacheOnly := api.New(api.Options{CandleCache: cs})
	render := func(b candlesResponse) string {
		var sb strings.Builder
		for _, k := range b.Data.Candles {
			v := "-"
			if k.Volume != nil {
				v = fmt.Sprintf("%s/%d", *k.Volume, k.Trades)
			}
			fmt.Fprintf(&sb, "%d:%s/%s/%s/%s/%d/%s ", (k.Start-base)/60_000, k.Open, k.High, k.Low, k.Close, k.Ticks, v)
		}
		return sb.String()
	}
	get := func(srv *api.Server, iv string) candlesResponse {
		t.Helper()
		target := "/api/v1/candles/binance/BTCUSDT?interval=" + iv + "&from=2026-01-02T10:00:00Z&to=2026-01-02T10:10:00Z"
		status, body := getCandles(t, srv, target)
		if status != 200 {
			t.Fatalf("GET %s: %d %+v", target, status, body.Error)
		}
		if body.header != body.Data.Source {
			t.Errorf("source header %q, body source %q", body.header, body.Data.Source)
		}
		return body
	}
	for _, iv := range []string{"1m", "5m", "15m"} {
		want := render(get(storeOnly, iv))
		got := get(both, iv)
		wantSource := "cache+store"
		if iv == "15m" { // one bucket, starting before the cache's coverage
			wantSource = "store"
		}
		if render(got) != want || got.Data.Source != wantSource || got.Data.Partial {
			t.Errorf("%s from cache and store (source %s, partial %v):\n  %s\nwant the store's (source %s):\n  %s",
				iv, got.Data.Source, got.Data.Partial, render(got), wantSource, want)
		}
	}
	// The cache alone: the same buckets from 10:04 on, and its short first
	// bucket (10:03, from 10:03:30) since nothing better is configured.
	full, short := get(storeOnly, "1m"), get(cacheOnly, "1m")
	for i, k := range full.Data.Candles {
		if hasVol := k.Volume != nil; hasVol != (i < 8) || (hasVol && k.Trades != 13) {
			t.Errorf("store bucket %d: volume %q over %d trades; want 13 trades in buckets 0-7 and no volume after", i, deref(k.Volume), k.Trades)
		}
	}
	if got := short.Data.Source; got != "cache" {
		t.Errorf("cache only: source %q", got)
	}
	if len(short.Data.Candles) != 7 || render(short)[strings.Index(render(short), "4:"):] != render(full)[strings.Index(render(full), "4:"):] {
		t.Errorf("cache only:\n  %s\nwant from 4: as the store's\n  %s", render(short), render(full))
	}
	if k := short.Data.Candles[0]; k.Start != base+3*60_000 || k.Ticks >= full.Data.Candles[3].Ticks {
		t.Errorf("cache's first bucket %+v, want 10:03 with fewer ticks than the store's %d", k, full.Data.Candles[3].Ticks)
	}

	// Redis down: the store answers everything.
	rds.Stop()
	if got := get(both, "1m"); got.Data.Source != "store" || render(got) != render(full) {
		t.Errorf("redis down: source %s\n  %s\nwant store\n  %s", got.Data.Source, render(got), render(full))
	}
	// Redis back (empty) and refilled; then ClickHouse down: the cache
	// answers what it has, flagged partial, naming the store.
	rds.Restart()
	// The runtime retries a failed batch; so does this.
	testkit.Eventually(t, 10*time.Second, "the cache refilled", func() bool { return writeCache() == nil })
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	got := get(both, "1m")
	if got.Data.Source != "cache" || !got.Data.Partial || len(got.Data.Unavailable) != 1 ||
		got.Data.Unavailable[0].Layer != "store" || render(got) != render(short) {
		t.Errorf("clickhouse down: %+v\n  %s\nwant the cache's, partial\n  %s", got.Data, render(got), render(short))
	}
	// Both down: a 503 naming both.
	rds.Stop()
	status, body := getCandles(t, both, "/api/v1/candles/binance/BTCUSDT?interval=1m&from=2026-01-02T10:00:00Z&to=2026-01-02T10:10:00Z")
	if status != http.StatusServiceUnavailable || body.Error == nil ||
		!strings.Contains(body.Error.Message, "cache: ") || !strings.Contains(body.Error.Message, "store: ") {
		t.Errorf("both down: %d %+v", status, body.Error)
	}
}

// fakeCandleCache answers every query with the same window.
type fakeCandleCache struct {
	w   tick.CandleWindow
	err error
}

func (f *fakeCandleCache) RecentCandles(_ context.Context, q tick.CandleQuery) (tick.CandleWindow, error) {
	return f.w, f.err
}

// TestCandlesLayers is the split between the cache and the store, and the
// fallbacks, with readers that answer as told.
func TestCandlesLayers(t *testing.T) {
	h := func(hh int) time.Time { return time.Date(2026, 1, 2, hh, 0, 0, 0, time.UTC) }
	candle := func(start time.Time, close string) tick.Candle {
		c := tick.Candle{Start: start, Ticks: 1}
		c.Open, c.High, c.Low, c.Close = tick.MustDecimal(close), tick.MustDecimal(close), tick.MustDecimal(close), tick.MustDecimal(close)
		return c
	}
	// The cache saw the pair from 10:20 on: its 10:00 hour is short.
	cached := []tick.Candle{candle(h(10), "100"), candle(h(11), "11"), candle(h(12), "12")}
	stored := []tick.Candle{candle(h(9), "9"), candle(h(10), "10")}
	since := h(10).Add(20 * time.Minute).UnixMilli()
	const target = "/api/v1/candles/binance/BTCUSDT?interval=1h&from=2026-01-02T09:00:00Z&to=2026-01-02T13:00:00Z"
	for _, tc := range []struct {
		name      string
		cache     api.CandleCache
		store     *recordingCandles
		status    int
		closes    string // the answer's closes, in order
		source    string
		partial   bool
		storeTo   time.Time // the store's query end; zero: not asked
		errSubstr string
	}{
		{name: "split at the hour after the cache's coverage", cache: &fakeCandleCache{w: tick.CandleWindow{Candles: cached, Since: since}},
			store: &recordingCandles{out: stored}, status: 200, closes: "9 10 11 12", source: "cache+store", storeTo: h(11)},
		{name: "the cache covers the range: no store read", cache: &fakeCandleCache{w: tick.CandleWindow{Candles: cached, Since: h(9).UnixMilli()}},
			store: &recordingCandles{out: stored}, status: 200, closes: "100 11 12", source: "cache"},
		{name: "the cache holds nothing for the pair", cache: &fakeCandleCache{},
			store: &recordingCandles{out: stored}, status: 200, closes: "9 10", source: "store", storeTo: h(13)},
		{name: "cache down: the store answers all", cache: &fakeCandleCache{err: errors.New("redis down (test)")},
			store: &recordingCandles{out: stored}, status: 200, closes: "9 10", source: "store", storeTo: h(13)},
		{name: "store down: the cache's, short first bucket and all, partial", cache: &fakeCandleCache{w: tick.CandleWindow{Candles: cached, Since: since}},
			store: &recordingCandles{err: errors.New("clickhouse down (test)")}, status: 200, closes: "100 11 12", source: "cache", partial: true, storeTo: h(11)},
		{name: "no store configured: the cache's, not partial", cache: &fakeCandleCache{w: tick.CandleWindow{Candles: cached, Since: since}},
			status: 200, closes: "100 11 12", source: "cache"},
		{name: "both down", cache: &fakeCandleCache{err: errors.New("redis down (test)")},
			store: &recordingCandles{err: errors.New("clickhouse down (test)")}, status: 503, errSubstr: "cache: redis down (test); store: clickhouse down (test)", storeTo: h(13)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := api.Options{CandleCache: tc.cache}
			if tc.store != nil {
				opts.Candles = tc.store
			}
			status, body := getCandles(t, api.New(opts), target)
			if status != tc.status {
				t.Fatalf("status %d, want %d (%+v)", status, tc.status, body.Error)
			}
			if tc.status != 200 {
				if !strings.Contains(body.Error.Message, tc.errSubstr) {
					t.Errorf("error %q, want it to contain %q", body.Error.Message, tc.errSubstr)
				}
			} else {
				var closes []string
				for _, k := range body.Data.Candles {
					closes = append(closes, k.Close)
				}
				if got := strings.Join(closes, " "); got != tc.closes || body.Data.Source != tc.source || body.header != tc.source || body.Data.Partial != tc.partial {
					t.Errorf("closes %q source %q (header %q) partial %v; want %q %q %v", got, body.Data.Source, body.header, body.Data.Partial, tc.closes, tc.source, tc.partial)
				}
			}
			if tc.store != nil {
				if got := tc.store.last.To; !got.Equal(tc.storeTo) {
					t.Errorf("store asked up to %v, want %v (zero: not asked)", got, tc.storeTo)
				}
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "(absent)"
	}
	return *s
}
