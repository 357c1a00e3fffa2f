package ingest

import (
	"context"

	"github.com/tickflow/tickflow/tick"
)

// QuoteSink takes the best bid/ask quotes a source decodes (tick.Quote),
// for the quotes topic. RecordQuote must not block for long: sources call
// it from their read loops. It may keep q only by copying it.
type QuoteSink interface {
	RecordQuote(ctx context.Context, q *tick.Quote)
}
