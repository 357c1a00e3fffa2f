package store

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// BenchmarkStoreThroughput compares, in one run against one real
// ClickHouse, the same rows inserted three ways:
//
//   - raw: pre-encoded FORMAT Native blocks of batch rows POSTed back to
//     back with net/http; the floor ClickHouse itself sets.
//   - sink: WriteBatch called directly with decoded ticks (conversion,
//     encoding and the INSERT).
//   - broker: the ticks produced to the embedded broker beforehand, then
//     consumed by the bus runtime into the sink (JSON decoding, batching,
//     commits): what tickflow does.
//
// The three alternate within every iteration, so load from other work on
// the machine falls on all of them alike; each reports ticks/s, and
// broker/raw is the ratio the goal (>= 50 %) is about. ns/op is the three
// measurements together.
//
//	go test -run '^$' -bench StoreThroughput -benchtime 5x ./sinks/store/
func BenchmarkStoreThroughput(b *testing.B) {
	ch := clickHouse(b)
	const benchTicks = 200_000
	ticks := realisticTicks(benchTicks)
	// Each measurement starts on a quiet server: the previous table is
	// dropped and its background merges are finished, so no case pays for
	// another's parts on a 2-core machine.
	quiet := func() {
		for _, db := range []string{"bench_raw", "bench_sink", "bench_broker"} {
			sql(b, ch, "DROP DATABASE IF EXISTS "+db)
		}
		for sql(b, ch, "SELECT count() FROM system.merges") != "0" {
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
	// ClickHouse slows INSERTs down itself when a partition has too many
	// unmerged parts (parts_to_delay_insert); counted so the numbers say
	// when that, not the client, set the pace.
	delayed := func() int {
		var n int
		fmt.Sscan(sql(b, ch, "SELECT sum(value) FROM system.events WHERE event = 'DelayedInserts'"), &n)
		return n
	}
	connected := func(db string) *Sink {
		s := newE2ESink(b, ch.HTTPURL(), db)
		if err := s.Connect(bg(b)); err != nil {
			b.Fatal(err)
		}
		return s
	}
	p := startPipeline(b, 4)
	p.produce(b, ticks)
	groups := 0 // b.Run calls the function more than once: groups must stay fresh
	for _, size := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			bodies := rawBlocks(b, ticks, size)
			query := url.Values{"query": {"INSERT INTO bench_raw.market_ticks " + newColumns(layout{}).input.Columns() + " FORMAT Native"}}.Encode()
			client := &http.Client{}
			var raw, direct, broker time.Duration
			delayedBefore := delayed()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				quiet()
				connected("bench_raw") // the same table, made by the sink's DDL
				b.StartTimer()
				start := time.Now()
				for _, body := range bodies {
					resp, err := client.Post(ch.HTTPURL()+"/?"+query, "application/octet-stream", bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("raw insert: %s", resp.Status)
					}
				}
				raw += time.Since(start)
				b.StopTimer()

				quiet()
				s := connected("bench_sink")
				b.StartTimer()
				start = time.Now()
				for j := 0; j < len(ticks); j += size {
					if err := s.WriteBatch(bg(b), ticks[j:min(j+size, len(ticks))]); err != nil {
						b.Fatal(err)
					}
				}
				direct += time.Since(start)
				b.StopTimer()

				quiet()
				s = connected("bench_broker")
				b.StartTimer()
				start = time.Now()
				// A new group each time reads the topic from the start.
				groups++
				rt := p.runGroup(b, fmt.Sprintf("bench.%d", groups), s, sinks.BatchPolicy{Size: size, MaxWait: 50 * time.Millisecond}, nil)
				for testutil.ToFloat64(s.m.rows) < benchTicks {
					time.Sleep(time.Millisecond) // poll interval
				}
				broker += time.Since(start)
				b.StopTimer()
				rt.stop()
			}
			rate := func(d time.Duration) float64 { return float64(benchTicks*b.N) / d.Seconds() }
			b.ReportMetric(rate(raw), "raw_ticks/s")
			b.ReportMetric(rate(direct), "sink_ticks/s")
			b.ReportMetric(rate(broker), "broker_ticks/s")
			b.ReportMetric(100*rate(broker)/rate(raw), "broker_%_of_raw")
			b.ReportMetric(float64(delayed()-delayedBefore)/float64(3*b.N), "delayed_inserts/case")
		})
	}
}

// rawBlocks encodes the ticks as FORMAT Native bodies of size rows each,
// with ch-go's columns filled directly: no sink code involved.
func rawBlocks(b *testing.B, ticks []tick.Tick, size int) [][]byte {
	var out [][]byte
	for i := 0; i < len(ticks); i += size {
		var ex, sym proto.ColStr
		var ts, recv proto.ColInt64
		var decs [numDecimals]proto.ColDecimal128
		var scales [numDecimals]proto.ColUInt8
		in := proto.Input{{Name: "exchange", Data: &ex}, {Name: "symbol", Data: &sym}, {Name: "timestamp", Data: &ts}, {Name: "received_at", Data: &recv}}
		for j, f := range decimalFields {
			in = append(in, proto.InputColumn{Name: f.name, Data: proto.Alias(&decs[j], decimalType)})
		}
		for j, f := range decimalFields {
			in = append(in, proto.InputColumn{Name: f.scale, Data: &scales[j]})
		}
		for _, t := range ticks[i:min(i+size, len(ticks))] {
			ex.Append(t.Exchange)
			sym.Append(t.Symbol)
			ts.Append(t.Timestamp)
			recv.Append(t.ReceivedAt)
			for j, f := range decimalFields {
				v, err := toDecimal128(f.get(&t))
				if err != nil {
					b.Fatal(err)
				}
				decs[j].Append(v)
				scales[j].Append(uint8(-f.get(&t).Exponent)) // realisticTicks have no exponents > 0
			}
		}
		var buf proto.Buffer
		if err := (proto.Block{Columns: len(in), Rows: ts.Rows()}).EncodeRawBlock(&buf, nativeFormatRevision, in); err != nil {
			b.Fatal(err)
		}
		out = append(out, buf.Buf)
	}
	return out
}

// realisticTicks look like a ticker stream: prices with 2-8 places, 24 h
// figures to 8 places, ten pairs. (genTicks' 38-digit values are the
// correctness tests' worst case, not what exchanges send.)
func realisticTicks(n int) []tick.Tick {
	syms := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT"}
	out := make([]tick.Tick, n)
	base := int64(1_767_000_000_000)
	for i := range out {
		ts := base + int64(i)*3
		p := 50000 + i%5000
		out[i] = tick.Tick{Exchange: "binance", Symbol: syms[i%len(syms)], Timestamp: ts, ReceivedAt: ts*1000 + 250,
			Price:       tick.MustDecimal(fmt.Sprintf("%d.%02d", p, i%100)),
			Volume:      tick.MustDecimal(fmt.Sprintf("%d.%08d", 12000+i%900, i%100_000_000)),
			Bid:         tick.MustDecimal(fmt.Sprintf("%d.%02d", p, (i+99)%100)),
			Ask:         tick.MustDecimal(fmt.Sprintf("%d.%02d", p, (i+1)%100)),
			Open24h:     tick.MustDecimal(fmt.Sprintf("%d.00", p-100)),
			High24h:     tick.MustDecimal(fmt.Sprintf("%d.50", p+300)),
			Low24h:      tick.MustDecimal(fmt.Sprintf("%d.25", p-400)),
			QuoteVolume: tick.MustDecimal(fmt.Sprintf("%d.%08d", 600_000_000+i, i%100_000_000))}
	}
	return out
}
