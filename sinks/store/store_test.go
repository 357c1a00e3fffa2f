package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*ClickHouseConfig)
		want string // substring of the error; "" means valid
	}{
		{"defaults without url", func(*ClickHouseConfig) {}, ""},
		{"http", func(c *ClickHouseConfig) { c.URL = "http://127.0.0.1:8123" }, ""},
		{"native", func(c *ClickHouseConfig) { c.URL = "clickhouse://u:p@127.0.0.1:9000/db" }, ""},
		{"bad scheme", func(c *ClickHouseConfig) { c.URL = "tcp://127.0.0.1:9000" }, "scheme must be"},
		{"no host", func(c *ClickHouseConfig) { c.URL = "http:///x" }, "no host"},
		{"bad table", func(c *ClickHouseConfig) { c.Table = "ticks; DROP TABLE x" }, "clickhouse.table"},
		{"empty table", func(c *ClickHouseConfig) { c.Table = "" }, "clickhouse.table"},
		{"bad database", func(c *ClickHouseConfig) { c.Database = "a-b" }, "clickhouse.database"},
		{"zero timeout", func(c *ClickHouseConfig) { c.Timeout = 0 }, "clickhouse.timeout"},
		{"negative retention", func(c *ClickHouseConfig) { c.RetentionDays = -1 }, "retention_days"},
		{"bad trades table", func(c *ClickHouseConfig) { c.TradesTable = "t-1" }, "clickhouse.trades_table"},
		{"trades in the ticks table", func(c *ClickHouseConfig) { c.TradesTable = c.Table }, "a table each"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg.ClickHouse)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewWithoutURLIsUnavailable(t *testing.T) {
	env, _ := testEnv(nil)
	_, err := New(env, *DefaultConfig())
	if !errors.Is(err, sinks.ErrUnavailable) || !strings.Contains(err.Error(), "no clickhouse.url configured") {
		t.Fatalf("New without url: %v", err)
	}
	spec, ok := sinks.Lookup("store")
	if !ok {
		t.Fatal("store not registered")
	}
	if spec.Batch != (sinks.BatchPolicy{Size: 50_000, Min: 1000, MaxWait: 5 * time.Second, MinInterval: time.Second}) {
		t.Fatalf("default batch %+v", spec.Batch)
	}
	if _, err := spec.New(env, spec.Config()); !errors.Is(err, sinks.ErrUnavailable) {
		t.Fatalf("spec.New: %v", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		cfg                  ClickHouseConfig
		user, password, db   string
		scheme, redactedHost string
	}{
		{ClickHouseConfig{URL: "http://h:8123"}, "default", "", "default", "http", "h:8123"},
		{ClickHouseConfig{URL: "https://a:b@h:8443/ch"}, "a", "b", "default", "https", "h:8443"},
		{ClickHouseConfig{URL: "https://a:b@h:8443", Username: "c", Password: "d", Database: "x"}, "c", "d", "x", "https", "h:8443"},
		{ClickHouseConfig{URL: "clickhouse://h:9000/hist"}, "default", "", "hist", "clickhouse", "h:9000"},
		{ClickHouseConfig{URL: "clickhouse://h:9000/hist", Database: "y"}, "default", "", "y", "clickhouse", "h:9000"},
	} {
		t.Run(tc.cfg.URL, func(t *testing.T) {
			e, err := parseEndpoint(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if e.user != tc.user || e.password != tc.password || e.database != tc.db || e.scheme != tc.scheme || e.url.Host != tc.redactedHost {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestQuoteString(t *testing.T) {
	for in, want := range map[string]string{
		"BTCUSDT":       `'BTCUSDT'`,
		`a'b`:           `'a\'b'`,
		`a\'); DROP --`: `'a\\\'); DROP --'`,
		"nul\x00":       `'nul\0'`,
	} {
		if got := quoteString(in); got != want {
			t.Errorf("quoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTableDDLByFeatures(t *testing.T) {
	old := tableDDL("`db`.`t`", features{version: "18.16.1"}, 30)
	modern := tableDDL("`db`.`t`", features{version: "24.8.1", lowCardinality: true, codecs: true, ttl: true}, 30)
	for _, tc := range []struct {
		ddl      string
		has, not []string
	}{
		{old, []string{"ReplacingMergeTree", "ORDER BY (exchange, symbol, timestamp, received_at)", "exchange String", "base String,\n    quote String,", "price Decimal(38, 18),",
			"price_scale UInt8,", "quote_volume_scale UInt8\n)"},
			[]string{"LowCardinality", "CODEC", "TTL", "DateTime64"}},
		{modern, []string{"exchange LowCardinality(String)", "base LowCardinality(String),\n    quote LowCardinality(String),", "CODEC(Delta, ZSTD(1))", "Decimal(38, 18) CODEC(ZSTD(1))", "price_scale UInt8 CODEC(ZSTD(1))", "INTERVAL 30 DAY"}, nil},
	} {
		for _, s := range tc.has {
			if !strings.Contains(tc.ddl, s) {
				t.Errorf("DDL lacks %q:\n%s", s, tc.ddl)
			}
		}
		for _, s := range tc.not {
			if strings.Contains(tc.ddl, s) {
				t.Errorf("DDL has %q:\n%s", s, tc.ddl)
			}
		}
	}
	if strings.Contains(tableDDL("t", features{ttl: true}, 0), "TTL") {
		t.Error("TTL without retention")
	}
}

func TestParseVersion(t *testing.T) {
	for v, want := range map[string][3]int{"18.16.1": {18, 16, 1}, "24.8.4.13": {24, 8, 1}, "23.3": {23, 3, 1}, "x": {0, 0, 0}} {
		major, minor, ok := parseVersion(v)
		if major != want[0] || minor != want[1] || ok != (want[2] == 1) {
			t.Errorf("parseVersion(%q) = %d %d %v", v, major, minor, ok)
		}
	}
}

// TestWriteReadExact writes ticks with decimals at the edges of the column
// type and reads them back through the API's queries, exact to the digit.
func TestWriteReadExact(t *testing.T) {
	ch := clickHouse(t)
	s, reg := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	if s.features.lowCardinality || s.features.codecs {
		t.Fatalf("18.16 features detected as %+v", s.features)
	}
	var in []tick.Tick
	for i, p := range []string{"67432.12345678", "0.000000000000000001", "99999999999999999999.999999999999999999", "1", "0.10000000", "1234.5000", "0", "50100.00"} {
		in = append(in, mkTick("binance", "BTCUSDT", 1_700_000_000_000+int64(i)*1000, p))
	}
	other := mkTick("okx", "BTC-USDT", 1_700_000_000_500, "3")
	if err := s.WriteBatch(ctx, append(in, other)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Ticks(ctx, tick.Query{Exchange: "binance", Symbol: "BTCUSDT"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("got %d ticks, want %d", len(got), len(in))
	}
	for i := range got {
		want := &in[len(in)-1-i] // newest first
		if err := sameTick(&got[i], want); err != nil {
			t.Error(err)
		}
	}
	latest, found, err := s.LatestTick(ctx, "binance", "BTCUSDT")
	if err != nil || !found {
		t.Fatalf("latest: %v %v", found, err)
	}
	if err := sameTick(&latest, &in[len(in)-1]); err != nil {
		t.Error(err)
	}
	if _, found, err := s.LatestTick(ctx, "binance", "NOPE"); found || err != nil {
		t.Fatalf("latest of unknown pair: %v %v", found, err)
	}
	// Pair names are quoted, never spliced: an injection attempt is just
	// a pair with no ticks.
	if got, err := s.Ticks(ctx, tick.Query{Exchange: "binance", Symbol: `BTCUSDT' OR 1=1 --`}); err != nil || len(got) != 0 {
		t.Fatalf("injection: %d ticks, %v", len(got), err)
	}
	if latest.Price.Text('f') != "50100.00" {
		t.Fatalf("latest price %s, want 50100.00 as it was written", latest.Price.Text('f'))
	}
	if n := testutil.ToFloat64(s.m.rows); n != float64(len(in)+1) {
		t.Fatalf("rows metric %v", n)
	}
	_ = reg
}

func TestTicksPaging(t *testing.T) {
	ch := clickHouse(t)
	s, _ := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	const n = 25
	var in []tick.Tick
	for i := range n {
		in = append(in, mkTick("sim", "ETHUSDT", 1_700_000_000_000+int64(i)*100, fmt.Sprintf("%d.5", 2000+i)))
	}
	if err := s.WriteBatch(ctx, in); err != nil {
		t.Fatal(err)
	}
	base := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name                string
		q                   tick.Query
		wantNewest, wantLen int // index into in of the first answer, and the count
	}{
		{"limit", tick.Query{Limit: 10}, 24, 10},
		{"cursor", tick.Query{Limit: 10, Before: in[15].Timestamp}, 14, 10},
		{"cursor tail", tick.Query{Limit: 10, Before: in[5].Timestamp}, 4, 5},
		{"from", tick.Query{From: base.Add(2000 * time.Millisecond)}, 24, 5},
		{"to inclusive", tick.Query{To: base.Add(300 * time.Millisecond)}, 3, 4},
		{"window", tick.Query{From: base.Add(500 * time.Millisecond), To: base.Add(900 * time.Millisecond), Limit: 2}, 9, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Exchange, q.Symbol = "sim", "ETHUSDT"
			got, err := s.Ticks(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantLen {
				t.Fatalf("got %d ticks, want %d", len(got), tc.wantLen)
			}
			for i := range got {
				if err := sameTick(&got[i], &in[tc.wantNewest-i]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestRejectsDecimalsThatDoNotFit: a value that would need rounding is
// rejected and counted; the rest of the batch lands.
func TestRejectsDecimalsThatDoNotFit(t *testing.T) {
	ch := clickHouse(t)
	s, reg := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	good := mkTick("sim", "X", 1_700_000_000_000, "1.5")
	precise := mkTick("sim", "X", 1_700_000_001_000, "1.5")
	precise.Bid = tick.MustDecimal("1.0000000000000000001")
	huge := mkTick("sim", "X", 1_700_000_002_000, "1.5")
	huge.QuoteVolume = tick.MustDecimal("1E+25")
	if err := s.WriteBatch(ctx, []tick.Tick{precise, good, huge}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Ticks(ctx, tick.Query{Exchange: "sim", Symbol: "X"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || sameTick(&got[0], &good) != nil {
		t.Fatalf("stored %v", got)
	}
	for reason, want := range map[string]float64{"too_precise": 1, "too_large": 1} {
		if n := testutil.ToFloat64(s.m.rejected.WithLabelValues(reason)); n != want {
			t.Errorf("rejected{%s} = %v, want %v", reason, n, want)
		}
	}
	// A batch of nothing but rejects succeeds without an INSERT.
	if err := s.WriteBatch(ctx, []tick.Tick{precise}); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tickflow_store_ticks_rejected_total"); err != nil || n != 2 {
		t.Fatalf("exposed reject series %d, %v", n, err)
	}
}

// TestOneInsertPerBatch: the runtime hands over a batch; the sink sends it
// as exactly one INSERT of that many rows.
func TestOneInsertPerBatch(t *testing.T) {
	ch := clickHouse(t)
	s, _ := newSink(t, ch.HTTPURL(), nil)
	ct := &countingTransport{transport: s.tr}
	s.tr = ct
	ctx := bg(t)
	sizes := []int{1000, 1000, 1, 437}
	ts := int64(1_700_000_000_000)
	for _, n := range sizes {
		batch := make([]tick.Tick, n)
		for i := range batch {
			batch[i] = mkTick("sim", "BATCH", ts, "42.42")
			ts++
		}
		if err := s.WriteBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := ct.counts(); fmt.Sprint(got) != fmt.Sprint(sizes) {
		t.Fatalf("inserts %v, want %v", got, sizes)
	}
	if got := sql(t, ch, "SELECT count() FROM "+testDB(t)+".market_ticks"); got != "2438" {
		t.Fatalf("rows %s", got)
	}
}

// TestReplayInvisible writes the same ticks again, in different batch
// boundaries, as a replay after a lost commit does; no query the API runs
// sees a copy, although the rows are physically there until a merge.
func TestReplayInvisible(t *testing.T) {
	ch := clickHouse(t)
	s, _ := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	var in []tick.Tick
	for i := range 100 {
		in = append(in, mkTick("sim", "DUP", 1_700_000_000_000+int64(i)*1000, fmt.Sprintf("%d", 100+i%7)))
	}
	table := testDB(t) + ".market_ticks"
	// Hold merges so the copies stay on disk while the queries run: a
	// background merge would otherwise hide them before the test looks.
	sql(t, ch, "SYSTEM STOP MERGES "+table)
	for _, b := range [][]tick.Tick{in[:60], in[40:], in[10:30]} {
		if err := s.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if raw := sql(t, ch, "SELECT count() FROM "+table); raw != "140" {
		t.Fatalf("raw rows %s, want 140 (the test needs the duplicates on disk)", raw)
	}
	got, err := s.Ticks(ctx, tick.Query{Exchange: "sim", Symbol: "DUP", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("visible ticks %d, want %d", len(got), len(in))
	}
	candles, err := s.Candles(ctx, tick.CandleQuery{Exchange: "sim", Symbol: "DUP", Interval: time.Minute,
		From: time.UnixMilli(1_700_000_000_000), To: time.UnixMilli(1_700_000_100_000)})
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, c := range candles {
		total += c.Ticks
	}
	if total != 100 {
		t.Fatalf("candle tick count %d, want 100", total)
	}
	// And the engine does collapse them for good.
	sql(t, ch, "SYSTEM START MERGES "+table)
	sql(t, ch, "OPTIMIZE TABLE "+table+" FINAL")
	if raw := sql(t, ch, "SELECT count() FROM "+table); raw != "100" {
		t.Fatalf("rows after merge %s, want 100", raw)
	}
}

func TestCandles(t *testing.T) {
	ch := clickHouse(t)
	s, _ := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	day := time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return day.Add(d).UnixMilli() }
	mk := func(d time.Duration, recv int64, price string) tick.Tick {
		tk := mkTick("binance", "BTCUSDT", at(d), price)
		tk.ReceivedAt = recv
		return tk
	}
	ticks := []tick.Tick{
		mk(-time.Millisecond, 1, "1"), // the last instant before the window
		// 00:00 bucket: open at the exact boundary.
		mk(0, 2, "100.50"),
		mk(20*time.Second, 3, "101.25"),
		mk(40*time.Second, 4, "99.1250"),
		mk(59*time.Second+999*time.Millisecond, 5, "100.000"), // close: last ms of the bucket
		// 00:01 bucket: nothing.
		// 00:02 bucket: two ticks in the same millisecond; receive time orders them.
		mk(2*time.Minute, 7, "200"),
		mk(2*time.Minute, 6, "201.0"),
		mk(2*time.Minute+30*time.Second, 8, "0.000000000000000001"),
		// 00:03 opens on the boundary of the window's end: excluded.
		mk(3*time.Minute, 9, "300"),
		// The high and the low again, spelt otherwise: each extreme keeps
		// the text of the first tick that reached it.
		mk(30*time.Second, 10, "101.250"),
		mk(50*time.Second, 11, "99.125"),
	}
	// Insert out of order and twice: neither may matter.
	if err := s.WriteBatch(ctx, []tick.Tick{ticks[3], ticks[1], ticks[8], ticks[0], ticks[5]}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, ticks); err != nil {
		t.Fatal(err)
	}
	// Trades give the buckets their volume: each trade once however often
	// written, summed exactly, spelled with the most places of its sizes;
	// 00:01 has trades but no tick (no candle), 00:03 is out of range.
	tw := s.TradeWriter()
	if err := tw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	mkT := func(d time.Duration, id, size string) tick.Trade {
		return tick.Trade{Exchange: "binance", Symbol: "BTCUSDT", TradeID: id, Timestamp: at(d), ReceivedAt: at(d) * 1000,
			Price: tick.MustDecimal("100"), Size: tick.MustDecimal(size), Side: tick.Buy}
	}
	trades := []tick.Trade{mkT(time.Second, "1", "0.5"), mkT(2*time.Second, "2", "0.25"), mkT(2*time.Second, "3", "3"),
		mkT(time.Minute, "4", "9"), mkT(2*time.Minute, "5", "1.5"), mkT(2*time.Minute+time.Second, "6", "0.000000000000000001"),
		mkT(3*time.Minute, "7", "5")}
	for range 2 {
		if err := tw.WriteBatch(ctx, trades); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Candles(ctx, tick.CandleQuery{Exchange: "binance", Symbol: "BTCUSDT", Interval: time.Minute,
		From: day, To: day.Add(3 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		start                  time.Duration
		open, high, low, close string
		n                      uint64
		volume                 string
		trades                 uint64
	}{
		{0, "100.50", "101.25", "99.1250", "100.000", 6, "3.75", 3},
		{2 * time.Minute, "201.0", "201.0", "0.000000000000000001", "0.000000000000000001", 3, "1.500000000000000001", 2},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d candles, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		if !c.Start.Equal(day.Add(w.start)) || c.Start.Location() != time.UTC {
			t.Errorf("candle %d starts %s, want %s", i, c.Start, day.Add(w.start))
		}
		for _, f := range []struct {
			name string
			got  string
			want string
		}{{"open", c.Open.Text('f'), w.open}, {"high", c.High.Text('f'), w.high}, {"low", c.Low.Text('f'), w.low}, {"close", c.Close.Text('f'), w.close}} {
			if f.got != f.want {
				t.Errorf("candle %d %s = %s, want %s as the tick wrote it", i, f.name, f.got, f.want)
			}
		}
		if c.Ticks != w.n {
			t.Errorf("candle %d ticks = %d, want %d", i, c.Ticks, w.n)
		}
		if c.Volume.Text('f') != w.volume || c.Trades != w.trades {
			t.Errorf("candle %d volume %s over %d trades, want %s over %d", i, c.Volume.Text('f'), c.Trades, w.volume, w.trades)
		}
	}
	// Daily buckets align to UTC midnight.
	daily, err := s.Candles(ctx, tick.CandleQuery{Exchange: "binance", Symbol: "BTCUSDT", Interval: 24 * time.Hour,
		From: day.Add(-24 * time.Hour), To: day.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(daily) != 2 || !daily[0].Start.Equal(day.Add(-24*time.Hour)) || !daily[1].Start.Equal(day) || daily[1].Ticks != 10 {
		t.Fatalf("daily candles %+v", daily)
	}
	for _, q := range []tick.CandleQuery{
		{Interval: 0, From: day, To: day.Add(time.Hour)},
		{Interval: time.Minute, From: day, To: day},
		{Interval: time.Second, From: day, To: day.Add(24 * time.Hour)},
	} {
		if _, err := s.Candles(ctx, q); !errors.Is(err, ErrBadCandleQuery) {
			t.Errorf("Candles(%+v) = %v, want ErrBadCandleQuery", q, err)
		}
	}
}

// TestAdoptsExistingTable: a table made by hand (or by another version)
// is used as it is when it fits, LowCardinality columns included, and
// refused with a clear reason when it does not.
func TestAdoptsExistingTable(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	sql(t, ch, "CREATE DATABASE "+db)
	cols := "exchange LowCardinality(String), symbol LowCardinality(String), timestamp Int64, received_at Int64"
	for _, f := range decimalFields {
		cols += ", " + f.name + " Decimal(38, 18)"
	}
	for _, f := range decimalFields {
		cols += ", " + f.scale + " UInt8"
	}
	// 18.16 makes LowCardinality columns only with the experimental
	// switch; the sink does not use it there, but adopts such a table.
	sqlWith(t, ch, "CREATE TABLE "+db+".lc ("+cols+") ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp, received_at)",
		"allow_experimental_low_cardinality_type=1")
	t.Run("low cardinality", func(t *testing.T) {
		s, _ := newSink(t, ch.HTTPURL(), func(c *Config) { c.ClickHouse.Database, c.ClickHouse.Table = db, "lc" })
		if !s.cols.layout.lowCardExchange || !s.cols.layout.lowCardSymbol {
			t.Fatalf("layout %+v", s.cols.layout)
		}
		ctx := bg(t)
		in := []tick.Tick{mkTick("binance", "A", 1_700_000_000_000, "1"), mkTick("okx", "B", 1_700_000_000_001, "2"), mkTick("binance", "A", 1_700_000_000_002, "3")}
		if err := s.WriteBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		if got := sql(t, ch, "SELECT exchange, symbol, toString(price) FROM "+db+".lc ORDER BY timestamp FORMAT CSV"); got != "\"binance\",\"A\",\"1.000000000000000000\"\n\"okx\",\"B\",\"2.000000000000000000\"\n\"binance\",\"A\",\"3.000000000000000000\"" {
			t.Fatalf("stored:\n%s", got)
		}
	})
	for _, tc := range []struct{ name, ddl, want string }{
		{"merge tree", "CREATE TABLE " + db + ".mt (" + strings.ReplaceAll(cols, "LowCardinality(String)", "String") + ") ENGINE = MergeTree ORDER BY (exchange, symbol, timestamp)", "ReplacingMergeTree"},
		{"scale", "CREATE TABLE " + db + ".sc (" + strings.Replace(strings.ReplaceAll(cols, "LowCardinality(String)", "String"), "price Decimal(38, 18)", "price Decimal(38, 8)", 1) + ") ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp)", "column price is Decimal(38, 8)"},
		{"missing", "CREATE TABLE " + db + ".mi (exchange String, symbol String, timestamp Int64) ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp)", "no column received_at"},
		{"scale type", "CREATE TABLE " + db + ".st (" + strings.Replace(strings.ReplaceAll(cols, "LowCardinality(String)", "String"), "ask_scale UInt8", "ask_scale Int8", 1) + ") ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp)", "column ask_scale is Int8, want UInt8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sql(t, ch, tc.ddl)
			cfg := DefaultConfig()
			cfg.ClickHouse.URL, cfg.ClickHouse.Database = ch.HTTPURL(), db
			cfg.ClickHouse.Table = strings.Fields(strings.SplitN(tc.ddl, ".", 2)[1])[0]
			env, _ := testEnv(nil)
			s, err := New(env, *cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Connect(bg(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connect = %v, want an error containing %q", err, tc.want)
			}
			if err := s.WriteBatch(bg(t), []tick.Tick{mkTick("a", "b", 1, "1")}); !errors.Is(err, sinks.ErrNotConnected) {
				t.Fatalf("WriteBatch before a good Connect = %v", err)
			}
		})
	}
}

// TestAdoptsTableWithoutScales: a table made before the scale columns is
// refused with the ALTER that fixes it; once that has run, old rows read
// back as they always did and new ones keep their text.
func TestAdoptsTableWithoutScales(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	sql(t, ch, "CREATE DATABASE "+db)
	cols := "exchange String, symbol String, timestamp Int64, received_at Int64"
	var names, zeros []string
	for _, f := range decimalFields {
		cols += ", " + f.name + " Decimal(38, 18)"
		names = append(names, f.name)
		zeros = append(zeros, "0")
	}
	sql(t, ch, "CREATE TABLE "+db+".market_ticks ("+cols+") ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp, received_at)")
	// What the previous tickflow stored: the numbers, not their text.
	row := func(ts int, price string) string {
		return fmt.Sprintf("('sim', 'OLD', %d, %d, %s, %s)", ts, ts, price, strings.Join(zeros[1:], ", "))
	}
	sql(t, ch, "INSERT INTO "+db+".market_ticks (exchange, symbol, timestamp, received_at, "+strings.Join(names, ", ")+
		") VALUES "+row(1, "50100.00")+", "+row(2, "0.50"))

	cfg := DefaultConfig()
	cfg.ClickHouse.URL, cfg.ClickHouse.Database = ch.HTTPURL(), db
	env, _ := testEnv(nil)
	s, err := New(env, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := bg(t)
	err = s.Connect(ctx)
	if err == nil {
		t.Fatal("a table without scale columns was adopted")
	}
	m := regexp.MustCompile(`"(ALTER TABLE [^"]+)"`).FindStringSubmatch(err.Error())
	if m == nil || !strings.Contains(err.Error(), "missing price_scale, volume_scale,") || !strings.Contains(err.Error(), "trailing zeros") {
		t.Fatalf("Connect = %v, want the missing scale columns named and the ALTER to add them", err)
	}
	if err := s.WriteBatch(ctx, []tick.Tick{mkTick("sim", "NEW", 3, "1.0")}); !errors.Is(err, sinks.ErrNotConnected) {
		t.Fatalf("WriteBatch into a refused table = %v", err)
	}
	sql(t, ch, m[1]) // what the user is told to run
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("Connect after the ALTER: %v", err)
	}
	old, err := s.Ticks(ctx, tick.Query{Exchange: "sim", Symbol: "OLD"})
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != 2 || old[0].Price.Text('f') != "0.5" || old[1].Price.Text('f') != "50100" {
		t.Fatalf("old rows read back as %v, want 0.5 and 50100 as before", old)
	}
	in := mkTick("sim", "NEW", 3, "50100.00")
	if err := s.WriteBatch(ctx, []tick.Tick{in}); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.LatestTick(ctx, "sim", "NEW")
	if err != nil || !found {
		t.Fatalf("latest: %v %v", found, err)
	}
	if err := sameTick(&got, &in); err != nil {
		t.Fatal(err)
	}
}

// preInstrumentDDL is the table an older tickflow made: the schema of
// today without the instrument columns.
func preInstrumentDDL(table string) string {
	return strings.Replace(tableDDL(table, features{version: "18.16.1"}, 0), "    base String,\n    quote String,\n", "", 1)
}

// TestAddsInstrumentColumns: a table from before the normalized instrument
// gets its base and quote columns at Connect (after symbol, String on
// 18.16); its old rows read back with no instrument, new rows with theirs,
// and a second sink that finds the columns already added (as when two
// instances start at once and 18.16 has no ADD COLUMN IF NOT EXISTS) is
// fine.
func TestAddsInstrumentColumns(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	sql(t, ch, "CREATE DATABASE "+db)
	table := "`" + db + "`.`market_ticks`"
	if ddl := preInstrumentDDL(table); strings.Contains(ddl, "base") {
		t.Fatalf("not an older table:\n%s", ddl)
	}
	sql(t, ch, preInstrumentDDL(table))
	var names, zeros []string
	for _, f := range decimalFields {
		names = append(names, f.name, f.scale)
		zeros = append(zeros, "0", "0")
	}
	sql(t, ch, "INSERT INTO "+db+".market_ticks (exchange, symbol, timestamp, received_at, "+strings.Join(names, ", ")+
		") VALUES ('binance', 'BTCUSDT', 1000, 1000007, 1, "+strings.Join(zeros[1:], ", ")+")")

	s, _ := newSink(t, ch.HTTPURL(), nil)
	var cols []string
	for _, line := range strings.Split(sql(t, ch, "DESCRIBE TABLE "+db+".market_ticks FORMAT TSV"), "\n")[:4] {
		f := strings.Split(line, "\t")
		cols = append(cols, f[0]+" "+f[1])
	}
	if got := strings.Join(cols, ", "); got != "exchange String, symbol String, base String, quote String" {
		t.Fatalf("columns after Connect: %s", got)
	}
	ctx := bg(t)
	in := mkTick("binance", "BTCUSDT", 2000, "50100.00")
	if in.Instrument() != "BTC-USDT" {
		t.Fatalf("mkTick instrument %q", in.Instrument())
	}
	if err := s.WriteBatch(ctx, []tick.Tick{in}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Ticks(ctx, tick.Query{Exchange: "binance", Symbol: "BTCUSDT"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Instrument() != "BTC-USDT" || got[1].Base != "" || got[1].Quote != "" {
		t.Fatalf("read back %d ticks: %+v", len(got), got)
	}
	if err := sameTick(&got[0], &in); err != nil {
		t.Fatal(err)
	}
	if latest, _, err := s.LatestTick(ctx, "binance", "BTCUSDT"); err != nil || latest.Instrument() != "BTC-USDT" {
		t.Fatalf("latest: %q %v", latest.Instrument(), err)
	}
	var scanned []string
	if err := s.Scan(ctx, ScanQuery{}, func(t *tick.Tick) error { scanned = append(scanned, t.Instrument()); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(scanned) != "[ BTC-USDT]" {
		t.Fatalf("scan instruments %q", scanned)
	}

	// The race an instance loses: the columns are there by the time its
	// ALTER runs.
	if _, err := addInstrumentColumns(ctx, s.tr, db, "market_ticks", []string{"base", "quote"}, s.features); err != nil {
		t.Fatalf("adding columns that another instance added: %v", err)
	}
	// A table that cannot take them is refused with the reason.
	if _, err := addInstrumentColumns(ctx, s.tr, db, "nope", []string{"base"}, s.features); err == nil || !strings.Contains(err.Error(), "adding the instrument columns base") {
		t.Fatalf("adding columns to a missing table: %v", err)
	}
}

// TestClickHouseDownAndBack takes the real server away: writes fail with
// ErrNotConnected (the runtime then reconnects with backoff), Ready says
// so, the failure is logged once however many attempts fail, and all is
// well once the server is back.
func TestClickHouseDownAndBack(t *testing.T) {
	clickHouse(t) // the skip rule
	ch := testsvc.StartClickHouse(t)
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.ClickHouse.URL, cfg.ClickHouse.Database = ch.HTTPURL(), "down"
	cfg.ClickHouse.Timeout = 5 * time.Second
	env, _ := testEnv(&logs)
	s, err := New(env, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := bg(t)
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	bad := mkTick("sim", "D", 1_700_000_000_001, "1")
	bad.Price = tick.MustDecimal("1.0000000000000000001")
	batch := []tick.Tick{mkTick("sim", "D", 1_700_000_000_000, "1"), bad}
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		err := s.WriteBatch(ctx, batch)
		if !errors.Is(err, sinks.ErrNotConnected) {
			t.Fatalf("write with server down: %v", err)
		}
		if err := s.Connect(ctx); err == nil {
			t.Fatal("connect with server down succeeded")
		}
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("ready with server down")
	}
	if n := strings.Count(logs.String(), "clickhouse failing"); n != 1 {
		t.Fatalf("failure logged %d times, want once:\n%s", n, logs.String())
	}
	if err := ch.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("ready after restart: %v", err)
	}
	if n := strings.Count(logs.String(), "clickhouse answering"); n != 2 { // first contact, then recovery
		t.Fatalf("recovery logged %d times:\n%s", n, logs.String())
	}
	if got := sql(t, ch, "SELECT count() FROM down.market_ticks"); got != "1" {
		t.Fatalf("rows %s", got)
	}
	// The reject is counted once, not once per failed attempt.
	if n := testutil.ToFloat64(s.m.rejected.WithLabelValues("too_precise")); n != 1 {
		t.Fatalf("rejected{too_precise} = %v after 3 failed attempts and a success, want 1", n)
	}
}
