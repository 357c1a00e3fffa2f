// Package store is the store sink: every tick lands in ClickHouse for
// history and backtests, and the API reads tick pages, the latest tick and
// candles back from it.
//
// Rows travel as ch-go columns (proto.Input) over one of two transports,
// chosen by the URL scheme: clickhouse:// uses ch-go's native TCP client,
// http(s):// posts the same columns as a FORMAT Native body and reads query
// results back as FORMAT Native. The HTTP one is what ClickHouse Cloud and
// HTTP proxies use, and the one that talks to the ClickHouse Debian ships
// (18.16), whose native protocol revision ch-go's client cannot speak.
//
// Delivery is at least once (the runtime replays a batch whose commit was
// lost), so the table is a ReplacingMergeTree keyed by the tick's identity
// and every read groups by that identity: a replayed tick is never visible
// twice.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "store",
		// Every instance writes the one ClickHouse table; replayed copies
		// collapse (ReplacingMergeTree), so the partitions are split.
		Sharing: func(any) sinks.Sharing { return sinks.Shared },
		// While the feed is slow a batch waits for 1000 ticks or 5 s (an
		// INSERT makes a part: ClickHouse wants few, large ones); a faster
		// feed is written at most once a second (min_interval), so the
		// batch grows with the rate up to 50 000, as it does under backlog
		// while the previous INSERT runs. Measured in docs/PERFORMANCE.md
		// ("The store's insert interval").
		Batch:  sinks.BatchPolicy{Size: 50_000, Min: 1000, MaxWait: 5 * time.Second, MinInterval: time.Second},
		Config: func() any { return DefaultConfig() },
		New:    sinks.Typed(func(env sinks.Env, c *Config) (*Sink, error) { return New(env, *c) }),
	})
}

// Config is the sink's section of the config file, sinks.store.
type Config struct {
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
}

// ClickHouseConfig locates the server and the table.
type ClickHouseConfig struct {
	// URL picks the transport: clickhouse://host:9000 (native TCP, LZ4) or
	// http(s)://host:8123 (HTTP interface). Empty: the store is unavailable.
	URL string `yaml:"url"`
	// Database holds the table; created if missing. Default "default" (for
	// clickhouse:// URLs, the URL's path if it names one).
	Database string `yaml:"database"`
	// Username and Password override any in the URL. Default user "default".
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Table is created at start if missing. Default "market_ticks".
	Table string `yaml:"table"`
	// TradesTable holds the trades (topic market_data.trades), created at
	// start if missing. Default "market_trades".
	TradesTable string `yaml:"trades_table"`
	// Timeout bounds one request. Default 30 s.
	Timeout time.Duration `yaml:"timeout"`
	// RetentionDays, when > 0, adds a TTL to a newly created table on
	// servers that support it (20.3+); 0 keeps ticks forever. An existing
	// table is never altered.
	RetentionDays int `yaml:"retention_days"`
}

// DefaultConfig is the config with every default set.
func DefaultConfig() *Config {
	return &Config{ClickHouse: ClickHouseConfig{Table: "market_ticks", TradesTable: "market_trades", Timeout: 30 * time.Second}}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the settings that do not need a server. An empty URL is
// valid: the sink then reports itself unavailable rather than failing the
// whole config.
func (c *Config) Validate() error {
	ch := c.ClickHouse
	if ch.URL != "" {
		if _, err := parseEndpoint(ch); err != nil {
			return fmt.Errorf("clickhouse.%w", err)
		}
	}
	if ch.Database != "" && !identRE.MatchString(ch.Database) {
		return fmt.Errorf("clickhouse.database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", ch.Database)
	}
	if !identRE.MatchString(ch.Table) {
		return fmt.Errorf("clickhouse.table: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", ch.Table)
	}
	if !identRE.MatchString(ch.TradesTable) {
		return fmt.Errorf("clickhouse.trades_table: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", ch.TradesTable)
	}
	if ch.TradesTable == ch.Table {
		return fmt.Errorf("clickhouse.trades_table: %q is also clickhouse.table; ticks and trades need a table each", ch.TradesTable)
	}
	if ch.Timeout <= 0 {
		return fmt.Errorf("clickhouse.timeout: must be > 0, got %s", ch.Timeout)
	}
	if ch.RetentionDays < 0 {
		return fmt.Errorf("clickhouse.retention_days: must be >= 0, got %d", ch.RetentionDays)
	}
	return nil
}

// History is the tick history itself, one ClickHouse table: the store
// sink writes it, the API reads ticks and candles from it. The host opens
// one per process from the store section of the config (Open), whether or
// not the sink consumes in that process, and shares it; a sink built
// without one opens its own.
type History struct {
	cfg   ClickHouseConfig
	ep    endpoint
	tr    transport
	table string // quoted `database`.`table`
	// tradesTable is the trades table, quoted likewise.
	tradesTable string
	log         *slog.Logger
}

// Sink writes batches to ClickHouse and answers history queries.
type Sink struct {
	*History
	owned bool // the sink opened History, so it closes it
	m     *metrics
	// users counts the open sides of the sink (ticks, and trades once
	// TradeWriter was called); an owned History is closed with the last one.
	users atomic.Int32
	// trades is the trade writer, made by TradeWriter.
	tradesOnce sync.Once
	trades     *TradeWriter

	// mu guards the schema state Connect settles and the write path's
	// reusable columns (the runtime writes one batch at a time, but Ready
	// and the API may run alongside).
	mu        sync.Mutex
	connected bool
	features  features
	cols      *columns

	// state is the last outcome of talking to ClickHouse, for logging
	// on change and for Ready.
	stateMu sync.Mutex
	lastErr error
}

// Compile-time checks of the optional interfaces the host looks for.
var (
	_ sinks.Sink    = (*Sink)(nil)
	_ sinks.Readier = (*Sink)(nil)
)

// Open builds the history from its settings; it does not dial. With no URL
// it returns an error wrapping sinks.ErrUnavailable.
func Open(env sinks.Env, cfg Config) (*History, error) {
	if cfg.ClickHouse.URL == "" {
		return nil, fmt.Errorf("store: no clickhouse.url configured: %w", sinks.ErrUnavailable)
	}
	def := DefaultConfig().ClickHouse
	if cfg.ClickHouse.Table == "" {
		cfg.ClickHouse.Table = def.Table
	}
	if cfg.ClickHouse.TradesTable == "" {
		cfg.ClickHouse.TradesTable = def.TradesTable
	}
	if cfg.ClickHouse.Timeout <= 0 {
		cfg.ClickHouse.Timeout = def.Timeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	ep, err := parseEndpoint(cfg.ClickHouse)
	if err != nil {
		return nil, fmt.Errorf("store: clickhouse.%w", err)
	}
	tr, err := newTransport(ep)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &History{
		cfg:         cfg.ClickHouse,
		ep:          ep,
		tr:          tr,
		table:       quoteIdent(ep.database) + "." + quoteIdent(cfg.ClickHouse.Table),
		tradesTable: quoteIdent(ep.database) + "." + quoteIdent(cfg.ClickHouse.TradesTable),
		// The host scopes the logger already.
		log: log.With("clickhouse", ep.url.Redacted(), "transport", tr.name()),
	}, nil
}

// Ping reports whether ClickHouse answers, for a process that reads the
// history without running the sink.
func (h *History) Ping(ctx context.Context) error {
	if err := h.tr.ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// Close releases the transport's connections.
func (h *History) Close(context.Context) error { return h.tr.close() }

// New builds the sink; it does not dial. It writes into the History the
// host shares through env.Backend("store") when there is one, else into
// one of its own; with no URL it returns an error wrapping
// sinks.ErrUnavailable.
func New(env sinks.Env, cfg Config) (*Sink, error) {
	s := &Sink{}
	if env.Backend != nil {
		if b, ok := env.Backend("store"); ok {
			s.History, _ = b.(*History)
		}
	}
	if s.History == nil {
		h, err := Open(env, cfg)
		if err != nil {
			return nil, err
		}
		s.History, s.owned = h, true
	}
	m, err := newMetrics(env.Metrics)
	if err != nil {
		if s.owned {
			_ = s.History.Close(context.Background())
		}
		return nil, fmt.Errorf("store: %w", err)
	}
	s.m = m
	s.users.Store(1)
	return s, nil
}

// Connect detects the server's features and creates or checks the table.
// The runtime calls it again after a WriteBatch error wrapping
// sinks.ErrNotConnected, which is how a server that lost its data dir gets
// its table back.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected = false
	err := s.ensureSchema(ctx)
	s.observe(err)
	return err
}

func (s *Sink) ensureSchema(ctx context.Context) error {
	f, err := detectFeatures(ctx, s.tr)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.ep.database != "default" {
		if err := s.tr.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(s.ep.database)); err != nil {
			return fmt.Errorf("store: create database: %w", err)
		}
	}
	if err := s.tr.exec(ctx, tableDDL(s.table, f, s.cfg.RetentionDays)); err != nil {
		return fmt.Errorf("store: create table: %w", err)
	}
	l, err := checkTable(ctx, s.tr, s.ep.database, s.cfg.Table, f)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.cfg.RetentionDays > 0 && !f.ttl {
		s.log.Warn("clickhouse has no TTL support; retention_days is not enforced", "version", f.version)
	}
	if s.cols == nil || s.cols.layout != l || s.features != f {
		s.log.Info("store schema ready", "version", f.version, "table", s.table,
			"low_cardinality", l.lowCardExchange, "codecs", f.codecs, "ttl", f.ttl && s.cfg.RetentionDays > 0)
	}
	s.features = f
	s.cols = newColumns(l)
	s.connected = true
	return nil
}

// WriteBatch inserts the batch as one block. A tick with a decimal that
// does not fit Decimal(38, 18) exactly, or whose scale does not fit its
// scale column, is rejected and counted, never rounded; the rest of the batch is written. It returns nil only once
// ClickHouse has acknowledged the insert.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.connected {
		return fmt.Errorf("store: %w", sinks.ErrNotConnected)
	}
	c := s.cols
	c.reset()
	var rejects rejectCount
	for i := range batch {
		t := &batch[i]
		if err := c.append(t); err != nil {
			rejects.add(t, err)
		}
	}
	if c.rows() == 0 {
		s.countRejects(&rejects, len(batch))
		return nil
	}
	start := time.Now()
	err := s.tr.insert(ctx, s.table, c.input)
	s.m.insertSeconds.Observe(time.Since(start).Seconds())
	s.observe(err)
	if err != nil {
		s.m.insertErrors.Inc()
		if isLinkError(err) || isCode(err, codeUnknownTable) || isCode(err, codeUnknownDatabase) {
			// Reconnecting re-checks the schema: a restarted server may
			// have come back without the table.
			s.connected = false
			return fmt.Errorf("store: insert %d ticks: %w: %w", c.rows(), sinks.ErrNotConnected, err)
		}
		return fmt.Errorf("store: insert %d ticks: %w", c.rows(), err)
	}
	s.m.rows.Add(float64(c.rows()))
	s.countRejects(&rejects, len(batch))
	return nil
}

// rejectCount tallies a batch's rejected ticks by reason.
type rejectCount struct {
	n     map[string]int
	first error
}

func (r *rejectCount) add(t *tick.Tick, err error) {
	if r.n == nil {
		r.n = map[string]int{}
		r.first = fmt.Errorf("%s @%d: %w", t.Key(), t.Timestamp, err)
	}
	r.n[rejectReason(err)]++
}

// countRejects reports a batch's rejects once it is settled: a batch that
// is retried must not count its rejects once per attempt.
func (s *Sink) countRejects(r *rejectCount, batch int) {
	if r.n == nil {
		return
	}
	total := 0
	for reason, n := range r.n {
		s.m.rejected.WithLabelValues(reason).Add(float64(n))
		total += n
	}
	s.log.Warn("ticks rejected: a decimal does not fit Decimal(38, 18) and its scale exactly",
		"rejected", total, "batch", batch, "first", r.first)
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, errTooPrecise), errors.Is(err, errScaleTooLarge):
		return "too_precise"
	case errors.Is(err, errTooLarge):
		return "too_large"
	default:
		return "not_finite"
	}
}

// observe records the outcome of talking to ClickHouse and logs when it
// changes from working to failing or back, not on every attempt.
func (s *Sink) observe(err error) {
	if errors.Is(err, context.Canceled) {
		return // a shutdown says nothing about the server
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.lastErr = err
	up := 1.0
	if err != nil {
		up = 0
	}
	if s.m.up.get() == up {
		return
	}
	s.m.up.set(up)
	if err != nil {
		s.log.Warn("clickhouse failing; batches are retried and not committed until it answers", "err", err)
	} else {
		s.log.Info("clickhouse answering")
	}
}

// Ready reports whether the store can write now: the schema is settled,
// the server answers a ping, and the last write did not fail.
func (s *Sink) Ready(ctx context.Context) error {
	s.mu.Lock()
	connected := s.connected
	s.mu.Unlock()
	if err := s.tr.ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	if !connected {
		return errors.New("clickhouse schema not checked yet")
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.lastErr != nil {
		return fmt.Errorf("last write failed: %w", s.lastErr)
	}
	return nil
}

// Close releases the History if the sink opened it and its trade writer
// (if any) is closed too; a shared one is the host's to close, after every
// reader is done.
func (s *Sink) Close(context.Context) error { return s.release() }

func (s *Sink) acquire() { s.users.Add(1) }

// release ends one side's use of the History, closing an owned one after
// the last.
func (s *Sink) release() error {
	if s.users.Add(-1) == 0 && s.owned {
		return s.History.Close(context.Background())
	}
	return nil
}

// metrics are the sink's own; the runtime counts batches and latency.
type metrics struct {
	rows           prometheus.Counter
	tradeRows      prometheus.Counter
	tradesRejected *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	insertErrors   prometheus.Counter
	insertSeconds  prometheus.Histogram
	up             gaugeValue
}

// gaugeValue is a gauge that remembers its value: -1 unknown, 0 down, 1 up.
type gaugeValue struct {
	g prometheus.Gauge
	v float64
}

func (g *gaugeValue) set(v float64) { g.v = v; g.g.Set(v) }
func (g *gaugeValue) get() float64  { return g.v }

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_store_rows_inserted_total", Help: "Rows ClickHouse acknowledged (replays count again).",
		}),
		tradeRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_store_trade_rows_inserted_total", Help: "Trade rows ClickHouse acknowledged (replays count again).",
		}),
		tradesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_store_trades_rejected_total", Help: "Trades not stored: not valid (reason=invalid), or a price or size that does not fit Decimal(38, 18) and its scale exactly.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_store_ticks_rejected_total", Help: "Ticks not stored because a decimal does not fit Decimal(38, 18) and its scale exactly.",
		}, []string{"reason"}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_store_insert_errors_total", Help: "INSERTs that failed (each is retried by the runtime).",
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tickflow_store_insert_seconds", Help: "Time for one batch INSERT to be acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		up: gaugeValue{g: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_store_clickhouse_up", Help: "1 when the last request to ClickHouse succeeded, 0 when it failed, -1 before the first.",
		}), v: -1},
	}
	m.up.g.Set(-1)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rows, m.tradeRows, m.tradesRejected, m.rejected, m.insertErrors, m.insertSeconds, m.up.g} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("metrics: %w", err)
			}
		}
	}
	return m, nil
}
