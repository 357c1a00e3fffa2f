package events

import (
	"context"
	"strconv"

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

// QuoteFeed is the recent best bid/ask quotes the REST API lists, read from
// tick.QuoteTopic like TradeFeed. It implements api.QuoteSource.
type QuoteFeed struct {
	f *feed[tick.Quote]
}

// NewQuoteFeed follows tick.QuoteTopic through f, keeping up to capacity
// quotes. Call Run for the life of the process.
func NewQuoteFeed(f sinks.Follower, capacity int, opt FeedOptions) (*QuoteFeed, error) {
	fd, err := newFeed(f, tick.QuoteTopic, capacity, opt, func(q *tick.Quote) string {
		if q.Validate() != nil {
			return ""
		}
		// A pair's quotes at one exchange time are one update seen twice.
		return q.Key() + ":" + strconv.FormatInt(q.Timestamp, 10) + ":" + q.Bid.String() + ":" + q.Ask.String()
	}, func(q *tick.Quote) int64 { return q.Timestamp }, nil)
	if err != nil {
		return nil, err
	}
	return &QuoteFeed{fd}, nil
}

// Run follows the topic until ctx ends, then returns nil.
func (q *QuoteFeed) Run(ctx context.Context) error { return q.f.reader.Run(ctx) }

// RecentQuotes are the kept quotes of one pair, in no particular order.
func (q *QuoteFeed) RecentQuotes(exchange, symbol string) []tick.Quote {
	return q.f.recent.List(func(x *tick.Quote) bool { return x.Exchange == exchange && x.Symbol == symbol })
}
