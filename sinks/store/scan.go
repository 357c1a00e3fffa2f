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
// however often a replay wrote it. fn's tick is only valid during the
// call. An error from fn stops the scan and is returned as is.
//
// It reads in event-time windows, each deduplicated on its own, so a range
// of any length costs time in proportion to its ticks and one page of
// memory: a page over "the rest of the range" would group the whole rest
// again for every page. A window holding more than a page is read in
// pages with a cursor on the table's identity; the next window grows when
// one comes back sparse and shrinks when one fills pages.
func (h *History) Scan(ctx context.Context, q ScanQuery, fn func(*tick.Tick) error) error {
	size := q.PageSize
	if size <= 0 {
		size = 10_000
	}
	var filter []string
	if len(q.Exchanges) > 0 {
		filter = append(filter, "exchange IN ("+quoteList(q.Exchanges)+")")
	}
	if len(q.Symbols) > 0 {
		filter = append(filter, "symbol IN ("+quoteList(q.Symbols)+")")
	}
	lo, hi, ok, err := h.scanBounds(ctx, q, filter)
	if err != nil || !ok {
		return err
	}
	var (
		r      scanResult
		page   []tick.Tick
		window = int64(60_000) // ms; adapted to the data below
	)
	for from := lo; from <= hi; {
		to := min(from+window, hi+1) // [from, to)
		where := append(filter[:len(filter):len(filter)],
			"timestamp >= "+strconv.FormatInt(from, 10), "timestamp < "+strconv.FormatInt(to, 10))
		var cursor *scanKey
		pages := 0
		for {
			w := where
			if cursor != nil {
				w = append(where[:len(where):len(where)], cursor.after())
			}
			sql := "SELECT toString(exchange), toString(symbol), " + tickSelectList(true) + " FROM " + h.table +
				" WHERE " + strings.Join(w, " AND ") +
				" GROUP BY exchange, symbol, timestamp, received_at" +
				" ORDER BY timestamp, received_at, exchange, symbol LIMIT " + strconv.Itoa(size)
			page = page[:0]
			if err := h.tr.query(ctx, sql, r.results(), func() error {
				page = r.appendTo(page)
				return nil
			}); err != nil {
				return fmt.Errorf("store: scan: %w", err)
			}
			pages++
			for i := range page {
				if err := fn(&page[i]); err != nil {
					return err
				}
			}
			if len(page) < size {
				break
			}
			last := &page[len(page)-1]
			cursor = &scanKey{ts: last.Timestamp, recv: last.ReceivedAt, ex: last.Exchange, sym: last.Symbol}
		}
		switch {
		case pages > 1:
			window = max(window/int64(pages), 1)
		case len(page) < size/4:
			window = min(window*2, 366*24*3600*1000)
		}
		from = to
	}
	return nil
}

// scanBounds is the event-time range to read: the query's bounds, with an
// open side closed by the stored data's own. ok is false when nothing
// stored is in range.
func (h *History) scanBounds(ctx context.Context, q ScanQuery, filter []string) (lo, hi int64, ok bool, err error) {
	where := filter
	if !q.From.IsZero() {
		where = append(where[:len(where):len(where)], "timestamp >= "+strconv.FormatInt(q.From.UnixMilli(), 10))
	}
	if !q.To.IsZero() {
		where = append(where[:len(where):len(where)], "timestamp <= "+strconv.FormatInt(q.To.UnixMilli(), 10))
	}
	sql := "SELECT count(), min(timestamp), max(timestamp) FROM " + h.table
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	var (
		n      proto.ColUInt64
		mn, mx proto.ColInt64
	)
	if err := h.tr.query(ctx, sql, proto.Results{{Data: &n}, {Data: &mn}, {Data: &mx}}, func() error {
		if n.Rows() > 0 && n.Row(0) > 0 {
			lo, hi, ok = mn.Row(0), mx.Row(0), true
		}
		return nil
	}); err != nil {
		return 0, 0, false, fmt.Errorf("store: scan: %w", err)
	}
	return lo, hi, ok, nil
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
