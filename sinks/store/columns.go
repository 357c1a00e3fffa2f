package store

import (
	"fmt"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/tick"
)

// decimalField is one of a tick's decimal fields, its column and the
// column of its scale byte.
type decimalField struct {
	name  string
	scale string
	get   func(*tick.Tick) *apd.Decimal
}

// decimalFields are the tick's decimal fields in column order.
var decimalFields = [...]decimalField{
	{"price", "price_scale", func(t *tick.Tick) *apd.Decimal { return &t.Price }},
	{"volume", "volume_scale", func(t *tick.Tick) *apd.Decimal { return &t.Volume }},
	{"bid", "bid_scale", func(t *tick.Tick) *apd.Decimal { return &t.Bid }},
	{"ask", "ask_scale", func(t *tick.Tick) *apd.Decimal { return &t.Ask }},
	{"open_24h", "open_24h_scale", func(t *tick.Tick) *apd.Decimal { return &t.Open24h }},
	{"high_24h", "high_24h_scale", func(t *tick.Tick) *apd.Decimal { return &t.High24h }},
	{"low_24h", "low_24h_scale", func(t *tick.Tick) *apd.Decimal { return &t.Low24h }},
	{"quote_volume", "quote_volume_scale", func(t *tick.Tick) *apd.Decimal { return &t.QuoteVolume }},
}

const numDecimals = len(decimalFields)

// layout is how the string columns are typed in the table: plain
// String, or LowCardinality(String) where the server has it (or the table
// was made with it).
type layout struct {
	lowCardExchange bool
	lowCardSymbol   bool
	lowCardBase     bool
	lowCardQuote    bool
}

// columns is a batch of ticks as ch-go columns, reused batch after batch.
type columns struct {
	layout     layout
	exchange   proto.ColumnOf[string]
	symbol     proto.ColumnOf[string]
	base       proto.ColumnOf[string]
	quote      proto.ColumnOf[string]
	timestamp  proto.ColInt64
	receivedAt proto.ColInt64
	decimals   [numDecimals]proto.ColDecimal128
	scales     [numDecimals]proto.ColUInt8
	input      proto.Input
}

func stringColumn(lowCard bool) proto.ColumnOf[string] {
	if lowCard {
		return proto.NewLowCardinality[string](new(proto.ColStr))
	}
	return new(proto.ColStr)
}

func newColumns(l layout) *columns {
	c := &columns{layout: l, exchange: stringColumn(l.lowCardExchange), symbol: stringColumn(l.lowCardSymbol),
		base: stringColumn(l.lowCardBase), quote: stringColumn(l.lowCardQuote)}
	c.input = proto.Input{
		{Name: "exchange", Data: c.exchange},
		{Name: "symbol", Data: c.symbol},
		{Name: "base", Data: c.base},
		{Name: "quote", Data: c.quote},
		{Name: "timestamp", Data: &c.timestamp},
		{Name: "received_at", Data: &c.receivedAt},
	}
	for i, f := range decimalFields {
		// ch-go names the type "Decimal128", which servers before
		// Decimal128 became an alias reject; spell it out.
		c.input = append(c.input, proto.InputColumn{Name: f.name, Data: proto.Alias(&c.decimals[i], decimalType)})
	}
	for i, f := range decimalFields {
		c.input = append(c.input, proto.InputColumn{Name: f.scale, Data: &c.scales[i]})
	}
	return c
}

func (c *columns) reset() { c.input.Reset() }

func (c *columns) rows() int { return c.timestamp.Rows() }

// fieldError says which field of a tick does not fit its column.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return fmt.Sprintf("%s: %v", e.field, e.err) }
func (e *fieldError) Unwrap() error { return e.err }

// append adds t as a row, or leaves every column untouched and says why
// it does not fit: a partial row would misalign the columns.
func (c *columns) append(t *tick.Tick) error {
	var (
		dec [numDecimals]proto.Decimal128
		sc  [numDecimals]uint8
	)
	for i, f := range decimalFields {
		d := f.get(t)
		v, err := toDecimal128(d)
		if err == nil {
			sc[i], err = scaleOf(d)
		}
		if err != nil {
			return &fieldError{f.name, err}
		}
		dec[i] = v
	}
	c.exchange.Append(t.Exchange)
	c.symbol.Append(t.Symbol)
	c.base.Append(t.Base)
	c.quote.Append(t.Quote)
	c.timestamp.Append(t.Timestamp)
	c.receivedAt.Append(t.ReceivedAt)
	for i := range dec {
		c.decimals[i].Append(dec[i])
		c.scales[i].Append(sc[i])
	}
	return nil
}

// tickResult decodes rows of (timestamp, received_at, base, quote, the
// eight decimals, their eight scales) into ticks; exchange and symbol are
// the query's, not read back.
type tickResult struct {
	timestamp   proto.ColInt64
	receivedAt  proto.ColInt64
	base, quote proto.ColStr
	decimals    [numDecimals]proto.ColDecimal128
	scales      [numDecimals]proto.ColUInt8
}

// tickSelectList is the SELECT list tickResult decodes; aggregate
// collapses the copies of one tick a replay may have written (the query
// groups by the tick's identity). The copies are identical, so any() may
// take a value and its scale from different ones.
func tickSelectList(aggregate bool) string {
	cols := []string{"timestamp", "received_at"}
	add := func(name string) {
		if aggregate {
			name = "any(" + name + ") AS _" + name
		}
		cols = append(cols, name)
	}
	// toString: the result decodes as plain String whether the column is
	// String or LowCardinality(String). Rows from before the instrument
	// columns read back as "" (the columns' default).
	for _, name := range []string{"base", "quote"} {
		if aggregate {
			cols = append(cols, "any(toString("+name+")) AS _"+name)
		} else {
			cols = append(cols, "toString("+name+")")
		}
	}
	for _, f := range decimalFields {
		add(f.name)
	}
	for _, f := range decimalFields {
		add(f.scale)
	}
	return strings.Join(cols, ", ")
}

func (r *tickResult) results() proto.Results {
	res := proto.Results{
		{Data: &r.timestamp},
		{Data: &r.receivedAt},
		{Data: &r.base},
		{Data: &r.quote},
	}
	for i := range r.decimals {
		res = append(res, proto.ResultColumn{Data: proto.Alias(&r.decimals[i], decimalType)})
	}
	for i := range r.scales {
		res = append(res, proto.ResultColumn{Data: &r.scales[i]})
	}
	return res
}

// appendTo appends the decoded block's rows to out as ticks of pair p.
func (r *tickResult) appendTo(out []tick.Tick, p tick.Pair) []tick.Tick {
	for i := 0; i < r.timestamp.Rows(); i++ {
		out = append(out, tick.Tick{Exchange: p.Exchange, Symbol: p.Symbol})
		t := &out[len(out)-1]
		t.Timestamp = r.timestamp.Row(i)
		t.ReceivedAt = r.receivedAt.Row(i)
		t.Base, t.Quote = r.base.Row(i), r.quote.Row(i)
		for j, f := range decimalFields {
			fromDecimal128(f.get(t), r.decimals[j].Row(i), r.scales[j].Row(i))
		}
	}
	return out
}
