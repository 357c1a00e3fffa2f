// Package api is tickflow's HTTP face: the REST API, health and metrics
// endpoints, and the live web page.
//
// Handlers depend on small interfaces declared in this package (next to the
// handler that uses them); the host passes a value for each in Options, so
// a sink or backend never knows the API exists, and main's compile-time
// guards keep the method sets in step.
// Each feature adds its routes from its own file through addRoutes.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/health"
)

// Options configure a Server. The zero value serves health endpoints only.
type Options struct {
	Listen string
	Logger *slog.Logger
	Clock  clock.Clock
	// Health feeds /readyz.
	Health *health.Registry
	// Gatherer feeds /metrics.
	Gatherer prometheus.Gatherer
	// The readers the handlers answer from, built by the host from config
	// whether or not the sink behind each consumes in this process. A nil
	// one makes its endpoints answer 503 naming what is not configured.
	Cache   TickCache    // latest ticks and recent history (Redis or in-process)
	History TickHistory  // the durable tick history (ClickHouse)
	Candles CandleReader // candles computed from the history
	Alerts  AlertSource  // recent risk alerts
	Signals SignalSource // recent strategy signals and strategy status
	Gaps    GapSource    // recent gaps in the sources' data
	Trades  TradeSource  // recent trades
	// TradeCache is the cache's recent trades per pair, which answer GET
	// /api/v1/trades before Trades (the topic list) does.
	TradeCache TradeCache
	// TradeHistory is the durable trade history (ClickHouse).
	TradeHistory TradeHistory
	Quotes       QuoteSource // recent best bid/ask quotes
	// Push gives the live page its WebSocket URL; nil when no push feed
	// runs behind this API.
	Push PushURLer
	// CandleCache is the cache's rolling candles, which answer the
	// recent buckets of the candles endpoint (Candles the older ones).
	CandleCache CandleCache
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration
}

// Server is the HTTP server.
type Server struct {
	opts Options
	log  *slog.Logger
	e    *echo.Echo
	ln   net.Listener
}

// routeFuncs are registered by each feature's file in init().
var routeFuncs []func(*Server)

func addRoutes(fn func(*Server)) { routeFuncs = append(routeFuncs, fn) }

// New builds the server; it does not listen until Run (or Listen).
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.Health == nil {
		opts.Health = health.New()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{opts: opts, log: opts.Logger, e: e}
	e.HTTPErrorHandler = s.errorHandler
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	if opts.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	}
	for _, fn := range routeFuncs {
		fn(s)
	}
	return s
}

// Echo exposes the router, for tests.
func (s *Server) Echo() *echo.Echo { return s.e }

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Listen binds the listen address; Addr is valid afterwards. Run calls it
// if it has not been called.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.opts.Listen
	}
	return s.ln.Addr().String()
}

// Run serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{Handler: s.e, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	all, ready := s.opts.Health.Snapshot(ctx)
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	return c.JSON(code, map[string]any{"ready": ready, "components": all})
}
