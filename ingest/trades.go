package ingest

import (
	"context"

	"github.com/tickflow/tickflow/tick"
)

// TradeSink takes the trades a source decodes (tick.Trade), for the trades
// topic. RecordTrade must not block for long: sources call it from their
// read loops. It may keep t only by copying it.
type TradeSink interface {
	RecordTrade(ctx context.Context, t *tick.Trade)
}

// TradeTopic is the topic trades are published on, keyed exchange:symbol.
const TradeTopic = "market_data.trades"
