package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/tickflow/tickflow/tick"
)

// ScanQuery selects stored ticks of any number of pairs over an event-time
// range, for replays and backtests that read history in the order it
// happened.
type ScanQuery struct {
	// From and To bound the event time, inclusive; a zero value leaves
	// that side open.
	From, To time.Time
	// Exchanges and Symbols, when not empty, keep only ticks whose exchange
	// (lower case) and symbol (upper case) are listed.
	Exchanges, Symbols []string
	// PageSize is how many ticks one round trip fetches (default 10 000):
	// the scan's memory is one page, whatever the range.
	PageSize int
}

// scanKey orders a scan: event time, then receive time, then the pair.
// It is the table's identity reordered, so it is also the paging cursor.
type scanKey struct {
	ts, recv int64
	ex, sym  string
}

func (k scanKey) after() string {
	ts, recv := strconv.FormatInt(k.ts, 10), strconv.FormatInt(k.recv, 10)
	return "(timestamp > " + ts + " OR (timestamp = " + ts + " AND (received_at > " + recv +
		" OR (received_at = " + recv + " AND (exchange > " + quoteString(k.ex) +
		" OR (exchange = " + quoteString(k.ex) + " AND symbol > " + quoteString(k.sym) + "))))))"
}

// Scan calls fn with every stored tick the query selects, oldest first by
// event time (receive time, then pair, breaking ties), each tick once
// however often a replay wrote it. It reads page by page, so a range of
// any size needs one page of memory; fn's tick is only valid during the
// call. An error from fn stops the scan and is returned as is.
func (h *History) Scan(ctx context.Context, q ScanQuery, fn func(*tick.Tick) error) error {
	size := q.PageSize
	if size <= 0 {
		size = 10_000
	}
	var base []string
	if !q.From.IsZero() {
		base = append(base, "timestamp >= "+strconv.FormatInt(q.From.UnixMilli(), 10))
	}
	if !q.To.IsZero() {
		base = append(base, "timestamp <= "+strconv.FormatInt(q.To.UnixMilli(), 10))
	}
	if len(q.Exchanges) > 0 {
		base = append(base, "exchange IN ("+quoteList(q.Exchanges)+")")
	}
	if len(q.Symbols) > 0 {
		base = append(base, "symbol IN ("+quoteList(q.Symbols)+")")
	}
	var (
		cursor *scanKey
		r      scanResult
		page   []tick.Tick
	)
	for {
		where := base
		if cursor != nil {
			where = append(where[:len(where):len(where)], cursor.after())
		}
		sql := "SELECT toString(exchange), toString(symbol), " + tickSelectList(true) + " FROM " + h.table
		if len(where) > 0 {
			sql += " WHERE " + strings.Join(where, " AND ")
		}
		sql += " GROUP BY exchange, symbol, timestamp, received_at" +
			" ORDER BY timestamp, received_at, exchange, symbol LIMIT " + strconv.Itoa(size)
		page = page[:0]
		if err := h.tr.query(ctx, sql, r.results(), func() error {
			page = r.appendTo(page)
			return nil
		}); err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < size {
			return nil
		}
		last := &page[len(page)-1]
		cursor = &scanKey{ts: last.Timestamp, recv: last.ReceivedAt, ex: last.Exchange, sym: last.Symbol}
	}
}

// scanResult is tickResult with the pair's columns in front.
type scanResult struct {
	exchange, symbol proto.ColStr
	tickResult
}

func (r *scanResult) results() proto.Results {
	return append(proto.Results{{Data: &r.exchange}, {Data: &r.symbol}}, r.tickResult.results()...)
}

func (r *scanResult) appendTo(out []tick.Tick) []tick.Tick {
	from := len(out)
	out = r.tickResult.appendTo(out, tick.Pair{})
	for i := from; i < len(out); i++ {
		out[i].Exchange, out[i].Symbol = r.exchange.Row(i-from), r.symbol.Row(i-from)
	}
	return out
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteString(s)
	}
	return strings.Join(q, ", ")
}
