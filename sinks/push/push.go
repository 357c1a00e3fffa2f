// Package push is the push sink: it fans ticks, alerts, signals, trades
// and quotes out to browsers over WebSocket (github.com/coder/websocket).
//
// The sink consumes in a group of its own on every instance
// (sinks.PerInstance), so each instance's browsers get every tick.
// WriteBatch encodes each tick once, with its position in the tick topic, and hands it to a hub sharded by
// partition; the same bytes then go to every
// subscribed connection's queue. Enqueueing never waits for a client: each
// connection has its own writer and a queue bounded in bytes, slow clients
// get conflated ticks and quotes (the newest per pair) and then get disconnected, so
// one stalled browser delays neither other clients nor the sink's commits.
// Delivery to browsers is best-effort by nature, so a batch counts as
// written once the hub has it; after a crash the instance's group resumes from Kafka.
// A browser that reconnects with its position gets what it missed from the
// broker's log (recover.go, protocol.go).
//
// Alerts and signals come from their topics (risk.alerts,
// strategy.signals), which Run follows without a consumer group: every push
// instance sees every alert, whichever process raised it, and fans it out
// on the "alert" and "signal" channels. Following starts from the topics'
// ends (a browser gets live events, not history; the REST API lists recent
// ones). Trades (market_data.trades) and quotes (market_data.quotes) are
// followed the same way, on the "trade" and "quote" channels.
//
// Besides Sink it implements sinks.Service (Run serves the WebSocket
// listener and follows the topics), sinks.Readier and PushURL (for the web
// page).
package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "push",
		// Small and quick: browsers should see a tick within milliseconds.
		Batch: sinks.BatchPolicy{Size: 256, MaxWait: 2 * time.Millisecond},
		// Each instance's browsers must get every tick of their filters,
		// whichever partition it is on, so every instance consumes every
		// tick; a restarted instance resumes from its own commit.
		Sharing: func(any) sinks.Sharing { return sinks.PerInstance },
		Config:  func() any { return DefaultConfig() },
		New:     sinks.Typed(New),
	})
}

var (
	_ sinks.Sink           = (*Sink)(nil)
	_ sinks.PositionWriter = (*Sink)(nil)
	_ sinks.Service        = (*Sink)(nil)
	_ sinks.Readier        = (*Sink)(nil)
)

// latestSource is what the push sink needs from the cache backend
// (env.Backend("cache"), Redis or in-process): the latest tick of every
// pair it holds, for snapshots after a restart, before the hub has seen
// every pair again.
type latestSource interface {
	Pairs(ctx context.Context) ([]tick.Tick, error)
}

// cacheTTL is how long one answer from the cache serves snapshots, so a
// thousand browsers reconnecting at once ask the cache once.
const cacheTTL = time.Second

// Sink is the push sink.
type Sink struct {
	cfg Config
	log *slog.Logger
	clk clock.Clock
	m   *metrics
	hub *hub
	// backend finds the cache backend for snapshots; follower reads the
	// alert and signal topics. Either may be nil.
	backend  func(string) (any, bool)
	follower sinks.Follower
	// log reads the tick topic's retained log for recoveries (the bus
	// follower, when it can); nil: no recovery.
	logRd logReader
	// recoveries bounds concurrent recoveries.
	recoveries chan struct{}

	posMu   sync.Mutex
	topic   string // the tick topic, from the runtime's assignment
	topicID string // its topic ID; "" hands out no positions

	cacheMu   sync.Mutex
	cache     latestSource
	cacheAt   time.Time
	cacheMsgs []*message

	lnMu    sync.Mutex
	ln      net.Listener
	serving atomic.Bool

	// tcpWriteBuffer, when set, shrinks each connection's kernel send
	// buffer: tests use it to make a client that stops reading block the
	// server's writes after kilobytes rather than megabytes.
	tcpWriteBuffer int

	connMu   sync.Mutex
	conns    map[*client]struct{}
	handlers sync.WaitGroup
	closed   atomic.Bool
}

// New builds the sink. It binds nothing: Listen (or Run) does.
func New(env sinks.Env, cfg *Config) (*Sink, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return nil, err
	}
	lr, _ := env.Follower.(logReader)
	return &Sink{
		cfg:        *cfg,
		log:        log,
		clk:        clock.OrReal(env.Clock),
		m:          m,
		hub:        newHub(cfg.Shards, m),
		backend:    env.Backend,
		follower:   env.Follower,
		logRd:      lr,
		recoveries: make(chan struct{}, cfg.Limits.RecoveryConcurrency),
		conns:      map[*client]struct{}{},
	}, nil
}

// Assigned learns the tick topic, its identity (the epoch of every
// position handed out) and where each partition resumes.
func (s *Sink) Assigned(a sinks.Assignment) {
	s.posMu.Lock()
	s.topic, s.topicID = a.Topic, a.TopicID
	s.posMu.Unlock()
	if a.TopicID != "" {
		s.hub.assign(a.Next)
	}
}

func (s *Sink) epoch() string {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	return s.topicID
}

func (s *Sink) now() int64 { return s.clk.Now().UnixNano() }

// Connect starts the hub and looks up the cache backend for snapshots.
// Nothing in it can fail: without a cache the hub's own last ticks serve
// snapshots.
func (s *Sink) Connect(context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("push: %w", errHubClosed)
	}
	s.hub.run()
	if s.backend == nil {
		return nil
	}
	b, ok := s.backend("cache")
	if !ok || b == nil {
		return nil
	}
	src, ok := b.(latestSource)
	if !ok {
		s.log.Warn("push: the cache backend has no Pairs method; snapshots use the hub's own last ticks", "backend", fmt.Sprintf("%T", b))
		return nil
	}
	s.cacheMu.Lock()
	s.cache = src
	s.cacheMu.Unlock()
	return nil
}

// WriteBatch encodes each tick once and hands it to the hub. It returns
// once the hub has taken the batch; it never waits for a client.
// Redelivered batches reach clients twice: acceptable for a best-effort
// feed, and a client can drop a tick older than the one it shows.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	return s.WriteBatchAt(ctx, batch, nil)
}

// WriteBatchAt is WriteBatch with each tick's position in the tick topic
// (pos[i] is batch[i]'s; nil: none), which goes out with the tick so a
// client can resume from it.
func (s *Sink) WriteBatchAt(ctx context.Context, batch []tick.Tick, pos []sinks.Position) error {
	if s.closed.Load() {
		return fmt.Errorf("push: %w", errHubClosed)
	}
	s.hub.run()
	at := s.now()
	msgs := make([]*message, 0, len(batch))
	for i := range batch {
		t := &batch[i]
		if t.Exchange == "" || t.Symbol == "" {
			continue // not a pair: nothing could subscribe to it
		}
		part, off := int32(-1), int64(0)
		if pos != nil {
			part, off = pos[i].Partition, pos[i].Offset
		}
		msgs = append(msgs, &message{
			data: encodeTick(make([]byte, 0, 320), t, part, off), ch: chTick,
			exchange: t.Exchange, symbol: t.Symbol, pair: t.Key(),
			ts: t.Timestamp, at: at, recvUS: t.ReceivedAt, positioned: pos != nil, part: part, off: off,
		})
	}
	if err := s.hub.dispatch(ctx, msgs); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	s.m.ticks.Add(float64(len(msgs)))
	return nil
}

// errNotJSON: a record on a followed topic that is not JSON.
var errNotJSON = errors.New("record value is not JSON")

// publish fans an alert, signal, trade or quote out to the subscribers of
// its channel.
// key is "exchange:symbol" when the event is about a pair (subscriptions
// filter on it) and anything else otherwise (then only subscriptions
// without exchange and symbol filters get it). payload is the event's JSON,
// the record's value as risk and strategy publish it; clients receive
// {"type":channel,"key":key,"data":payload}. It never waits for a client
// and does not keep payload.
func (s *Sink) publish(ch channel, key string, payload []byte) error {
	if !json.Valid(payload) {
		return errNotJSON
	}
	if s.closed.Load() {
		return nil
	}
	channel := ch.String()
	m := &message{data: encodeEvent(ch, key, payload), ch: ch, pair: key, at: s.now()}
	if ex, sym, ok := strings.Cut(key, ":"); ok && ex != "" && sym != "" && !strings.Contains(sym, ":") {
		m.exchange, m.symbol = tick.NormalizeExchange(ex), tick.NormalizeSymbol(sym)
	}
	s.hub.publish(m)
	s.m.events.WithLabelValues(channel).Inc()
	return nil
}

// eventTopics are the topics push follows, by channel.
var eventTopics = []struct {
	topic string
	ch    channel
}{{alert.Topic, chAlert}, {signal.Topic, chSignal}, {ingest.TradeTopic, chTrade}, {tick.QuoteTopic, chQuote}}

// follow fans the alert, signal, trade and quote topics out until ctx
// ends. Backfill 0: browsers get events raised from now on; the REST API
// serves history.
func (s *Sink) follow(ctx context.Context) {
	if s.follower == nil {
		s.log.Warn("push: no bus follower; the alert, signal, trade and quote channels stay silent")
		return
	}
	var wg sync.WaitGroup
	for _, et := range eventTopics {
		r := &events.Reader{
			Follower: s.follower, Topic: et.topic, Logger: s.log, Clock: s.clk,
			Undecodable: s.m.undecodable.WithLabelValues(et.ch.String()),
			Handle:      func(key, value []byte) error { return s.publish(et.ch, string(key), value) },
		}
		wg.Go(func() { _ = r.Run(ctx) }) // returns nil when ctx ends
	}
	wg.Wait()
}

// Close stops the hub. The listener stops with Run's context.
func (s *Sink) Close(context.Context) error {
	s.closed.Store(true)
	s.hub.close()
	return nil
}

// Ready reports whether the WebSocket listener is serving.
func (s *Sink) Ready(context.Context) error {
	if !s.serving.Load() {
		return errors.New("push: WebSocket listener not running")
	}
	return nil
}

// Listen binds the listener; Addr is valid afterwards. Run calls it if it
// has not been called.
func (s *Sink) Listen() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("push: listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or the configured one before Listen.
func (s *Sink) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return s.cfg.Listen
	}
	return s.ln.Addr().String()
}

// PushURL is the WebSocket URL for the web page: public_url when set,
// otherwise ws://<bound address><path>. A wildcard or loopback host in it
// stands for "the host the page was loaded from"; the API replaces it.
func (s *Sink) PushURL() string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	return "ws://" + s.Addr() + s.cfg.Path
}

// Run serves WebSocket clients and follows the event topics
// until ctx ends, then closes every connection with 1001 (going away).
func (s *Sink) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.hub.run()
	fctx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		s.follow(fctx)
	}()
	defer func() {
		stopFollowing()
		<-followed
	}()
	mux := http.NewServeMux()
	mux.HandleFunc(s.cfg.Path, s.serveWS)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "tickflow push: connect a WebSocket to "+s.cfg.Path, http.StatusNotFound)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			raw := c
			if cc, ok := c.(*corkConn); ok {
				raw = cc.Conn
			}
			if tc, ok := raw.(*net.TCPConn); ok && s.tcpWriteBuffer > 0 {
				_ = tc.SetWriteBuffer(s.tcpWriteBuffer)
			}
			return context.WithValue(ctx, netConnKey{}, c)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	s.serving.Store(true)
	s.log.Info("push: serving WebSocket clients", "addr", s.Addr(), "path", s.cfg.Path)
	go func() { errc <- srv.Serve(corkListener{s.ln}) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("push: serve: %w", err)
	case <-ctx.Done():
	}
	s.serving.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("push: shutdown: %w", serr)
	}
	s.closeAll()
	return err
}

// closeAll says goodbye to every client and waits for their handlers; each
// is bounded by its kill timer.
func (s *Sink) closeAll() {
	s.connMu.Lock()
	for c := range s.conns {
		c.closeWith(&closeInfo{
			status: websocket.StatusGoingAway, code: codeShutdown, msg: "server shutting down; reconnect shortly",
			reason: "server shutting down", label: "shutdown",
		})
	}
	s.connMu.Unlock()
	s.handlers.Wait()
}

// cacheSeed returns the cache's latest ticks as messages, from a copy at
// most cacheTTL old. Without a cache, or when it fails, it returns what it
// had (possibly nothing): the hub's own last ticks still serve.
func (s *Sink) cacheSeed() []*message {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cache == nil || s.clk.Now().Sub(s.cacheAt) < cacheTTL {
		return s.cacheMsgs
	}
	s.cacheAt = s.clk.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ticks, err := s.cache.Pairs(ctx)
	if err != nil {
		s.log.Warn("push: snapshot from the cache failed; using the hub's last ticks", "err", err)
		return s.cacheMsgs
	}
	at := s.now()
	msgs := make([]*message, 0, len(ticks))
	for i := range ticks {
		t := &ticks[i]
		if t.Exchange == "" || t.Symbol == "" {
			continue
		}
		msgs = append(msgs, &message{
			data: encodeTick(nil, t, -1, 0), ch: chTick, exchange: t.Exchange, symbol: t.Symbol,
			pair: t.Key(), ts: t.Timestamp, at: at,
		})
	}
	s.cacheMsgs = msgs
	return msgs
}
