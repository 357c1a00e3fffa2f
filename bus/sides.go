package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
	"github.com/tickflow/tickflow/topics"
)

// SidePublisher publishes what sources hand on besides ticks — gaps,
// trades, best bid/ask quotes — each on its own topic keyed
// exchange:symbol, through the producer's client buffer (PublishAsync): a
// source's read loop waits only while that buffer is full (the broker down
// for a while), and nothing is dropped on the way, since a gap record lost
// would be a gap unannounced. A refusal is counted by the producer
// (tickflow_bus_produce_errors_total{topic}) and logged at a bounded rate.
// Every record kind goes through the one path, publish.
type SidePublisher struct {
	p   *Producer
	log *slog.Logger
	bad ingest.Sometimes
}

var (
	_ ingest.GapSink   = (*SidePublisher)(nil)
	_ ingest.TradeSink = (*SidePublisher)(nil)
	_ ingest.QuoteSink = (*SidePublisher)(nil)
)

// NewSidePublisher publishes through p.
func NewSidePublisher(p *Producer, log *slog.Logger) *SidePublisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SidePublisher{p: p, log: log, bad: ingest.Sometimes{Every: 10 * time.Second}}
}

// RecordGap queues g for topics.Gaps.
func (s *SidePublisher) RecordGap(ctx context.Context, g *tick.Gap) {
	v, err := tick.MarshalGap(g)
	s.publish(ctx, topics.Gaps, []byte(g.Key()), v, err)
}

// RecordTrade queues t for topics.Trades.
func (s *SidePublisher) RecordTrade(ctx context.Context, t *tick.Trade) {
	s.publish(ctx, topics.Trades, t.AppendKey(nil), t.AppendJSON(make([]byte, 0, 192)), nil)
}

// RecordQuote queues q for topics.Quotes.
func (s *SidePublisher) RecordQuote(ctx context.Context, q *tick.Quote) {
	v, err := tick.MarshalQuote(q)
	s.publish(ctx, topics.Quotes, []byte(q.Key()), v, err)
}

// publish queues one encoded record; encErr is the encoder's verdict on it.
// The buffers are the client's from here on.
func (s *SidePublisher) publish(ctx context.Context, t string, key, value []byte, encErr error) {
	if encErr != nil {
		s.fail(ctx, t, encErr)
		return
	}
	s.p.PublishAsync(ctx, t, key, value, func(err error) { s.fail(ctx, t, err) })
}

func (s *SidePublisher) fail(ctx context.Context, t string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	if ok, n := s.bad.Allow(); ok {
		s.log.Warn("side record not published", "topic", t, "err", err, "suppressed", n)
	}
}
