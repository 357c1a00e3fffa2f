package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/sinks/push"
	"github.com/tickflow/tickflow/sinks/store"
)

// The API's readers are whatever main hands it; these guards keep their
// method sets in step with the interfaces the handlers declare, so a
// renamed method fails the build instead of turning an endpoint into a 503.
var (
	_ api.TickCache    = (*cache.Cache)(nil)
	_ api.TickHistory  = (*store.History)(nil)
	_ api.CandleReader = (*store.History)(nil)
	_ api.CandleCache  = (*cache.Cache)(nil)
	_ api.TradeCache   = (*cache.Cache)(nil)
	_ api.TradeHistory = (*store.History)(nil)
	_ api.PushURLer    = (*push.Sink)(nil)
	_ api.AlertSource  = (*events.AlertFeed)(nil)
	_ api.SignalSource = (*events.SignalFeed)(nil)
)

// backends are the stores this process reads, opened from the cache and
// store sections of the config whether or not their sinks consume here:
// an API-only process reads Redis and ClickHouse without consuming. The
// sinks that do run here write into the same values (sinks.Env.Backend).
type backends struct {
	cache   *cache.Cache   // nil: no cache this process can read
	history *store.History // nil: no ClickHouse configured
}

// openBackends opens what the config describes. The in-process cache is
// opened only when the cache sink runs here: nothing else would fill it.
func (p *pipeline) openBackends(context.Context) error {
	b, err := openBackends(p.cfg, p.log, p.reg, p.hr)
	if err != nil {
		return err
	}
	p.undo.push(func() error { b.close(p.log); return nil })
	p.backend = b
	return nil
}

func openBackends(cfg config.Config, log *slog.Logger, reg prometheus.Registerer, hr *health.Registry) (*backends, error) {
	b := &backends{}
	if sc, ok := cfg.Sink("cache"); ok && sc.Available {
		c := sc.Settings.(*cache.Config)
		if len(c.Redis.Addrs) > 0 || sc.Enabled {
			cc, err := cache.Open(sinks.Env{Name: "cache", Logger: log.With("component", "cache"), Metrics: reg, Clock: clock.Real}, *c)
			if err != nil {
				return nil, fmt.Errorf("sinks.cache: %w", err)
			}
			b.cache = cc
			if !sc.Enabled {
				hr.Check("backend:cache", cc.Ready)
				log.Info("reading", "component", "cache", "backend", cc.Backend())
			}
		}
	}
	if sc, ok := cfg.Sink("store"); ok && sc.Available {
		if c := sc.Settings.(*store.Config); c.ClickHouse.URL != "" {
			h, err := store.Open(sinks.Env{Name: "store", Logger: log.With("component", "store")}, *c)
			if err != nil {
				b.close(log)
				return nil, fmt.Errorf("sinks.store: %w", err)
			}
			b.history = h
			if !sc.Enabled {
				hr.Check("backend:store", h.Ping)
				log.Info("reading", "component", "store", "clickhouse", c.ClickHouse.URL)
			}
		}
	}
	return b, nil
}

// lookup is sinks.Env.Backend.
func (b *backends) lookup(name string) (any, bool) {
	switch {
	case name == "cache" && b.cache != nil:
		return b.cache, true
	case name == "store" && b.history != nil:
		return b.history, true
	}
	return nil, false
}

// apiReaders hands the API the backends it reads.
func (b *backends) apiReaders(o *api.Options) {
	if b.cache != nil {
		o.Cache, o.CandleCache, o.TradeCache = b.cache, b.cache, b.cache
	}
	if b.history != nil {
		o.History, o.Candles, o.TradeHistory = b.history, b.history, b.history
	}
}

// close releases the backends, after every reader and sink is done.
func (b *backends) close(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b.cache != nil {
		if err := b.cache.Close(ctx); err != nil {
			log.Warn("cache close", "component", "cache", "err", err)
		}
	}
	if b.history != nil {
		if err := b.history.Close(ctx); err != nil {
			log.Warn("store close", "component", "store", "err", err)
		}
	}
}
