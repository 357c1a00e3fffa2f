package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/tick"
)

// The handlers run against the real cache sink (in-process backend) and a
// small in-test history standing in for the store; both can be switched
// off to exercise the fallback chain.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	srv   *api.Server
	cache *flakyCache
	store *fakeStore
	clk   *clock.Fake
}

type envOpt struct {
	noCache, noStore bool
	history          int
}

func newEnv(t *testing.T, o envOpt) *env {
	t.Helper()
	clk := clock.NewFake(t0)
	cfg := cache.DefaultConfig()
	if o.history > 0 {
		cfg.History = o.history
	}
	sink, err := cache.New(sinks.Env{Name: "cache", Clock: clk}, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &env{cache: &flakyCache{Sink: sink}, store: &fakeStore{}, clk: clk}
	opts := api.Options{Clock: clk}
	if !o.noCache {
		opts.Cache = e.cache
	}
	if !o.noStore {
		opts.History = e.store
	}
	e.srv = api.New(opts)
	return e
}

type response struct {
	status int
	source string
	body   struct {
		Success bool            `json:"success"`
		Data    json.RawMessage `json:"data"`
		Error   *struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
	raw string
}

func (e *env) do(t *testing.T, method, target string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	r := response{status: rec.Code, source: rec.Header().Get(api.SourceHeader), raw: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v\n%s", method, target, err, r.raw)
	}
	if r.body.Success != (r.status == http.StatusOK) {
		t.Errorf("%s %s: status %d with success=%v", method, target, r.status, r.body.Success)
	}
	return r
}

func (e *env) get(t *testing.T, target string) response {
	t.Helper()
	return e.do(t, http.MethodGet, target)
}

func (r response) tick(t *testing.T) tick.Tick {
	t.Helper()
	var tk tick.Tick
	if err := tick.Unmarshal(r.body.Data, &tk); err != nil {
		t.Fatalf("data is not a tick: %v\n%s", err, r.raw)
	}
	return tk
}

type page struct {
	Ticks       []tick.Tick `json:"ticks"`
	Source      string      `json:"source"`
	NextBefore  int64       `json:"next_before"`
	Partial     bool        `json:"partial"`
	Unavailable []struct {
		Layer string `json:"layer"`
	} `json:"unavailable"`
}

func (r response) page(t *testing.T) page {
	t.Helper()
	var p page
	if err := json.Unmarshal(r.body.Data, &p); err != nil {
		t.Fatalf("data is not a page: %v\n%s", err, r.raw)
	}
	return p
}

func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body.Error == nil || r.body.Error.Code != code {
		t.Errorf("got %d %s, want %d with error code %q", r.status, r.raw, status, code)
	}
}

// wantFailedLayers checks an unavailable answer names exactly the layers
// (comma-separated, in order) that failed, each with its reason.
func (r response) wantFailedLayers(t *testing.T, layers string) {
	t.Helper()
	var d struct {
		Layers []struct{ Layer, Error string } `json:"layers"`
	}
	if err := json.Unmarshal(r.body.Error.Details, &d); err != nil {
		t.Fatalf("details: %v: %s", err, r.raw)
	}
	var names []string
	for _, l := range d.Layers {
		names = append(names, l.Layer)
		if l.Error == "" {
			t.Errorf("layer %s failed without a reason", l.Layer)
		}
	}
	if strings.Join(names, ",") != layers {
		t.Errorf("failed layers = %v, want %s (%s)", names, layers, r.raw)
	}
}

func mk(ex, sym string, ts int64, price string) tick.Tick {
	return tick.Tick{Exchange: ex, Symbol: sym, Timestamp: ts, Price: tick.MustDecimal(price),
		Volume: tick.MustDecimal("1"), Bid: tick.MustDecimal(price), Ask: tick.MustDecimal(price)}
}

func TestTickFromCacheNormalizesNames(t *testing.T) {
	e := newEnv(t, envOpt{})
	in := mk("binance", "BTCUSDT", 1000, "50100.00")
	e.write(t, in)
	for _, path := range []string{"/api/v1/tick/binance/BTCUSDT", "/api/v1/tick/BINANCE/btcusdt", "/api/v1/tick/Binance/BtcUsdt"} {
		r := e.get(t, path)
		if r.status != http.StatusOK || r.source != "cache" {
			t.Fatalf("%s: %d source %q: %s", path, r.status, r.source, r.raw)
		}
		if got := r.tick(t); string(got.AppendJSON(nil)) != string(in.AppendJSON(nil)) {
			t.Errorf("%s: got %s", path, r.raw)
		}
	}
	if !strings.Contains(e.get(t, "/api/v1/tick/binance/BTCUSDT").raw, `"price":"50100.00"`) {
		t.Error("price not exact in the response")
	}
}

func TestTickFallsBackToStoreAndRepopulates(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.store.add(mk("binance", "BTCUSDT", 1000, "1"), mk("binance", "BTCUSDT", 2000, "2"))
	r := e.get(t, "/api/v1/tick/binance/btcusdt")
	if r.status != http.StatusOK || r.source != "store" || r.tick(t).Timestamp != 2000 {
		t.Fatalf("got %d source %q: %s", r.status, r.source, r.raw)
	}
	r = e.get(t, "/api/v1/tick/binance/btcusdt")
	if r.status != http.StatusOK || r.source != "cache" || r.tick(t).Timestamp != 2000 {
		t.Errorf("second read: %d source %q (want the re-populated cache): %s", r.status, r.source, r.raw)
	}
	// Cache down: the store answers.
	e.cache.fail(true)
	r = e.get(t, "/api/v1/tick/binance/btcusdt")
	if r.status != http.StatusOK || r.source != "store" {
		t.Errorf("cache down: %d source %q: %s", r.status, r.source, r.raw)
	}
}

func TestTickNotFoundAndUnavailable(t *testing.T) {
	for _, c := range []struct {
		name               string
		opt                envOpt
		cacheDown, storeDn bool
		status             int
		code               string
		layers             string // failed layers listed in a 503
	}{
		{name: "both layers miss", status: 404, code: "pair_not_found"},
		{name: "cache misses, no store configured", opt: envOpt{noStore: true}, status: 404, code: "pair_not_found"},
		{name: "cache down, store misses", cacheDown: true, status: 404, code: "pair_not_found"},
		{name: "cache misses, store down", storeDn: true, status: 503, code: "unavailable", layers: "store"},
		{name: "both down", cacheDown: true, storeDn: true, status: 503, code: "unavailable", layers: "cache,store"},
		{name: "cache down, no store", opt: envOpt{noStore: true}, cacheDown: true, status: 503, code: "unavailable", layers: "cache,store"},
		{name: "nothing configured", opt: envOpt{noStore: true, noCache: true}, status: 503, code: "unavailable", layers: "cache,store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opt)
			e.cache.fail(c.cacheDown)
			e.store.fail(c.storeDn)
			r := e.get(t, "/api/v1/tick/binance/NOPE")
			r.wantError(t, c.status, c.code)
			if c.layers == "" {
				return
			}
			r.wantFailedLayers(t, c.layers)
		})
	}
}

// Every client mistake is a 400 (or 404/405) in the envelope, never a 500.
func TestClientErrors(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.write(t, mk("binance", "BTCUSDT", 1000, "1"))
	long := strings.Repeat("A", 65)
	for _, c := range []struct {
		method, target string
		status         int
		code           string
	}{
		{"GET", "/api/v1/tick/bin%40nce/BTCUSDT", 400, "invalid_exchange"},
		{"GET", "/api/v1/tick/binance/BTC%20USDT", 400, "invalid_symbol"},
		{"GET", "/api/v1/tick/binance/BTC:USDT", 400, "invalid_symbol"},
		{"GET", "/api/v1/tick/binance/" + long, 400, "invalid_symbol"},
		{"GET", "/api/v1/ticks/" + long + "/BTCUSDT", 400, "invalid_exchange"},
		{"GET", "/api/v1/ticks/binance/BTC%22USDT", 400, "invalid_symbol"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?limit=abc", 400, "invalid_limit"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?limit=0", 400, "invalid_limit"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?limit=-3", 400, "invalid_limit"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?limit=1001", 400, "invalid_limit"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?limit=99999999999999999999", 400, "invalid_limit"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?from=yesterday", 400, "invalid_from"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?from=-5", 400, "invalid_from"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?to=2026-13-01T00:00:00Z", 400, "invalid_to"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?to=99999999999999999", 400, "invalid_to"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?from=2000&to=1000", 400, "invalid_range"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?from=2026-01-02T00:00:01Z&to=2026-01-02T00:00:00Z", 400, "invalid_range"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?before=0", 400, "invalid_before"},
		{"GET", "/api/v1/ticks/binance/BTCUSDT?before=x", 400, "invalid_before"},
		{"GET", "/api/v1/tick/binance/NOPE", 404, "pair_not_found"},
		{"GET", "/api/v1/tick/binance", 404, "not_found"},
		{"GET", "/api/v1/nope", 404, "not_found"},
		{"POST", "/api/v1/tick/binance/BTCUSDT", 405, "method_not_allowed"},
		{"DELETE", "/api/v1/symbols", 405, "method_not_allowed"},
	} {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			e.do(t, c.method, c.target).wantError(t, c.status, c.code)
		})
	}
}

func TestTicksFromCacheAndStore(t *testing.T) {
	e := newEnv(t, envOpt{history: 5})
	var all []tick.Tick
	for i := int64(1); i <= 20; i++ {
		all = append(all, mk("binance", "BTCUSDT", i*1000, fmt.Sprint(i)))
	}
	e.store.add(all...)
	e.write(t, all...) // the cache keeps 16..20 s

	stamps := func(p page) string {
		var s []string
		for _, t := range p.Ticks {
			s = append(s, fmt.Sprint(t.Timestamp/1000))
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		name, query, want, source string
		next                      int64
	}{
		{"within the cache", "limit=3", "20,19,18", "cache", 18_000},
		// The cache's full set claims only what is newer than its oldest
		// member (16 s), so 16 s and older come from the store.
		{"reaching past the cache", "limit=8", "20,19,18,17,16,15,14,13", "cache+store", 13_000},
		{"next page from the cursor", "limit=8&before=13000", "12,11,10,9,8,7,6,5", "store", 5000},
		{"range inside the cache", "from=17000&to=19000", "19,18,17", "cache", 0},
		{"range reaching past it, RFC 3339", "from=" + time.UnixMilli(14_000).UTC().Format(time.RFC3339) + "&to=18000", "18,17,16,15,14", "cache+store", 0},
		{"default limit returns everything here", "", "20,19,18,17,16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1", "cache+store", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.get(t, "/api/v1/ticks/binance/btcusdt?"+c.query)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			p := r.page(t)
			if got := stamps(p); got != c.want {
				t.Errorf("ticks = %s, want %s", got, c.want)
			}
			if p.Source != c.source || p.NextBefore != c.next || p.Partial {
				t.Errorf("source %q next_before %d partial %v, want %q %d false", p.Source, p.NextBefore, p.Partial, c.source, c.next)
			}
		})
	}

	t.Run("cache down: all from the store", func(t *testing.T) {
		e.cache.fail(true)
		defer e.cache.fail(false)
		p := e.get(t, "/api/v1/ticks/binance/btcusdt?limit=4").page(t)
		if stamps(p) != "20,19,18,17" || p.Source != "store" {
			t.Errorf("got %s from %s", stamps(p), p.Source)
		}
	})
	t.Run("store down: the cache's part, marked partial", func(t *testing.T) {
		e.store.fail(true)
		defer e.store.fail(false)
		p := e.get(t, "/api/v1/ticks/binance/btcusdt?limit=8").page(t)
		if stamps(p) != "20,19,18,17" || p.Source != "cache" || !p.Partial || len(p.Unavailable) != 1 || p.Unavailable[0].Layer != "store" {
			t.Errorf("got %s from %s partial %v unavailable %v", stamps(p), p.Source, p.Partial, p.Unavailable)
		}
	})
	t.Run("both down: 503", func(t *testing.T) {
		e.store.fail(true)
		e.cache.fail(true)
		defer e.store.fail(false)
		defer e.cache.fail(false)
		e.get(t, "/api/v1/ticks/binance/btcusdt").wantError(t, 503, "unavailable")
	})
	t.Run("unknown pair: an empty page", func(t *testing.T) {
		p := e.get(t, "/api/v1/ticks/binance/NOPE").page(t)
		if len(p.Ticks) != 0 || p.Ticks == nil {
			t.Errorf("ticks = %#v, want an empty list", p.Ticks)
		}
	})
}

func TestTicksWithoutStoreAnswersFromCache(t *testing.T) {
	e := newEnv(t, envOpt{noStore: true, history: 5})
	for i := int64(1); i <= 8; i++ {
		e.write(t, mk("okx", "ETHUSDT", i*1000, "1"))
	}
	p := e.get(t, "/api/v1/ticks/okx/ethusdt?limit=10").page(t)
	if len(p.Ticks) != 4 || p.Source != "cache" || p.Partial {
		t.Errorf("got %d ticks from %q partial %v", len(p.Ticks), p.Source, p.Partial)
	}
	e.cache.fail(true)
	e.get(t, "/api/v1/ticks/okx/ethusdt").wantError(t, 503, "unavailable")
}

func TestSymbols(t *testing.T) {
	e := newEnv(t, envOpt{})
	now := t0.UnixMilli()
	e.write(t, mk("okx", "ETHUSDT", now-1500, "3000.5"), mk("binance", "BTCUSDT", now-250, "50100.00"), mk("binance", "BTCUSDT", now-5000, "1"))
	r := e.get(t, "/api/v1/symbols")
	// Binance's BTCUSDT resolves to its instrument (the tick, written before
	// ticks carried one, by its symbol); ETHUSDT is not an OKX symbol form.
	want := fmt.Sprintf(`[{"exchange":"binance","symbol":"BTCUSDT","base":"BTC","quote":"USDT","price":"50100.00","timestamp":%d,"age_ms":250},`+
		`{"exchange":"okx","symbol":"ETHUSDT","price":"3000.5","timestamp":%d,"age_ms":1500}]`, now-250, now-1500)
	if r.status != 200 || string(r.body.Data) != want {
		t.Errorf("got %d %s\nwant data %s", r.status, r.raw, want)
	}
	e.cache.fail(true)
	e.get(t, "/api/v1/symbols").wantError(t, 503, "unavailable")
	newEnv(t, envOpt{noCache: true}).get(t, "/api/v1/symbols").wantError(t, 503, "unavailable")
}

// TestSymbolsPriceIsPlainDecimal: a sub-micro price must come back as the
// exchange wrote it, like the tick JSON, not in apd's exponent form
// ("6.0E-7").
func TestSymbolsPriceIsPlainDecimal(t *testing.T) {
	e := newEnv(t, envOpt{})
	now := t0.UnixMilli()
	for _, price := range []string{"0.00000060", "0.00000001", "123456789.123456789"} {
		e.write(t, mk("binance", "X"+strings.ReplaceAll(price, ".", ""), now, price))
	}
	r := e.get(t, "/api/v1/symbols")
	var got []struct{ Symbol, Price string }
	if err := json.Unmarshal(r.body.Data, &got); err != nil {
		t.Fatalf("%v\n%s", err, r.raw)
	}
	want := map[string]string{"X000000060": "0.00000060", "X000000001": "0.00000001", "X123456789123456789": "123456789.123456789"}
	if len(got) != len(want) {
		t.Fatalf("got %d pairs, want %d: %s", len(got), len(want), r.raw)
	}
	for _, g := range got {
		if want[g.Symbol] != g.Price {
			t.Errorf("%s: price %q, want %q", g.Symbol, g.Price, want[g.Symbol])
		}
	}
}

func (e *env) write(t *testing.T, ticks ...tick.Tick) {
	t.Helper()
	if err := e.cache.WriteBatch(context.Background(), ticks); err != nil {
		t.Fatal(err)
	}
}

var errDown = errors.New("connection refused (test)")

// flakyCache is the real cache sink with a switch that makes every read
// fail, as a dead Redis would.
type flakyCache struct {
	*cache.Sink
	mu   sync.Mutex
	down bool
}

func (f *flakyCache) fail(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }
func (f *flakyCache) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	return nil
}

func (f *flakyCache) Latest(ctx context.Context, ex, sym string) (tick.Tick, bool, error) {
	if err := f.err(); err != nil {
		return tick.Tick{}, false, err
	}
	return f.Sink.Latest(ctx, ex, sym)
}

func (f *flakyCache) History(ctx context.Context, q api.TickQuery) (api.CachedTicks, error) {
	if err := f.err(); err != nil {
		return api.CachedTicks{}, err
	}
	return f.Sink.History(ctx, q)
}

func (f *flakyCache) Put(ctx context.Context, t tick.Tick) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Sink.Put(ctx, t)
}

func (f *flakyCache) Pairs(ctx context.Context) ([]tick.Tick, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Sink.Pairs(ctx)
}

// fakeStore is the history layer: every tick it was given, answered by
// the TickHistory contract.
type fakeStore struct {
	mu    sync.Mutex
	ticks []tick.Tick
	down  bool
	// downFor fails reads of this exchange only.
	downFor string
	// asked counts reads by exchange.
	asked map[string]int
}

func (s *fakeStore) fail(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

func (s *fakeStore) add(ts ...tick.Tick) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks = append(s.ticks, ts...)
	sort.SliceStable(s.ticks, func(i, j int) bool { return s.ticks[i].Timestamp > s.ticks[j].Timestamp })
}

func (s *fakeStore) LatestTick(ctx context.Context, ex, sym string) (tick.Tick, bool, error) {
	ts, err := s.Ticks(ctx, api.TickQuery{Exchange: ex, Symbol: sym, Limit: 1})
	if err != nil || len(ts) == 0 {
		return tick.Tick{}, false, err
	}
	return ts[0], true, nil
}

func (s *fakeStore) Ticks(_ context.Context, q api.TickQuery) ([]tick.Tick, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.asked == nil {
		s.asked = map[string]int{}
	}
	s.asked[q.Exchange]++
	if s.down || s.downFor == q.Exchange {
		return nil, errDown
	}
	var out []tick.Tick
	for _, t := range s.ticks {
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

// instrumentData is the data of GET /api/v1/instruments/:instrument/ticks.
type instrumentData struct {
	Instrument  string      `json:"instrument"`
	Base        string      `json:"base"`
	Quote       string      `json:"quote"`
	Ticks       []tick.Tick `json:"ticks"`
	Source      string      `json:"source"`
	Partial     bool        `json:"partial"`
	Unavailable []struct {
		Layer, Error string
	} `json:"unavailable"`
}

func (r response) instrument(t *testing.T) instrumentData {
	t.Helper()
	var d instrumentData
	if err := json.Unmarshal(r.body.Data, &d); err != nil {
		t.Fatalf("data is not an instrument comparison: %v\n%s", err, r.raw)
	}
	return d
}

// pairsOf lists "exchange:symbol@timestamp base-quote" of each tick.
func pairsOf(ts []tick.Tick) string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s@%d %s-%s", t.Key(), t.Timestamp, t.Base, t.Quote))
	}
	return strings.Join(out, ", ")
}

// withAssets is mk with the instrument the ingest pump would have set.
func withAssets(t tick.Tick, base, quote string) tick.Tick {
	t.Base, t.Quote = base, quote
	return t
}

// One normalized instrument compared across exchanges, from the cache:
// each exchange's native spelling matches, a record from before the
// instrument model matches by its symbol, another quote asset does not,
// and two Kraken spellings of one market give one tick, the newer.
func TestInstrumentTicksFromCache(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.write(t,
		withAssets(mk("binance", "BTCUSDT", 1000, "50100.00"), "BTC", "USDT"),
		withAssets(mk("bybit", "BTCUSDT", 1001, "50100.10"), "BTC", "USDT"),
		mk("okx", "BTC-USDT", 1002, "50099.90"), // written before ticks carried base/quote
		withAssets(mk("kraken", "BTC/USDT", 1003, "50101"), "BTC", "USDT"),
		withAssets(mk("coinbase", "BTC-USD", 1004, "50050.00"), "BTC", "USD"),
		withAssets(mk("binance", "ETHUSDT", 1005, "3000"), "ETH", "USDT"),
		withAssets(mk("binance", "BTCUSDC", 1006, "50090"), "BTC", "USDC"),
		mk("kraken", "XBT/USD", 1007, "50060"),
		withAssets(mk("kraken", "BTC/USD", 1008, "50061"), "BTC", "USD"),
	)
	for _, c := range []struct{ path, instrument, want string }{
		{"/api/v1/instruments/BTC-USDT/ticks", "BTC-USDT",
			"binance:BTCUSDT@1000 BTC-USDT, bybit:BTCUSDT@1001 BTC-USDT, kraken:BTC/USDT@1003 BTC-USDT, okx:BTC-USDT@1002 BTC-USDT"},
		{"/api/v1/instruments/btc-usdt/ticks", "BTC-USDT",
			"binance:BTCUSDT@1000 BTC-USDT, bybit:BTCUSDT@1001 BTC-USDT, kraken:BTC/USDT@1003 BTC-USDT, okx:BTC-USDT@1002 BTC-USDT"},
		{"/api/v1/tick/*/BTC-USDT", "BTC-USDT",
			"binance:BTCUSDT@1000 BTC-USDT, bybit:BTCUSDT@1001 BTC-USDT, kraken:BTC/USDT@1003 BTC-USDT, okx:BTC-USDT@1002 BTC-USDT"},
		{"/api/v1/instruments/XBT-USD/ticks", "BTC-USD", "coinbase:BTC-USD@1004 BTC-USD, kraken:BTC/USD@1008 BTC-USD"},
		{"/api/v1/tick/*/eth-usdt", "ETH-USDT", "binance:ETHUSDT@1005 ETH-USDT"},
	} {
		r := e.get(t, c.path)
		if r.status != http.StatusOK || r.source != "cache" {
			t.Fatalf("%s: %d source %q: %s", c.path, r.status, r.source, r.raw)
		}
		d := r.instrument(t)
		if d.Instrument != c.instrument || d.Base+"-"+d.Quote != c.instrument || d.Source != "cache" || d.Partial {
			t.Errorf("%s: %+v", c.path, d)
		}
		if got := pairsOf(d.Ticks); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.path, got, c.want)
		}
	}
	if r := e.get(t, "/api/v1/instruments/BTC-USDT/ticks"); !strings.Contains(r.raw, `"symbol":"BTCUSDT","base":"BTC","quote":"USDT","timestamp":1000,"price":"50100.00"`) {
		t.Errorf("tick not exact, or without its instrument: %s", r.raw)
	}
	if n := len(e.store.asked); n != 0 {
		t.Errorf("the store was asked %v while the cache answered", e.store.asked)
	}
}

// When the cache holds none of the instrument (or is down), the store is
// asked for each exchange's native symbol; its answers re-populate the
// cache. One exchange failing in the store gives the others with
// partial=true.
func TestInstrumentTicksFromStore(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.store.add(
		mk("okx", "BTC-USDT", 1000, "1"), mk("okx", "BTC-USDT", 2000, "2"), // rows from before the instrument columns
		withAssets(mk("binance", "BTCUSDT", 1500, "3"), "BTC", "USDT"),
		withAssets(mk("kraken", "BTC/USD", 1600, "4"), "BTC", "USD"),
	)
	r := e.get(t, "/api/v1/instruments/BTC-USDT/ticks")
	if r.status != http.StatusOK || r.source != "store" {
		t.Fatalf("%d source %q: %s", r.status, r.source, r.raw)
	}
	d := r.instrument(t)
	if got, want := pairsOf(d.Ticks), "binance:BTCUSDT@1500 BTC-USDT, okx:BTC-USDT@2000 BTC-USDT"; got != want || d.Partial {
		t.Fatalf("from the store:\n got %s (partial %v)\nwant %s", got, d.Partial, want)
	}
	for _, ex := range []string{"binance", "bybit", "coinbase", "kraken", "okx", "sim"} {
		if e.store.asked[ex] != 1 {
			t.Errorf("store asked %v, want each exchange once", e.store.asked)
			break
		}
	}
	r = e.get(t, "/api/v1/instruments/BTC-USDT/ticks")
	if r.status != http.StatusOK || r.source != "cache" || pairsOf(r.instrument(t).Ticks) != pairsOf(d.Ticks) {
		t.Errorf("second read: %d source %q (want the re-populated cache): %s", r.status, r.source, r.raw)
	}

	e.cache.fail(true)
	e.store.downFor = "okx"
	r = e.get(t, "/api/v1/tick/*/BTC-USDT")
	d = r.instrument(t)
	if r.status != http.StatusOK || d.Source != "store" || !d.Partial || pairsOf(d.Ticks) != "binance:BTCUSDT@1500 BTC-USDT" ||
		len(d.Unavailable) != 1 || d.Unavailable[0].Layer != "store" || !strings.HasPrefix(d.Unavailable[0].Error, "okx: ") {
		t.Errorf("okx failing in the store: %d %+v", r.status, d)
	}
}

func TestInstrumentTicksNotFoundAndUnavailable(t *testing.T) {
	for _, c := range []struct {
		name               string
		opt                envOpt
		cacheDown, storeDn bool
		status             int
		code               string
		layers             string
	}{
		{name: "both layers miss", status: 404, code: "instrument_not_found"},
		{name: "cache misses, no store configured", opt: envOpt{noStore: true}, status: 404, code: "instrument_not_found"},
		{name: "cache down, store misses", cacheDown: true, status: 404, code: "instrument_not_found"},
		{name: "cache misses, store down", storeDn: true, status: 503, code: "unavailable", layers: "store"},
		{name: "both down", cacheDown: true, storeDn: true, status: 503, code: "unavailable", layers: "cache,store"},
		{name: "cache down, no store", opt: envOpt{noStore: true}, cacheDown: true, status: 503, code: "unavailable", layers: "cache,store"},
		{name: "nothing configured", opt: envOpt{noStore: true, noCache: true}, status: 503, code: "unavailable", layers: "cache,store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opt)
			// Ticks of other instruments are no answer.
			e.write(t, withAssets(mk("binance", "ETHUSDT", 1000, "1"), "ETH", "USDT"))
			e.store.add(withAssets(mk("binance", "ETHUSDT", 1000, "1"), "ETH", "USDT"))
			e.cache.fail(c.cacheDown)
			e.store.fail(c.storeDn)
			r := e.get(t, "/api/v1/instruments/DOGE-EUR/ticks")
			r.wantError(t, c.status, c.code)
			if c.layers == "" {
				return
			}
			r.wantFailedLayers(t, c.layers)
		})
	}
}

func TestInstrumentTicksBadParameters(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.write(t, withAssets(mk("binance", "BTCUSDT", 1000, "1"), "BTC", "USDT"))
	for _, target := range []string{
		"/api/v1/instruments/BTCUSDT/ticks",       // a native symbol, not BASE-QUOTE
		"/api/v1/instruments/BTC-/ticks",          // no quote
		"/api/v1/instruments/-USDT/ticks",         // no base
		"/api/v1/instruments/BTC-USDT-SWAP/ticks", // a derivative
		"/api/v1/instruments/BTC_USDT/ticks",
		"/api/v1/instruments/BTC.X-USDT/ticks",
		"/api/v1/instruments/BTC%2FUSDT/ticks",
		"/api/v1/instruments/BTC%20-USDT/ticks",
		"/api/v1/instruments/" + strings.Repeat("A", 40) + "-" + strings.Repeat("B", 30) + "/ticks", // too long
		"/api/v1/tick/*/BTCUSDT",
		"/api/v1/tick/*/BTC%2FUSDT",
	} {
		e.get(t, target).wantError(t, http.StatusBadRequest, "invalid_instrument")
	}
	// A * anywhere but the whole exchange segment is just a bad name.
	e.get(t, "/api/v1/tick/bin*/BTCUSDT").wantError(t, http.StatusBadRequest, "invalid_exchange")
	e.get(t, "/api/v1/ticks/*/BTC-USDT").wantError(t, http.StatusBadRequest, "invalid_exchange")
}
