package tick

import (
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Candle is one OHLC bucket of a pair's prices, from its ticks, with the
// bucket's traded volume when its trades were counted (a ticker's own
// volume is a rolling 24 h figure, not a per-bucket one).
type Candle struct {
	// Start is the bucket's first instant, aligned to UTC.
	Start time.Time
	Open  apd.Decimal // first price in the bucket by event time
	High  apd.Decimal
	Low   apd.Decimal
	Close apd.Decimal // last price in the bucket by event time
	// Ticks is how many ticks fell in the bucket.
	Ticks uint64
	// Volume is the sum of the sizes of the bucket's trades, and Trades
	// how many there were; both zero when no trades were counted for the
	// bucket (a feed without trades), which is not a measured 0 volume.
	Volume apd.Decimal
	Trades uint64
}

// CandleQuery asks for one pair's candles of one interval over [From, To).
// Buckets with no ticks are absent from the answer.
type CandleQuery struct {
	Exchange, Symbol string
	Interval         time.Duration
	From, To         time.Time
}

// CandleWindow is what a cache holds of one pair's candles for a
// CandleQuery: the buckets in range that have ticks, oldest first, and
// Since, the event time (Unix ms) from which it holds every tick of the
// pair it was given (zero when it holds nothing). A bucket starting at or
// after Since is complete; one before it may lack ticks the cache never
// saw, which a reader should take from the history store when it can.
type CandleWindow struct {
	Candles []Candle
	Since   int64
}
