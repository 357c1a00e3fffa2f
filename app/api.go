package app

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/events"
)

// How many records the API's recent lists keep: of each partition of the
// alert and signal topics (read back at start), and of all pairs together
// for gaps, trades and quotes.
const (
	recentCapacity = 1000
	recentTrades   = 2000
	recentQuotes   = 2000
)

// apiParts are the API server and the topic feeds behind its recent lists,
// followed from their topics so any process answers for records raised in
// another.
type apiParts struct {
	srv     *api.Server
	alerts  *events.AlertFeed
	signals *events.SignalFeed
	gaps    *events.GapFeed
	trades  *events.TradeFeed
	quotes  *events.QuoteFeed
}

// startAPI builds the feeds and the server and listens, so a port already
// taken fails the start, naming the API.
func (p *pipeline) startAPI(context.Context) error {
	f := bus.Follower{Client: p.bus.client}
	fo := events.FeedOptions{Logger: p.log.With("component", "api"), Metrics: p.reg, Clock: clock.Real}
	a := &apiParts{}
	var err error
	if a.alerts, err = events.NewAlertFeed(f, recentCapacity, fo); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if a.signals, err = events.NewSignalFeed(f, recentCapacity, fo); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if a.gaps, err = events.NewGapFeed(f, recentCapacity, fo); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if a.trades, err = events.NewTradeFeed(f, recentTrades, fo); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if a.quotes, err = events.NewQuoteFeed(f, recentQuotes, fo); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o := api.Options{
		Listen: p.cfg.API.Listen, Logger: p.log.With("component", "api"), Health: p.hr, Gatherer: p.reg,
		ShutdownTimeout: p.cfg.API.ShutdownTimeout,
		Alerts:          a.alerts, Signals: a.signals, Gaps: a.gaps, Trades: a.trades, Quotes: a.quotes,
	}
	p.backend.apiReaders(&o)
	for _, s := range p.sinks {
		// Where the strategy engine runs, its live state and paper PnL
		// complete what the topic carries.
		if e, ok := s.sink.(events.StrategyEngine); ok {
			a.signals.UseEngine(e)
		}
		if v, ok := s.sink.(api.PushURLer); ok {
			o.Push = v
		}
	}
	a.srv = api.New(o)
	if err := a.srv.Listen(); err != nil {
		return err
	}
	p.log.Info("started", "component", "api", "addr", "http://"+a.srv.Addr())
	p.api = a
	return nil
}

// run serves the API and follows the feeds' topics until ctx ends.
func (a *apiParts) run(g *errgroup.Group, ctx context.Context) {
	g.Go(func() error { return a.srv.Run(ctx) })
	g.Go(func() error { return a.alerts.Run(ctx) })
	g.Go(func() error { return a.signals.Run(ctx) })
	g.Go(func() error { return a.gaps.Run(ctx) })
	g.Go(func() error { return a.trades.Run(ctx) })
	g.Go(func() error { return a.quotes.Run(ctx) })
}
