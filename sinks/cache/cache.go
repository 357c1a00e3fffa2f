// Package cache is the cache sink: it keeps every pair's latest tick, its
// recent history and its rolling 1m candles (candles.go) where the API can
// read them in well under a millisecond.
//
// With Redis addresses configured it writes to Redis through rueidis (a
// single node, or a Redis Cluster when several addresses are given);
// without, it keeps the same data in process memory, so an embedded run
// needs no server. Both backends present the same behaviour and pass the
// same tests.
//
// The Redis layout is the seed's:
//
//	market_data:tick:<exchange>:<symbol>          the tick JSON, TTL 1 h
//	market_data:tick_history:<exchange>:<symbol>  sorted set of tick JSON scored by event time (ms),
//	                                              trimmed to the newest 1000, TTL 1 h
//
// and, when candle_retention is not 0, one hash per pair of its 1m candles
// (market_data:candles_1m:<exchange>:<symbol>, TTL candle_retention; see
// redis_candles.go) and one of their traded volume from the trades topic
// (market_data:trade_volume_1m:<exchange>:<symbol>, see volume.go and
// redis_volume.go), plus one index, market_data:pairs, a sorted set of "exchange:symbol"
// scored by the wall-clock time of the pair's last write, so listing pairs
// needs no SCAN over the keyspace (which a cluster would make per-node).
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "cache",
		// A batch goes as soon as it is polled, so the cache stays live;
		// under backlog it grows to 50 000 ticks, which a write coalesces
		// into one update per pair, still one pipelined round trip (at
		// 20 000 it sat at the ceiling and fell behind at 95 k ticks/s:
		// docs/PERFORMANCE.md).
		Batch: sinks.BatchPolicy{Size: 50_000, MaxWait: 20 * time.Millisecond},
		// On Redis every instance writes the one shared store, so the
		// partitions are split between them. In process memory each
		// instance's API can serve only what its own memory holds, so each
		// instance consumes every tick.
		Sharing: func(cfg any) sinks.Sharing {
			if c, ok := cfg.(*Config); ok && len(c.Redis.Addrs) > 0 {
				return sinks.Shared
			}
			return sinks.PerInstance
		},
		Config: func() any { return DefaultConfig() },
		New:    sinks.Typed(func(env sinks.Env, c *Config) (*Sink, error) { return New(env, *c) }),
	})
}

// DefaultCandleRetention keeps a day of 1m candles: 1441 buckets per pair
// (the newest and the 1440 before it), a few hundred KB.
const DefaultCandleRetention = 24 * time.Hour

// MaxCandleRetention bounds candle_retention: a pair's buckets are read
// whole to answer a query.
const MaxCandleRetention = 7 * 24 * time.Hour

// MaxHistory bounds the history setting: each member is a few hundred
// bytes, and a history query reads the set's tail.
const MaxHistory = 100_000

// Config is the cache sink's section of config.yaml.
type Config struct {
	Redis RedisConfig `yaml:"redis"`
	// TTL is how long a pair's keys live after its last tick.
	TTL time.Duration `yaml:"ttl"`
	// History is how many of a pair's newest ticks the history keeps.
	History int `yaml:"history"`
	// CandleRetention is how far behind a pair's newest 1m candle its
	// candles are kept (and how long they live after its last tick); 0
	// keeps no candles.
	CandleRetention time.Duration `yaml:"candle_retention"`
	// Trades is how many of a pair's newest trades (from the trades
	// topic) are kept for GET /api/v1/trades; 0 keeps none.
	Trades int `yaml:"trades"`
}

// RedisConfig selects Redis; no addresses means the in-process backend.
type RedisConfig struct {
	// Addrs are host:port seeds. One address of a non-cluster server is a
	// single node; a cluster is detected from the server.
	Addrs    []string `yaml:"addrs"`
	Password string   `yaml:"password"`
	DB       int      `yaml:"db"`
	// ClientCacheTTL is how long a read may be served from process memory
	// (rueidis client-side caching; Redis invalidates it on every write).
	// It bounds staleness only if an invalidation is lost with its
	// connection, which rueidis also handles by dropping the cache.
	ClientCacheTTL time.Duration `yaml:"client_cache_ttl"`
}

// DefaultConfig is the documented default.
func DefaultConfig() *Config {
	return &Config{TTL: time.Hour, History: 1000, CandleRetention: DefaultCandleRetention, Trades: 1000,
		Redis: RedisConfig{ClientCacheTTL: time.Minute}}
}

// Validate checks the settings; it is called by the config loader.
func (c *Config) Validate() error {
	if c.TTL <= 0 {
		return fmt.Errorf("ttl: must be > 0, got %s", c.TTL)
	}
	if c.History < 1 || c.History > MaxHistory {
		return fmt.Errorf("history: must be in 1..%d, got %d", MaxHistory, c.History)
	}
	if c.CandleRetention < 0 || c.CandleRetention > MaxCandleRetention || c.CandleRetention%candleBucket != 0 {
		return fmt.Errorf("candle_retention: must be whole minutes in 0..%s (0 keeps no candles), got %s",
			MaxCandleRetention, c.CandleRetention)
	}
	if c.Trades < 0 || c.Trades > MaxHistory {
		return fmt.Errorf("trades: must be in 0..%d (0 keeps none), got %d", MaxHistory, c.Trades)
	}
	for _, a := range c.Redis.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("redis.addrs: %q is not host:port", a)
		}
	}
	if c.Redis.DB < 0 {
		return fmt.Errorf("redis.db: must be >= 0, got %d", c.Redis.DB)
	}
	if c.Redis.DB != 0 && len(c.Redis.Addrs) > 1 {
		return fmt.Errorf("redis.db: %d with several addrs (a cluster only has db 0)", c.Redis.DB)
	}
	if c.Redis.ClientCacheTTL < 0 {
		return fmt.Errorf("redis.client_cache_ttl: must be >= 0 (0 disables it), got %s", c.Redis.ClientCacheTTL)
	}
	return nil
}

// Key layout; see the package comment.
const (
	tickPrefix    = "market_data:tick:"
	historyPrefix = "market_data:tick_history:"
	pairsKey      = "market_data:pairs"
)

func tickKey(p tick.Pair) string    { return tickPrefix + p.Exchange + ":" + p.Symbol }
func historyKey(p tick.Pair) string { return historyPrefix + p.Exchange + ":" + p.Symbol }

// errNotConnected is what reads return before Connect has built a backend.
var errNotConnected = fmt.Errorf("cache: %w", sinks.ErrNotConnected)

// backend is where the ticks live: Redis or process memory.
type backend interface {
	// write applies one batch, grouped by pair. stale counts pairs whose
	// latest tick was not replaced because a newer one was already there.
	write(ctx context.Context, groups []group) (stale int, err error)
	latest(ctx context.Context, p tick.Pair) (tick.Tick, bool, error)
	history(ctx context.Context, q tick.Query) (tick.Window, error)
	// putLatest sets p's latest tick unless a newer one is there.
	putLatest(ctx context.Context, t *tick.Tick, js []byte) error
	pairs(ctx context.Context) ([]tick.Tick, error)
	// candles is p's 1m buckets (empty when candles are off).
	candles(ctx context.Context, p tick.Pair) (candleState, error)
	// writeTrades adds each pair's trades to its recent trades, and those
	// not yet counted to its 1m volume buckets (volume.go); dups is how
	// many the volume had counted already.
	writeTrades(ctx context.Context, groups []tradeGroup) (dups int, err error)
	// recentTrades is p's newest trades' JSON, newest first, at most limit.
	recentTrades(ctx context.Context, p tick.Pair, limit int) ([]string, error)
	ping(ctx context.Context) error
	close()
}

// group is one pair's share of a batch.
type group struct {
	pair tick.Pair
	// newest indexes the tick with the greatest event time (the first of
	// equals, matching "only a strictly newer tick replaces latest").
	newest  int
	entries []entry
}

type entry struct {
	t    *tick.Tick
	json string // the history member: same tick, same bytes
}

// Cache is the latest-tick cache itself, Redis or process memory: the
// cache sink writes it, the API and the push feed read it. The host opens
// one per process from the cache section of the config (Open), whether or
// not the sink consumes in that process, and hands the same value to every
// reader and to the sink; a sink built without one opens its own.
type Cache struct {
	cfg   Config
	log   *slog.Logger
	clk   clock.Clock
	m     *metrics
	be    atomic.Pointer[backendBox]
	state stateLog

	connectMu sync.Mutex
	// lastDial paces the dials a reader triggers (see backend), so a
	// Redis that is down is not dialled once per API request.
	lastDial time.Time
}

type backendBox struct{ backend }

// Sink is the cache sink: it writes batches into a Cache, and serves the
// Cache's reads too.
type Sink struct {
	*Cache
	owned bool // the sink opened the Cache, so it closes it
}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Readier   = (*Sink)(nil)
	_ sinks.Readier   = (*Cache)(nil)
	_ sinks.Validator = (*Config)(nil)
)

// Open builds the cache from its settings. With no Redis address it is
// ready at once (process memory, which only a cache sink in the same
// process fills); with Redis it dials in Connect, or on the first read.
// Its metrics register with env.Metrics.
func Open(env sinks.Env, cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{cfg: cfg, log: log, clk: clock.OrReal(env.Clock)}
	c.state.log = log
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.m = m
	c.state.up = m.up
	if len(cfg.Redis.Addrs) == 0 {
		c.be.Store(&backendBox{newMemory(c.clk, cfg)})
		c.log.Info("cache: no redis.addrs configured, keeping ticks in process memory")
	}
	return c, nil
}

// New builds the sink. It writes into the Cache the host shares through
// env.Backend("cache") when there is one, else into one of its own.
func New(env sinks.Env, cfg Config) (*Sink, error) {
	if env.Backend != nil {
		if b, ok := env.Backend("cache"); ok {
			if c, ok := b.(*Cache); ok {
				return &Sink{Cache: c}, nil
			}
		}
	}
	c, err := Open(env, cfg)
	if err != nil {
		return nil, err
	}
	return &Sink{Cache: c, owned: true}, nil
}

// Close releases the Cache if the sink opened it; a shared one is the
// host's to close, after every reader is done.
func (s *Sink) Close(ctx context.Context) error {
	if s.owned {
		return s.Cache.Close(ctx)
	}
	return nil
}

// WriteBatch stores the batch: per pair one conditional latest update, one
// multi-member ZADD, one trim, one expire and one candle merge, all
// pipelined in one round trip (a second one only for pairs whose candle
// watermark was not the one guessed: a new owner's first batch). Invalid ticks are dropped and counted (retrying them could never
// succeed); any backend error fails the whole batch, which is idempotent to
// retry.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	return s.Cache.write(ctx, batch)
}

// Memory reports whether the cache lives in process memory, which only a
// cache sink in the same process fills.
func (c *Cache) Memory() bool { return len(c.cfg.Redis.Addrs) == 0 }

// Backend names the backend in use, for logs and /readyz.
func (c *Cache) Backend() string {
	if c.Memory() {
		return "memory"
	}
	return "redis " + strings.Join(c.cfg.Redis.Addrs, ",")
}

// Connect dials Redis (once; rueidis reconnects by itself afterwards).
func (c *Cache) Connect(ctx context.Context) error {
	c.connectMu.Lock()
	defer c.connectMu.Unlock()
	return c.connectLocked(ctx)
}

func (c *Cache) connectLocked(ctx context.Context) error {
	if c.be.Load() != nil {
		return nil
	}
	if c.Memory() { // connecting again after Close
		c.be.Store(&backendBox{newMemory(c.clk, c.cfg)})
		return nil
	}
	c.lastDial = c.clk.Now()
	r, err := dialRedis(ctx, c.cfg, c.log, c.m.candleRecomputed, c.m.candleMergedHere)
	if err != nil {
		err = fmt.Errorf("cache: connect %s: %w", c.Backend(), err)
		c.state.observe(err)
		return err
	}
	c.be.Store(&backendBox{r})
	c.state.observe(nil)
	return nil
}

// readerDialEvery bounds how often reads dial a Redis nobody has connected
// yet (an API-only process has no sink to call Connect).
const readerDialEvery = time.Second

// backend returns the connected backend. Before anyone connected, a read
// dials once itself (at most every readerDialEvery, and never waiting on
// a dial already under way), so a process that only reads needs no
// Connect call.
func (c *Cache) backend(ctx context.Context) (backend, error) {
	if b, err := c.connected(); err == nil {
		return b, nil
	}
	if !c.connectMu.TryLock() {
		return nil, errNotConnected
	}
	defer c.connectMu.Unlock()
	if b := c.be.Load(); b != nil {
		return b.backend, nil
	}
	if !c.lastDial.IsZero() && c.clk.Now().Sub(c.lastDial) < readerDialEvery {
		return nil, errNotConnected
	}
	if err := c.connectLocked(ctx); err != nil {
		return nil, err
	}
	return c.be.Load().backend, nil
}

// connected returns the backend once Connect has built it. The write path
// uses it: the runtime connects, and reconnects on ErrNotConnected.
func (c *Cache) connected() (backend, error) {
	if b := c.be.Load(); b != nil {
		return b.backend, nil
	}
	return nil, errNotConnected
}

func (c *Cache) write(ctx context.Context, batch []tick.Tick) error {
	b, err := c.connected()
	if err != nil {
		return err
	}
	groups, invalid := c.group(batch)
	if invalid > 0 {
		c.m.invalid.Add(float64(invalid))
	}
	if len(groups) == 0 {
		return nil
	}
	stale, err := b.write(ctx, groups)
	if err != nil {
		c.m.batchErrors.Inc()
		if ctx.Err() == nil {
			c.state.observe(err)
		}
		return fmt.Errorf("cache: write %d ticks: %w", len(batch)-invalid, err)
	}
	c.state.observe(nil)
	c.m.written.Add(float64(len(batch) - invalid))
	c.m.stale.Add(float64(stale))
	return nil
}

func (c *Cache) group(batch []tick.Tick) ([]group, int) {
	var (
		groups   []group
		idx      = make(map[tick.Pair]int, 8)
		invalid  int
		firstBad error
		buf      []byte
	)
	defer func() {
		// One line per batch, not per tick: a misbehaving producer must
		// not flood the log.
		if invalid > 0 {
			c.log.Warn("cache: dropped invalid ticks", "count", invalid, "first", firstBad)
		}
	}()
	for i := range batch {
		t := &batch[i]
		if err := validTick(t); err != nil {
			if invalid == 0 {
				firstBad = fmt.Errorf("%s at %d: %w", t.Key(), t.Timestamp, err)
			}
			invalid++
			continue
		}
		p := t.Pair()
		gi, ok := idx[p]
		if !ok {
			gi = len(groups)
			idx[p] = gi
			groups = append(groups, group{pair: p})
		}
		g := &groups[gi]
		buf = t.AppendJSON(buf[:0])
		g.entries = append(g.entries, entry{t: t, json: string(buf)})
		if t.Timestamp > g.entries[g.newest].t.Timestamp {
			g.newest = len(g.entries) - 1
		}
	}
	return groups, invalid
}

// validTick rejects what cannot be stored under the key layout: a ':' in a
// name would make two pairs share a key, and an event time past maxScore is
// not exact as a score and would pin latest (nothing real is newer) for a
// whole TTL.
func validTick(t *tick.Tick) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.Timestamp > maxScore {
		return fmt.Errorf("timestamp %d is past 2^53 ms (not Unix milliseconds?)", t.Timestamp)
	}
	for _, s := range [...]string{t.Exchange, t.Symbol} {
		for _, c := range []byte(s) {
			if c <= ' ' || c == ':' || c == 0x7f {
				return fmt.Errorf("name %q has a character not allowed in a key", s)
			}
		}
	}
	return nil
}

// Close releases the backend.
func (c *Cache) Close(context.Context) error {
	if b := c.be.Swap(nil); b != nil {
		b.close()
	}
	return nil
}

// Ready pings the backend, so /readyz notices Redis going away between
// batches too.
func (c *Cache) Ready(ctx context.Context) error {
	b, err := c.backend(ctx)
	if err != nil {
		return err
	}
	if err := b.ping(ctx); err != nil {
		err = fmt.Errorf("cache: %s: %w", c.Backend(), err)
		if ctx.Err() == nil {
			c.state.observe(err)
		}
		return err
	}
	c.state.observe(nil)
	return nil
}

// Latest is the pair's newest tick (the API's TickCache).
func (c *Cache) Latest(ctx context.Context, exchange, symbol string) (tick.Tick, bool, error) {
	b, err := c.backend(ctx)
	if err != nil {
		return tick.Tick{}, false, err
	}
	return b.latest(ctx, tick.Pair{Exchange: exchange, Symbol: symbol})
}

// History answers q from the pair's recent ticks (the API's TickCache).
func (c *Cache) History(ctx context.Context, q tick.Query) (tick.Window, error) {
	b, err := c.backend(ctx)
	if err != nil {
		return tick.Window{}, err
	}
	if q.Limit <= 0 || q.Limit > c.cfg.History {
		q.Limit = c.cfg.History
	}
	return b.history(ctx, q)
}

// Put is the API's TickCache.Put: the API re-populates the cache with what
// the history store returned. Like a write, it never moves latest back.
func (c *Cache) Put(ctx context.Context, t tick.Tick) error {
	b, err := c.backend(ctx)
	if err != nil {
		return err
	}
	if err := validTick(&t); err != nil {
		return fmt.Errorf("cache: put: %w", err)
	}
	return b.putLatest(ctx, &t, t.AppendJSON(nil))
}

// RecentCandles answers q from the pair's rolling 1m candles (the API's
// CandleCache), merged into q.Interval buckets, which must be whole
// minutes; see tick.CandleWindow for what Since promises.
func (c *Cache) RecentCandles(ctx context.Context, q tick.CandleQuery) (tick.CandleWindow, error) {
	if err := checkCandleQuery(q); err != nil {
		return tick.CandleWindow{}, err
	}
	if c.cfg.CandleRetention == 0 {
		return tick.CandleWindow{}, errCandlesOff
	}
	b, err := c.backend(ctx)
	if err != nil {
		return tick.CandleWindow{}, err
	}
	st, err := b.candles(ctx, tick.Pair{Exchange: q.Exchange, Symbol: q.Symbol})
	if err != nil {
		return tick.CandleWindow{}, err
	}
	return st.window(q, c.cfg.CandleRetention), nil
}

// errCandlesOff is what candle reads answer with candle_retention 0, so
// the API says why rather than serving an empty chart.
var errCandlesOff = errors.New("cache: candles are off (candle_retention: 0)")

// Pairs lists every cached pair's latest tick (the API's TickCache and
// the push feed's snapshots).
func (c *Cache) Pairs(ctx context.Context) ([]tick.Tick, error) {
	b, err := c.backend(ctx)
	if err != nil {
		return nil, err
	}
	return b.pairs(ctx)
}

// stateLog logs the backend's health once per change, not once per batch.
type stateLog struct {
	log *slog.Logger
	up  prometheus.Gauge

	mu     sync.Mutex
	known  bool
	down   bool
	reason string
}

func (l *stateLog) observe(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	down := err != nil
	if l.known && down == l.down {
		return
	}
	wasKnown := l.known
	l.known, l.down = true, down
	if down {
		l.reason = err.Error()
		l.up.Set(0)
		l.log.Warn("cache: backend unavailable; batches will be retried", "err", err)
		return
	}
	l.up.Set(1)
	if wasKnown {
		l.log.Info("cache: backend available again", "was", l.reason)
	}
	l.reason = ""
}

type metrics struct {
	written, invalid, stale, batchErrors prometheus.Counter
	candleRecomputed, candleMergedHere   prometheus.Counter
	tradesCounted, tradesSeen            prometheus.Counter
	tradesInvalid                        prometheus.Counter
	up                                   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_ticks_written_total", Help: "Ticks the cache sink stored."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_ticks_invalid_total", Help: "Ticks the cache sink dropped as invalid."}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_latest_stale_total",
			Help: "Per-pair latest updates not applied because a newer tick was already cached (replays, out-of-order)."}),
		batchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_batch_errors_total", Help: "Batches the cache backend failed to store."}),
		candleRecomputed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_candle_updates_recomputed_total",
			Help: "Per-pair candle updates sent to Redis again because the watermark there was not the one guessed (a new owner's or a restarted sink's first batch of a pair, another writer)."}),
		candleMergedHere: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_candle_updates_merged_here_total",
			Help: "Per-pair candle updates the sink merged itself and wrote behind a watermark check, because it knew the stored buckets they touch (its own last write); the others were merged by the Redis script."}),
		tradesCounted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_trades_counted_total", Help: "Trades the cache sink added to a 1m bucket's volume."}),
		tradesSeen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_trades_redelivered_total",
			Help: "Trades the cache sink did not add again because the pair's trade watermark had counted them (retries, replays)."}),
		tradesInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_cache_trades_invalid_total", Help: "Trades the cache sink dropped as invalid."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_cache_backend_up", Help: "1 when the last cache backend operation succeeded."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.written, m.invalid, m.stale, m.batchErrors, m.candleRecomputed, m.candleMergedHere,
		m.tradesCounted, m.tradesSeen, m.tradesInvalid, m.up} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
