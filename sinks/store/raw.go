package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/tickflow/tickflow/tick"
)

// RawInsert is the raw limit `tickflow bench` sets the store against: the
// ticks as pre-encoded FORMAT Native blocks of size rows (ch-go columns
// filled directly, no sink code) POSTed back to back over HTTP into table
// ("db.table", made beforehand by the sink's own DDL). It returns the time
// the POSTs took, encoding excluded.
func RawInsert(ctx context.Context, httpURL, table string, ticks []tick.Tick, size int) (time.Duration, error) {
	var bodies [][]byte
	for i := 0; i < len(ticks); i += size {
		var ex, sym, base, quote proto.ColStr
		var ts, recv proto.ColInt64
		var decs [numDecimals]proto.ColDecimal128
		var scales [numDecimals]proto.ColUInt8
		in := proto.Input{{Name: "exchange", Data: &ex}, {Name: "symbol", Data: &sym}, {Name: "base", Data: &base}, {Name: "quote", Data: &quote},
			{Name: "timestamp", Data: &ts}, {Name: "received_at", Data: &recv}}
		for j, f := range decimalFields {
			in = append(in, proto.InputColumn{Name: f.name, Data: proto.Alias(&decs[j], decimalType)})
		}
		for j, f := range decimalFields {
			in = append(in, proto.InputColumn{Name: f.scale, Data: &scales[j]})
		}
		for k := i; k < min(i+size, len(ticks)); k++ {
			t := &ticks[k]
			ex.Append(t.Exchange)
			sym.Append(t.Symbol)
			base.Append(t.Base)
			quote.Append(t.Quote)
			ts.Append(t.Timestamp)
			recv.Append(t.ReceivedAt)
			for j, f := range decimalFields {
				d := f.get(t)
				v, err := toDecimal128(d)
				if err != nil {
					return 0, err
				}
				decs[j].Append(v)
				scales[j].Append(uint8(max(0, -d.Exponent)))
			}
		}
		var buf proto.Buffer
		if err := (proto.Block{Columns: len(in), Rows: ts.Rows()}).EncodeRawBlock(&buf, nativeFormatRevision, in); err != nil {
			return 0, err
		}
		bodies = append(bodies, buf.Buf)
	}
	query := url.Values{"query": {"INSERT INTO " + table + " " + newColumns(layout{}).input.Columns() + " FORMAT Native"}}.Encode()
	start := time.Now()
	for _, body := range bodies {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(httpURL, "/")+"/?"+query, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("raw insert: %s: %s", resp.Status, msg)
		}
	}
	return time.Since(start), nil
}
