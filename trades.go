package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
)

// tradePublisher is the sources' ingest.TradeSink and ingest.QuoteSink:
// each trade goes on ingest.TradeTopic and each quote on tick.QuoteTopic,
// keyed exchange:symbol, through the producer's client
// buffer (PublishAsync), so a read loop waits only when that buffer is
// full (the broker down for a while). A failure is counted by the
// producer (tickflow_bus_produce_errors_total{topic}) and logged at a
// bounded rate.
type tradePublisher struct {
	p   *bus.Producer
	log *slog.Logger
	bad ingest.Sometimes
}

var (
	_ ingest.TradeSink = (*tradePublisher)(nil)
	_ ingest.QuoteSink = (*tradePublisher)(nil)
)

func newTradePublisher(p *bus.Producer, log *slog.Logger) *tradePublisher {
	return &tradePublisher{p: p, log: log.With("component", "trades"), bad: ingest.Sometimes{Every: 10 * time.Second}}
}

// recentTrades and recentQuotes are how many trades and quotes, of all
// pairs together, the API's lists keep.
const (
	recentTrades = 2000
	recentQuotes = 2000
)

// RecordTrade encodes t (into a buffer the client keeps) and queues it.
func (tp *tradePublisher) RecordTrade(ctx context.Context, t *tick.Trade) {
	tp.p.PublishAsync(ctx, ingest.TradeTopic, t.AppendKey(nil), t.AppendJSON(make([]byte, 0, 192)), tp.done(ctx))
}

// RecordQuote encodes q and queues it.
func (tp *tradePublisher) RecordQuote(ctx context.Context, q *tick.Quote) {
	v, err := tick.MarshalQuote(q)
	if err != nil {
		tp.done(ctx)(err)
		return
	}
	tp.p.PublishAsync(ctx, tick.QuoteTopic, []byte(q.Key()), v, tp.done(ctx))
}

func (tp *tradePublisher) done(ctx context.Context) func(error) {
	return func(err error) {
		if err == nil || ctx.Err() != nil {
			return
		}
		if ok, n := tp.bad.Allow(); ok {
			tp.log.Warn("trade or quote not published", "err", err, "suppressed", n)
		}
	}
}
