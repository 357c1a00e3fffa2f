package events

import (
	"context"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// TradeFeed is the recent trades the REST API lists, read from
// ingest.TradeTopic as AlertFeed reads alerts: the newest capacity trades
// of every pair together, in any process. It implements api.TradeSource.
type TradeFeed struct {
	f *feed[tick.Trade]
}

// NewTradeFeed follows ingest.TradeTopic through f, keeping up to capacity
// trades. Call Run for the life of the process.
func NewTradeFeed(f sinks.Follower, capacity int, opt FeedOptions) (*TradeFeed, error) {
	fd, err := newFeed(f, ingest.TradeTopic, capacity, opt, func(t *tick.Trade) string {
		if t.Validate() != nil {
			return ""
		}
		return t.Key() + ":" + t.TradeID
	}, func(t *tick.Trade) int64 { return t.Timestamp }, nil)
	if err != nil {
		return nil, err
	}
	return &TradeFeed{fd}, nil
}

// Run follows the topic until ctx ends, then returns nil.
func (t *TradeFeed) Run(ctx context.Context) error { return t.f.reader.Run(ctx) }

// RecentTrades are the kept trades of one pair, in no particular order.
func (t *TradeFeed) RecentTrades(exchange, symbol string) []tick.Trade {
	return t.f.recent.List(func(x *tick.Trade) bool { return x.Exchange == exchange && x.Symbol == symbol })
}
