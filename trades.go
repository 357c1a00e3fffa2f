package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
)

// tradePublisher is the sources' ingest.TradeSink: each trade goes on
// ingest.TradeTopic, keyed exchange:symbol, through the producer's client
// buffer (PublishAsync), so a read loop waits only when that buffer is
// full (the broker down for a while). A failure is counted by the
// producer (tickflow_bus_produce_errors_total{topic}) and logged at a
// bounded rate.
type tradePublisher struct {
	p   *bus.Producer
	log *slog.Logger
	bad ingest.Sometimes
}

var _ ingest.TradeSink = (*tradePublisher)(nil)

func newTradePublisher(p *bus.Producer, log *slog.Logger) *tradePublisher {
	return &tradePublisher{p: p, log: log.With("component", "trades"), bad: ingest.Sometimes{Every: 10 * time.Second}}
}

// recentTrades is how many trades, of all pairs together, the API's list
// keeps.
const recentTrades = 2000

// RecordTrade encodes t (into a buffer the client keeps) and queues it.
func (tp *tradePublisher) RecordTrade(ctx context.Context, t *tick.Trade) {
	tp.p.PublishAsync(ctx, ingest.TradeTopic, t.AppendKey(nil), t.AppendJSON(make([]byte, 0, 192)), func(err error) {
		if err == nil || ctx.Err() != nil {
			return
		}
		if ok, n := tp.bad.Allow(); ok {
			tp.log.Warn("trade not published", "err", err, "suppressed", n)
		}
	})
}
