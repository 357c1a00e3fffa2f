package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// TickHistory is the durable history behind the cache: the store sink
// implements it. Ticks answers newest first. LatestTick reports found=false
// (with a nil error) for a pair it has never seen; err is for a layer that
// could not answer.
type TickHistory interface {
	LatestTick(ctx context.Context, exchange, symbol string) (t tick.Tick, found bool, err error)
	Ticks(ctx context.Context, q TickQuery) ([]tick.Tick, error)
}

// TickQuery selects a page of one pair's ticks, newest first. It is
// tick.Query, so providers implement TickHistory without importing api.
type TickQuery = tick.Query

// TickCache is the hot layer in front of the history: the cache sink
// implements it. Its method names differ from TickHistory's on purpose, so
// one component never satisfies both by accident.
type TickCache interface {
	// Latest is the pair's newest tick by event time; found=false with a
	// nil error when the cache holds nothing for the pair.
	Latest(ctx context.Context, exchange, symbol string) (t tick.Tick, found bool, err error)
	// History answers q from what the cache holds, newest first.
	History(ctx context.Context, q TickQuery) (CachedTicks, error)
	// Put re-populates the cache with a tick read from the history; it
	// never moves a newer cached tick backwards.
	Put(ctx context.Context, t tick.Tick) error
	// Pairs lists the latest tick of every pair the cache currently holds.
	Pairs(ctx context.Context) ([]tick.Tick, error)
}

// CachedTicks is what the cache holds of a pair for a query (see
// tick.Window); it lives in tick so the cache sink need not import api.
type CachedTicks = tick.Window

// Limits of the tick endpoints, documented in the OpenAPI description.
const (
	DefaultTicksLimit = 100
	MaxTicksLimit     = 1000
	maxNameLen        = 64
)

// Layer deadlines. A cache read that takes longer than this is treated as
// a failed layer so the request can still be answered from the store.
const (
	cacheTimeout = 250 * time.Millisecond
	storeTimeout = 5 * time.Second
)

// Layer names in responses and errors.
const (
	layerCache = "cache"
	layerStore = "store"
)

// SourceHeader tells a client which layer answered.
const SourceHeader = "X-Tickflow-Source"

func init() {
	addRoutes(func(s *Server) {
		s.e.GET("/api/v1/tick/:exchange/:symbol", s.getTick)
		s.e.GET("/api/v1/ticks/:exchange/:symbol", s.getTicks)
		s.e.GET("/api/v1/instruments/:instrument/ticks", s.getInstrumentTicks)
		s.e.GET("/api/v1/symbols", s.getSymbols)
	})
	describeTickRoutes()
}

// layerFailure is one layer that could not answer, as reported in a 503.
type layerFailure struct {
	Layer string `json:"layer"`
	Error string `json:"error"`
}

var errNotConfigured = errors.New("not configured")

func unavailable(failed []layerFailure) *apiError {
	parts := make([]string, len(failed))
	for i, f := range failed {
		parts[i] = f.Layer + ": " + f.Error
	}
	return &apiError{
		Status:  http.StatusServiceUnavailable,
		Code:    "unavailable",
		Message: "no layer could answer (" + strings.Join(parts, "; ") + ")",
		Details: map[string]any{"layers": failed},
	}
}

// tickLayers returns the providers: the cache (nil when none) and the
// histories behind it, in the order they are asked.
func (s *Server) tickLayers() (TickCache, []TickHistory) {
	if s.opts.History == nil {
		return s.opts.Cache, nil
	}
	return s.opts.Cache, []TickHistory{s.opts.History}
}

// getTick answers the latest tick: cache, then the history store (whose
// answer re-populates the cache), else 404 when the authoritative layer
// does not know the pair, else 503 naming the layers that failed.
func (s *Server) getTick(c echo.Context) error {
	if c.Param("exchange") == "*" { // every exchange: /api/v1/tick/*/BTC-USDT
		return s.instrumentTicks(c, c.Param("symbol"))
	}
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cache, stores := s.tickLayers()
	var failed []layerFailure
	cacheMiss := false
	if cache == nil {
		failed = append(failed, layerFailure{layerCache, errNotConfigured.Error()})
	} else {
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		t, found, err := cache.Latest(cctx, ex, sym)
		cancel()
		switch {
		case err != nil:
			failed = append(failed, layerFailure{layerCache, err.Error()})
		case found:
			return writeTick(c, &t, layerCache)
		default:
			cacheMiss = true
		}
	}
	if len(stores) == 0 {
		if cacheMiss {
			return pairNotFound(ex, sym)
		}
		return unavailable(append(failed, layerFailure{layerStore, errNotConfigured.Error()}))
	}
	storeMiss := false
	for _, h := range stores {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		t, found, err := h.LatestTick(sctx, ex, sym)
		cancel()
		switch {
		case err != nil:
			failed = append(failed, layerFailure{layerStore, err.Error()})
			continue
		case !found:
			storeMiss = true
			continue
		}
		if cache != nil {
			s.repopulate(ctx, cache, t)
		}
		return writeTick(c, &t, layerStore)
	}
	// The store holds everything durable: if it does not know the pair,
	// nobody does. A cache miss alone is not enough while the store is
	// down, since the cache forgets quiet pairs after its TTL.
	if storeMiss {
		return pairNotFound(ex, sym)
	}
	return unavailable(failed)
}

func (s *Server) repopulate(ctx context.Context, cache TickCache, t tick.Tick) {
	cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
	defer cancel()
	if err := cache.Put(cctx, t); err != nil {
		s.log.Debug("api: re-populate cache", "pair", t.Key(), "err", err)
	}
}

func pairNotFound(ex, sym string) *apiError {
	return errorf(http.StatusNotFound, "pair_not_found", fmt.Sprintf("no ticks known for %s on %s", sym, ex))
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeTick writes the envelope by hand: this is the hottest endpoint, and
// tick.AppendJSON is already the exact encoding of the data.
func writeTick(c echo.Context, t *tick.Tick, source string) error {
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], `{"success":true,"data":`...)
	b = t.AppendJSON(b)
	b = append(b, '}')
	c.Response().Header().Set(SourceHeader, source)
	err := c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
	*bp = b
	bufPool.Put(bp)
	return err
}

// instrumentTicks is the data of GET /api/v1/instruments/:instrument/ticks:
// one instrument compared across exchanges.
type instrumentTicksData struct {
	Instrument string `json:"instrument"` // normalized: BTC-USDT
	Base       string `json:"base"`
	Quote      string `json:"quote"`
	// Ticks is the newest tick of the instrument on each exchange, sorted
	// by exchange; each keeps the exchange's own symbol.
	Ticks []tick.Tick `json:"ticks"`
	// Source is the layer that answered, "cache" or "store".
	Source string `json:"source"`
	// Partial means the store answered for some exchanges and failed for
	// others; Unavailable says which.
	Partial     bool           `json:"partial,omitempty"`
	Unavailable []layerFailure `json:"unavailable,omitempty"`
}

func (s *Server) getInstrumentTicks(c echo.Context) error {
	return s.instrumentTicks(c, c.Param("instrument"))
}

// instrumentTicks answers the latest tick of one normalized instrument on
// every exchange, with getTick's layer rules: the cache's latest ticks of
// every pair, filtered by instrument; when the cache holds none of them or
// cannot answer, the store, asked for each exchange's native symbol of
// the instrument (its answers re-populate the cache); 404 when the
// authoritative layer knows none, 503 naming the layers that failed.
// Records from before records carried an instrument match by their
// symbol.
func (s *Server) instrumentTicks(c echo.Context, raw string) error {
	in, err := instrumentParam(raw)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	data := instrumentTicksData{Instrument: in.String(), Base: in.Base, Quote: in.Quote, Ticks: []tick.Tick{}}
	cache, stores := s.tickLayers()
	var failed []layerFailure
	cacheMiss := false
	if cache == nil {
		failed = append(failed, layerFailure{layerCache, errNotConfigured.Error()})
	} else {
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		pairs, err := cache.Pairs(cctx)
		cancel()
		if err != nil {
			failed = append(failed, layerFailure{layerCache, err.Error()})
		} else if data.Ticks = newestPerExchange(data.Ticks, pairs, in); len(data.Ticks) > 0 {
			data.Source = layerCache
			c.Response().Header().Set(SourceHeader, data.Source)
			return ok(c, data)
		} else {
			cacheMiss = true
		}
	}
	if len(stores) == 0 {
		if cacheMiss {
			return instrumentNotFound(in)
		}
		return unavailable(append(failed, layerFailure{layerStore, errNotConfigured.Error()}))
	}
	storeMiss := false
	for _, h := range stores {
		found, errs := latestOnEveryExchange(ctx, h, in)
		if len(found) == 0 {
			if len(errs) == 0 {
				storeMiss = true
				continue
			}
			// One entry for the layer, as the other endpoints report it.
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Error
			}
			failed = append(failed, layerFailure{layerStore, strings.Join(msgs, "; ")})
			continue
		}
		if cache != nil {
			for _, t := range found {
				s.repopulate(ctx, cache, t)
			}
		}
		data.Ticks = newestPerExchange(data.Ticks, found, in)
		data.Source = layerStore
		if len(errs) > 0 {
			data.Partial, data.Unavailable = true, errs
		}
		c.Response().Header().Set(SourceHeader, data.Source)
		return ok(c, data)
	}
	if storeMiss {
		return instrumentNotFound(in)
	}
	return unavailable(failed)
}

// newestPerExchange appends to out the newest tick per exchange among
// ticks whose instrument is in, sorted by exchange, with Base and Quote
// set (records older than them get them from their symbol). Two symbols
// of one exchange for the same instrument (Kraken's XBT/USD and BTC/USD)
// are one market: the newer tick stands for it.
func newestPerExchange(out, ticks []tick.Tick, in instrument.Instrument) []tick.Tick {
	var r *instrument.Resolver // the symbol forms alone
	byEx := map[string]int{}
	for _, t := range ticks {
		got, err := r.Record(t.Exchange, t.Symbol, t.Base, t.Quote)
		if err != nil || got != in {
			continue
		}
		t.Base, t.Quote = in.Base, in.Quote
		if i, ok := byEx[t.Exchange]; ok {
			if t.Timestamp > out[i].Timestamp {
				out[i] = t
			}
			continue
		}
		byEx[t.Exchange] = len(out)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Exchange < out[j].Exchange })
	return out
}

// latestOnEveryExchange asks h, concurrently, for the latest tick of the
// instrument's native symbol on each exchange with a symbol form. errs
// names each exchange the store failed for.
func latestOnEveryExchange(ctx context.Context, h TickHistory, in instrument.Instrument) (found []tick.Tick, errs []layerFailure) {
	exchanges := instrument.Exchanges()
	type answer struct {
		t     tick.Tick
		found bool
		err   error
	}
	answers := make([]answer, len(exchanges))
	var wg sync.WaitGroup
	for i, ex := range exchanges {
		sym, err := instrument.Native(ex, in)
		if err != nil {
			continue // Exchanges lists only exchanges with a symbol form
		}
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			defer cancel()
			a := &answers[i]
			a.t, a.found, a.err = h.LatestTick(sctx, ex, sym)
		})
	}
	wg.Wait()
	for i, a := range answers {
		switch {
		case a.err != nil:
			errs = append(errs, layerFailure{layerStore, exchanges[i] + ": " + a.err.Error()})
		case a.found:
			found = append(found, a.t)
		}
	}
	return found, errs
}

func instrumentNotFound(in instrument.Instrument) *apiError {
	return errorf(http.StatusNotFound, "instrument_not_found", fmt.Sprintf("no exchange has ticks known for %s", in))
}

// instrumentParam reads a normalized instrument, BASE-QUOTE.
func instrumentParam(raw string) (instrument.Instrument, error) {
	bad := errorf(http.StatusBadRequest, "invalid_instrument",
		fmt.Sprintf("instrument %q: want BASE-QUOTE of letters and digits, e.g. BTC-USDT (case-insensitive)", raw))
	if !validName(raw) {
		return instrument.Instrument{}, bad
	}
	in, err := instrument.Parse(raw)
	if err != nil {
		return instrument.Instrument{}, bad
	}
	return in, nil
}

// ticksPage is the data of GET /api/v1/ticks.
type ticksPage struct {
	Exchange string      `json:"exchange"`
	Symbol   string      `json:"symbol"`
	Ticks    []tick.Tick `json:"ticks"`
	// Source is "cache", "store" or "cache+store".
	Source string `json:"source"`
	// NextBefore, when set, is the "before" value for the next page.
	NextBefore int64 `json:"next_before,omitempty"`
	// Partial means part of the range could not be read (the store was
	// down); Unavailable says which layer.
	Partial     bool           `json:"partial,omitempty"`
	Unavailable []layerFailure `json:"unavailable,omitempty"`
}

// layered is one read of a range across the layers, the rule both range
// endpoints (ticks and candles) follow, so their fallbacks cannot drift
// apart: the cache answers what it covers; the store is asked when the
// cache could not answer or the range reaches back past the cache's
// coverage; when the store then fails, the cache's part is the answer,
// flagged partial; when neither answers, a 503 names each layer.
type layered struct {
	// cache reads the cache's part and returns its coverage start (see
	// tick.Window.Since); nil when no cache is configured.
	cache func(ctx context.Context) (since int64, err error)
	// needStore reports, after the cache answered, whether the store must
	// be asked as well.
	needStore func(since int64) bool
	// store reads the store's part, knowing what the cache answered (since
	// is 0 when it did not); nil when no store is configured.
	store func(ctx context.Context, cacheOK bool, since int64) error
}

// layeredResult is what a layered read got.
type layeredResult struct {
	cacheOK, storeOK bool
	// partial: the store was needed and failed, so only the cache's part
	// is there; unavailable says why.
	partial     bool
	unavailable []layerFailure
}

func (l layered) read(ctx context.Context) (layeredResult, error) {
	var (
		r     layeredResult
		since int64
	)
	if l.cache == nil {
		r.unavailable = append(r.unavailable, layerFailure{layerCache, errNotConfigured.Error()})
	} else {
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		sc, err := l.cache(cctx)
		cancel()
		if err != nil {
			r.unavailable = append(r.unavailable, layerFailure{layerCache, err.Error()})
		} else {
			r.cacheOK, since = true, sc
		}
	}
	if r.cacheOK && !l.needStore(since) {
		return r, nil
	}
	if l.store == nil {
		if !r.cacheOK {
			return r, unavailable(append(r.unavailable, layerFailure{layerStore, errNotConfigured.Error()}))
		}
		return r, nil
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := l.store(sctx, r.cacheOK, since)
	cancel()
	switch {
	case err == nil:
		r.storeOK = true
	case !r.cacheOK:
		return r, unavailable(append(r.unavailable, layerFailure{layerStore, err.Error()}))
	default:
		// The cache's part is still worth having; say what is missing.
		r.unavailable = append(r.unavailable, layerFailure{layerStore, err.Error()})
		r.partial = true
	}
	return r, nil
}

// source names the layers whose records are in a page of cacheN records
// from the cache and storeN from the store; an empty page is the answer
// of the last layer asked.
func (r layeredResult) source(cacheN, storeN int) string {
	switch {
	case cacheN > 0 && storeN > 0:
		return layerCache + "+" + layerStore
	case r.storeOK && cacheN == 0:
		return layerStore
	default:
		return layerCache
	}
}

// getTicks answers recent history from the cache's sorted set, and from
// the store for whatever reaches past what the cache holds.
func (s *Server) getTicks(c echo.Context) error {
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	q, err := ticksQuery(c)
	if err != nil {
		return err
	}
	q.Exchange, q.Symbol = ex, sym
	cache, stores := s.tickLayers()

	page := ticksPage{Exchange: ex, Symbol: sym, Ticks: []tick.Tick{}}
	var (
		cacheN, storeN int
		l              layered
	)
	if cache != nil {
		l.cache = func(ctx context.Context) (int64, error) {
			ct, err := cache.History(ctx, q)
			if err != nil {
				return 0, err
			}
			cacheN = len(ct.Ticks)
			page.Ticks = append(page.Ticks, ct.Ticks...)
			return ct.Since, nil
		}
	}
	// The store is needed when the page is not full and the range reaches
	// back past the cache's coverage.
	l.needStore = func(since int64) bool {
		reachesPast := since == 0 || q.From.IsZero() || q.From.UnixMilli() < since
		return len(page.Ticks) < q.Limit && reachesPast
	}
	if len(stores) > 0 {
		l.store = func(ctx context.Context, _ bool, since int64) error {
			hq := q
			hq.Limit = q.Limit - len(page.Ticks)
			if since > 0 && (hq.Before == 0 || since < hq.Before) {
				hq.Before = since // the cache answered everything from since on
			}
			more, err := stores[0].Ticks(ctx, hq)
			if err != nil {
				return err
			}
			if len(more) > hq.Limit {
				more = more[:hq.Limit]
			}
			page.Ticks = append(page.Ticks, more...)
			storeN = len(more)
			return nil
		}
	}
	r, err := l.read(c.Request().Context())
	if err != nil {
		return err
	}
	page.Partial = r.partial
	if r.partial {
		page.Unavailable = r.unavailable
	}
	page.Source = r.source(cacheN, storeN)
	if n := len(page.Ticks); n == q.Limit && n > 0 {
		page.NextBefore = page.Ticks[n-1].Timestamp
	}
	c.Response().Header().Set(SourceHeader, page.Source)
	return ok(c, page)
}

// symbolInfo is one entry of GET /api/v1/symbols.
type symbolInfo struct {
	Exchange string `json:"exchange"`
	Symbol   string `json:"symbol"`
	// Base and Quote are the pair's normalized instrument; absent when
	// its symbol does not resolve.
	Base      string `json:"base,omitempty"`
	Quote     string `json:"quote,omitempty"`
	Price     string `json:"price"`
	Timestamp int64  `json:"timestamp"`
	// AgeMS is how old the latest tick's event time is, by this server's
	// clock.
	AgeMS int64 `json:"age_ms"`
}

func (s *Server) getSymbols(c echo.Context) error {
	cache, _ := s.tickLayers()
	if cache == nil {
		return unavailable([]layerFailure{{layerCache, errNotConfigured.Error()}})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), storeTimeout)
	defer cancel()
	pairs, err := cache.Pairs(ctx)
	if err != nil {
		return unavailable([]layerFailure{{layerCache, err.Error()}})
	}
	now := s.opts.Clock.Now().UnixMilli()
	out := make([]symbolInfo, len(pairs))
	var r *instrument.Resolver // records from before the instrument model: their symbol's form
	for i, t := range pairs {
		// 'f', as in the tick JSON: String() would turn "0.00000060" into "6.0E-7".
		out[i] = symbolInfo{Exchange: t.Exchange, Symbol: t.Symbol, Price: t.Price.Text('f'),
			Timestamp: t.Timestamp, AgeMS: max(0, now-t.Timestamp)}
		if in, err := r.Record(t.Exchange, t.Symbol, t.Base, t.Quote); err == nil {
			out[i].Base, out[i].Quote = in.Base, in.Quote
		}
	}
	return ok(c, out)
}

// pairParams reads and normalizes :exchange and :symbol. Names are
// case-insensitive on input; odd characters are refused before they can
// reach a key or a query.
func pairParams(c echo.Context) (exchange, symbol string, err error) {
	exchange, symbol = c.Param("exchange"), c.Param("symbol")
	if strings.Contains(symbol, "%") { // the router hands escaped text: BTC%2FUSD
		if u, err := url.PathUnescape(symbol); err == nil {
			symbol = u
		}
	}
	if !validName(exchange) {
		return "", "", errorf(http.StatusBadRequest, "invalid_exchange",
			fmt.Sprintf("exchange %q: want 1..%d of A-Z a-z 0-9 . _ -", exchange, maxNameLen))
	}
	if !validSymbol(symbol) {
		return "", "", errorf(http.StatusBadRequest, "invalid_symbol",
			fmt.Sprintf("symbol %q: want 1..%d of A-Z a-z 0-9 . _ - and / (as %%2F: Kraken's BTC/USD)", symbol, maxNameLen))
	}
	return tick.NormalizeExchange(exchange), tick.NormalizeSymbol(symbol), nil
}

// validSymbol is validName or a base/quote pair of them, Kraken's form,
// which a path carries escaped (BTC%2FUSD).
func validSymbol(s string) bool {
	b, q, ok := strings.Cut(s, "/")
	if !ok {
		return validName(s)
	}
	return len(s) <= maxNameLen && validName(b) && validName(q)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ticksQuery parses limit, from, to and before.
func ticksQuery(c echo.Context) (TickQuery, error) {
	q := TickQuery{Limit: DefaultTicksLimit}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTicksLimit {
			return q, errorf(http.StatusBadRequest, "invalid_limit",
				fmt.Sprintf("limit %q: want an integer in 1..%d", v, MaxTicksLimit))
		}
		q.Limit = n
	}
	var err error
	if q.From, err = timeParam(c, "from"); err != nil {
		return q, err
	}
	if q.To, err = timeParam(c, "to"); err != nil {
		return q, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.From.After(q.To) {
		return q, errorf(http.StatusBadRequest, "invalid_range", "from is after to")
	}
	if v := c.QueryParam("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > maxMillis {
			return q, errorf(http.StatusBadRequest, "invalid_before",
				fmt.Sprintf("before %q: want a positive Unix time in milliseconds (next_before of the previous page)", v))
		}
		q.Before = n
	}
	return q, nil
}

// maxMillis bounds numeric times: beyond 2^53 ms they are not exact as
// Redis scores, and no exchange will send them (that is year 285 000).
const maxMillis = 1 << 53

// timeParam parses an RFC 3339 time or Unix milliseconds; absent is zero.
func timeParam(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	bad := errorf(http.StatusBadRequest, "invalid_"+name,
		fmt.Sprintf("%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or Unix milliseconds", name, v))
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > maxMillis {
			return time.Time{}, bad
		}
		return time.UnixMilli(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.UnixMilli() <= 0 || t.UnixMilli() > maxMillis {
		return time.Time{}, bad
	}
	return t, nil
}

func describeTickRoutes() {
	dec := func(d string) Schema { return Schema{"type": "string", "description": d, "example": "50100.00"} }
	defineSchema("Tick", Schema{
		"type":     "object",
		"required": []string{"exchange", "symbol", "timestamp", "price", "volume", "bid", "ask"},
		"properties": map[string]any{
			"exchange":       Schema{"type": "string", "example": "binance"},
			"symbol":         Schema{"type": "string", "example": "BTCUSDT", "description": "the pair as the exchange names it"},
			"base":           Schema{"type": "string", "example": "BTC", "description": "normalized base asset (Kraken's XBT is BTC); absent when the symbol did not resolve, and in ticks stored before the instrument model"},
			"quote":          Schema{"type": "string", "example": "USDT", "description": "normalized quote asset; present exactly when base is"},
			"timestamp":      Schema{"type": "integer", "format": "int64", "description": "exchange event time, Unix ms"},
			"price":          dec("last price (decimal string)"),
			"volume":         dec("rolling 24 h base volume"),
			"bid":            dec("best bid"),
			"ask":            dec("best ask"),
			"open_24h":       dec("24 h open, when the exchange sends it"),
			"high_24h":       dec("24 h high, when the exchange sends it"),
			"low_24h":        dec("24 h low, when the exchange sends it"),
			"quote_volume":   dec("rolling 24 h quote volume, when the exchange sends it"),
			"received_at_us": Schema{"type": "integer", "format": "int64", "description": "when tickflow received it, Unix µs"},
		},
	})
	pair := []Param{
		PathParam("exchange", "exchange name, case-insensitive (binance); 1..64 of A-Z a-z 0-9 . _ -"),
		PathParam("symbol", "pair as the exchange names it, case-insensitive (BTCUSDT); 1..64 of A-Z a-z 0-9 . _ -"),
	}
	timeSchema := Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}
	describe("GET", "/api/v1/tick/:exchange/:symbol", Operation{
		Summary: "Latest tick of a pair",
		Description: "Read from the cache (Redis or in-process); on a miss or a cache failure from the history store, " +
			"whose answer re-populates the cache. The " + SourceHeader + " header says which layer answered. " +
			"With exchange * the symbol is a normalized instrument and the answer is that of " +
			"GET /api/v1/instruments/{instrument}/ticks: /api/v1/tick/*/BTC-USDT.",
		Tags: []string{"ticks"},
		Params: []Param{
			PathParam("exchange", "exchange name, case-insensitive (binance); 1..64 of A-Z a-z 0-9 . _ -; or * for every exchange"),
			pair[1],
		},
		Data: Ref("Tick"),
		Errors: map[int]string{
			400: "invalid_exchange or invalid_symbol: a path segment with characters outside A-Z a-z 0-9 . _ -; invalid_instrument with exchange *",
			404: "pair_not_found: no layer knows the pair (instrument_not_found with exchange *)",
			503: "unavailable: neither the cache nor the store could answer; details.layers lists each failure",
		},
	})
	describe("GET", "/api/v1/instruments/:instrument/ticks", Operation{
		Summary: "Latest tick of one instrument on every exchange",
		Description: "Compares exchanges: the newest tick of the normalized instrument (BTC-USDT matches Binance's and Bybit's " +
			"BTCUSDT, OKX's BTC-USDT, Kraken's BTC/USDT; BTC-USD matches Coinbase's BTC-USD and Kraken's XBT/USD), one per " +
			"exchange, sorted by exchange, each under the exchange's own symbol. From the cache's latest ticks; when the " +
			"cache holds none of the instrument or cannot answer, from the history store, asked for each exchange's " +
			"symbol of it (its answers re-populate the cache). Stored ticks from before the instrument model match by " +
			"their symbol. The " + SourceHeader + " header says which layer answered. Also served as /api/v1/tick/*/{instrument}.",
		Tags:   []string{"ticks"},
		Params: []Param{PathParam("instrument", "normalized BASE-QUOTE, case-insensitive (BTC-USDT); XBT reads as BTC")},
		Data: Schema{
			"type":     "object",
			"required": []string{"instrument", "base", "quote", "ticks", "source"},
			"properties": map[string]any{
				"instrument":  Schema{"type": "string", "example": "BTC-USDT"},
				"base":        Schema{"type": "string", "example": "BTC"},
				"quote":       Schema{"type": "string", "example": "USDT"},
				"ticks":       ArrayOf(Ref("Tick")),
				"source":      Schema{"type": "string", "enum": []string{"cache", "store"}},
				"partial":     Schema{"type": "boolean", "description": "true when the store answered for some exchanges and failed for others"},
				"unavailable": ArrayOf(Schema{"type": "object", "properties": map[string]any{"layer": Schema{"type": "string"}, "error": Schema{"type": "string", "description": "exchange: error"}}}),
			},
		},
		Errors: map[int]string{
			400: "invalid_instrument: not BASE-QUOTE of letters and digits",
			404: "instrument_not_found: no exchange has ticks of it in the layer that answered",
			503: "unavailable: neither the cache nor the store could answer; details.layers lists each failure",
		},
	})
	describe("GET", "/api/v1/ticks/:exchange/:symbol", Operation{
		Summary: "Recent ticks of a pair, newest first",
		Description: "Served from the cache's history (the newest ticks per pair); the part of the range reaching past " +
			"what the cache holds, or everything when the cache is down, comes from the history store. " +
			"Page backwards by passing next_before as before. If the store fails while the cache answered, the " +
			"cache's part is returned with partial=true. Paging is by millisecond, so ticks sharing the millisecond " +
			"at a page boundary may be skipped.",
		Tags: []string{"ticks"},
		Params: append(append([]Param(nil), pair...),
			QueryParam("limit", "how many ticks, 1.."+strconv.Itoa(MaxTicksLimit)+" (default "+strconv.Itoa(DefaultTicksLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxTicksLimit, "default": DefaultTicksLimit}),
			QueryParam("from", "oldest event time to include", timeSchema),
			QueryParam("to", "newest event time to include", timeSchema),
			QueryParam("before", "paging cursor: only ticks with timestamp < before (Unix ms)", Schema{"type": "integer", "format": "int64", "minimum": 1}),
		),
		Data: Schema{
			"type":     "object",
			"required": []string{"exchange", "symbol", "ticks", "source"},
			"properties": map[string]any{
				"exchange":    Schema{"type": "string"},
				"symbol":      Schema{"type": "string"},
				"ticks":       ArrayOf(Ref("Tick")),
				"source":      Schema{"type": "string", "enum": []string{"cache", "store", "cache+store"}},
				"next_before": Schema{"type": "integer", "format": "int64", "description": "present when the page is full: pass it as before for the next page"},
				"partial":     Schema{"type": "boolean", "description": "true when the store could not be read and only the cache's part is returned"},
				"unavailable": ArrayOf(Schema{"type": "object", "properties": map[string]any{"layer": Schema{"type": "string"}, "error": Schema{"type": "string"}}}),
			},
		},
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_limit, invalid_from, invalid_to, invalid_range (from after to) or invalid_before",
			503: "unavailable: neither the cache nor the store could answer; details.layers lists each failure",
		},
	})
	describe("GET", "/api/v1/symbols", Operation{
		Summary: "Pairs currently known, with their latest price and its age",
		Description: "The pairs the cache holds (ticks within its TTL), sorted by exchange then symbol. " +
			"age_ms is the server's clock minus the tick's event time.",
		Tags: []string{"ticks"},
		Data: ArrayOf(Schema{
			"type":     "object",
			"required": []string{"exchange", "symbol", "price", "timestamp", "age_ms"},
			"properties": map[string]any{
				"exchange":  Schema{"type": "string"},
				"symbol":    Schema{"type": "string"},
				"base":      Schema{"type": "string", "description": "normalized base asset (ask /api/v1/instruments/{base}-{quote}/ticks to compare exchanges); absent when the symbol does not resolve"},
				"quote":     Schema{"type": "string", "description": "normalized quote asset"},
				"price":     dec("latest price"),
				"timestamp": Schema{"type": "integer", "format": "int64"},
				"age_ms":    Schema{"type": "integer", "format": "int64"},
			},
		}),
		Errors: map[int]string{503: "unavailable: the cache could not answer"},
	})
}
