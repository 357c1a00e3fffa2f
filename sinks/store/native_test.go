package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// recvColumn is one column as a peer received it: the name and type it
// was sent with and its decoded values.
type recvColumn struct {
	name string
	typ  proto.ColumnType
	data proto.Column
}

// recvBlock decodes a block column by column, keeping the types as sent:
// proto.Results would normalise them ("Decimal(38, 18)" to Decimal128).
type recvBlock struct{ cols []recvColumn }

func (rb *recvBlock) DecodeResult(r *proto.Reader, version int, b proto.Block) error {
	for i := 0; i < b.Columns; i++ {
		name, err := r.Str()
		if err != nil {
			return err
		}
		typ, err := r.Str()
		if err != nil {
			return err
		}
		if proto.FeatureCustomSerialization.In(version) {
			if custom, err := r.Bool(); err != nil || custom {
				return fmt.Errorf("column %s: custom serialization %v %v", name, custom, err)
			}
		}
		var auto proto.ColAuto
		if err := auto.Infer(proto.ColumnType(typ)); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
		if b.Rows > 0 {
			if s, ok := auto.Data.(proto.StateDecoder); ok {
				if err := s.DecodeState(r); err != nil {
					return err
				}
			}
			if err := auto.Data.DecodeColumn(r, b.Rows); err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
		}
		rb.cols = append(rb.cols, recvColumn{name, proto.ColumnType(typ), auto.Data})
	}
	return nil
}

// checkBlock verifies a received block is the store's column set, typed as
// l says, holding exactly the ticks in want.
func checkBlock(t *testing.T, rb *recvBlock, l layout, want []tick.Tick) {
	t.Helper()
	str := proto.ColumnType("String")
	if l.lowCardExchange {
		str = "LowCardinality(String)"
	}
	wantCols := []struct {
		name string
		typ  proto.ColumnType
	}{{"exchange", str}, {"symbol", str}, {"base", str}, {"quote", str}, {"timestamp", "Int64"}, {"received_at", "Int64"}}
	for _, f := range decimalFields {
		wantCols = append(wantCols, struct {
			name string
			typ  proto.ColumnType
		}{f.name, "Decimal(38, 18)"})
	}
	for _, f := range decimalFields {
		wantCols = append(wantCols, struct {
			name string
			typ  proto.ColumnType
		}{f.scale, "UInt8"})
	}
	if len(rb.cols) != len(wantCols) {
		t.Fatalf("block has %d columns, want %d", len(rb.cols), len(wantCols))
	}
	for i, w := range wantCols {
		if rb.cols[i].name != w.name || rb.cols[i].typ != w.typ {
			t.Fatalf("column %d is %s %s, want %s %s", i, rb.cols[i].name, rb.cols[i].typ, w.name, w.typ)
		}
		if n := rb.cols[i].data.Rows(); n != len(want) {
			t.Fatalf("column %s has %d rows, want %d", w.name, n, len(want))
		}
	}
	strAt := func(c proto.Column, i int) string {
		switch c := c.(type) {
		case *proto.ColStr:
			return c.Row(i)
		case *proto.ColLowCardinality[string]:
			return c.Row(i)
		}
		t.Fatalf("string column decoded as %T", c)
		return ""
	}
	for i := range want {
		w := &want[i]
		var got tick.Tick
		got.Exchange = strAt(rb.cols[0].data, i)
		got.Symbol = strAt(rb.cols[1].data, i)
		got.Base = strAt(rb.cols[2].data, i)
		got.Quote = strAt(rb.cols[3].data, i)
		got.Timestamp = rb.cols[4].data.(*proto.ColInt64).Row(i)
		got.ReceivedAt = rb.cols[5].data.(*proto.ColInt64).Row(i)
		for j, f := range decimalFields {
			v := rb.cols[6+j].data.(*proto.ColDecimal128).Row(i)
			// Independent of fromDecimal128: the unscaled integer must
			// equal the tick's value times 10^18.
			if got, want := int128Big(v), unscaled(t, f.get(w).String()); got.Cmp(want) != 0 {
				t.Fatalf("row %d %s: unscaled %s, want %s", i, f.name, got, want)
			}
			sc := rb.cols[6+numDecimals+j].data.(*proto.ColUInt8).Row(i)
			if want := uint8(-f.get(w).Exponent); sc != want {
				t.Fatalf("row %d %s: scale %d, want %d", i, f.scale, sc, want)
			}
			fromDecimal128(f.get(&got), v, sc)
		}
		if err := sameTick(&got, w); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
}

func sampleTicks() []tick.Tick {
	return []tick.Tick{
		mkTick("binance", "BTCUSDT", 1_700_000_000_000, "67432.12345678"),
		mkTick("okx", "BTC-USDT", 1_700_000_000_001, "0.000000000000000001"),
		mkTick("binance", "BTCUSDT", 1_700_000_000_002, "99999999999999999999.999999999999999999"),
		mkTick("binance", "ETHUSDT", 1_700_000_000_003, "1"),
		mkTick("binance", "BTCUSDT", 1_700_000_000_004, "50100.00"),
		mkTick("okx", "SOL-USDT", 1_700_000_000_005, "0.10000000"),
	}
}

// TestColumnSetEncodeDecode round-trips the column set through ch-go's
// block codec at both revisions the transports use.
func TestColumnSetEncodeDecode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		l        layout
		revision int
	}{
		{"http plain", layout{}, nativeFormatRevision},
		{"http low cardinality", layout{true, true, true, true}, nativeFormatRevision},
		{"native plain", layout{}, proto.Version},
		{"native low cardinality", layout{true, true, true, true}, proto.Version},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newColumns(tc.l)
			in := sampleTicks()
			// Reuse across batches must not leak rows from the last one.
			for range 2 {
				c.reset()
				for i := range in {
					if err := c.append(&in[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			var buf proto.Buffer
			if err := (proto.Block{Columns: len(c.input), Rows: c.rows()}).EncodeRawBlock(&buf, tc.revision, c.input); err != nil {
				t.Fatal(err)
			}
			var rb recvBlock
			var b proto.Block
			if err := b.DecodeRawBlock(proto.NewReader(strings.NewReader(string(buf.Buf))), tc.revision, &rb); err != nil {
				t.Fatal(err)
			}
			checkBlock(t, &rb, tc.l, in)
		})
	}
}

// TestColumnSetRejectKeepsColumnsAligned: a tick that does not fit leaves
// no partial row behind.
func TestColumnSetRejectKeepsColumnsAligned(t *testing.T) {
	c := newColumns(layout{})
	in := sampleTicks()
	bad := in[1]
	bad.QuoteVolume = tick.MustDecimal("0.1234567890123456789")
	for _, tk := range []tick.Tick{in[0], bad, in[2]} {
		err := c.append(&tk)
		if tk.Timestamp == bad.Timestamp && tk.Symbol == bad.Symbol {
			var fe *fieldError
			if !errors.As(err, &fe) || fe.field != "quote_volume" || !errors.Is(err, errTooPrecise) {
				t.Fatalf("append(bad) = %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for _, col := range c.input {
		if col.Data.Rows() != 2 {
			t.Fatalf("column %s has %d rows, want 2", col.Name, col.Data.Rows())
		}
	}
}

// fakeNative is a ClickHouse native-protocol peer built from ch-go's proto
// package. ch-go's own ch.Server cannot take an INSERT ("input not
// implemented"), so this plays a current server: it answers the store's
// schema queries, takes INSERT blocks (LZ4-compressed, as the client sends
// them) and records what it got.
type fakeNative struct {
	t  *testing.T
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	queries []string
	inserts []*recvBlock
	// insertError, when set, is raised for INSERTs as a server exception.
	insertError *proto.Exception
	// tickReply answers the store's tick SELECTs, tradeReply its trade
	// SELECTs.
	tickReply, tradeReply proto.Input
}

const fakeRevision = proto.Version

func startFakeNative(t *testing.T) *fakeNative {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNative{t: t, ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				if err := f.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					t.Errorf("fake server: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeNative) url() string { return "clickhouse://" + f.ln.Addr().String() }

type fakeConn struct {
	c          net.Conn
	r          *proto.Reader
	buf        proto.Buffer
	ver        int
	compressed bool
	zw         *compress.Writer
}

func (fc *fakeConn) flush() error {
	_, err := fc.c.Write(fc.buf.Buf)
	fc.buf.Reset()
	return err
}

// sendBlock writes a Data packet with in as its block.
func (fc *fakeConn) sendBlock(in proto.Input) error {
	proto.ServerCodeData.Encode(&fc.buf)
	fc.buf.PutString("") // temporary table name
	rows := 0
	if len(in) > 0 {
		rows = in[0].Data.Rows()
	}
	start := len(fc.buf.Buf)
	if err := (proto.Block{Info: proto.BlockInfo{BucketNum: -1}, Columns: len(in), Rows: rows}).EncodeBlock(&fc.buf, fc.ver, in); err != nil {
		return err
	}
	if fc.compressed {
		if err := fc.zw.Compress(fc.buf.Buf[start:]); err != nil {
			return err
		}
		fc.buf.Buf = append(fc.buf.Buf[:start], fc.zw.Data...)
	}
	return nil
}

// readBlock reads a client Data packet into res (nil: must be empty).
func (fc *fakeConn) readBlock(res proto.Result) (proto.Block, error) {
	var b proto.Block
	code, err := fc.r.UVarInt()
	if err != nil {
		return b, err
	}
	if proto.ClientCode(code) != proto.ClientCodeData {
		return b, fmt.Errorf("got packet %v, want data", proto.ClientCode(code))
	}
	var cd proto.ClientData
	if err := cd.DecodeAware(fc.r, fc.ver); err != nil {
		return b, err
	}
	if fc.compressed {
		fc.r.EnableCompression()
		defer fc.r.DisableCompression()
	}
	err = b.DecodeBlock(fc.r, fc.ver, res)
	return b, err
}

func (f *fakeNative) serve(c net.Conn) error {
	fc := &fakeConn{c: c, r: proto.NewReader(c), zw: compress.NewWriter(compress.LevelZero, compress.LZ4)}
	code, err := fc.r.UVarInt()
	if err != nil {
		return err
	}
	if proto.ClientCode(code) != proto.ClientCodeHello {
		return fmt.Errorf("first packet %v", proto.ClientCode(code))
	}
	var hello proto.ClientHello
	if err := hello.Decode(fc.r); err != nil {
		return err
	}
	fc.ver = min(hello.ProtocolVersion, fakeRevision)
	(&proto.ServerHello{Name: "ClickHouse", Major: 24, Minor: 8, Revision: fakeRevision, Timezone: "UTC", DisplayName: "fake", Patch: 4}).EncodeAware(&fc.buf, fc.ver)
	if err := fc.flush(); err != nil {
		return err
	}
	if proto.FeatureAddendum.In(fc.ver) {
		if _, err := fc.r.Str(); err != nil { // quota key
			return err
		}
	}
	for {
		code, err := fc.r.UVarInt()
		if err != nil {
			return err
		}
		switch proto.ClientCode(code) {
		case proto.ClientCodePing:
			proto.ServerCodePong.Encode(&fc.buf)
		case proto.ClientCodeQuery:
			if err := f.query(fc); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected packet %v", proto.ClientCode(code))
		}
		if err := fc.flush(); err != nil {
			return err
		}
	}
}

func strCol(vals ...string) *proto.ColStr {
	c := new(proto.ColStr)
	for _, v := range vals {
		c.Append(v)
	}
	return c
}

func (f *fakeNative) query(fc *fakeConn) error {
	var q proto.Query
	if err := q.DecodeAware(fc.r, fc.ver); err != nil {
		return err
	}
	fc.compressed = q.Compression == proto.CompressionEnabled
	if _, err := fc.readBlock(nil); err != nil { // end of external tables
		return fmt.Errorf("external data: %w", err)
	}
	f.mu.Lock()
	f.queries = append(f.queries, q.Body)
	insertErr, reply, tradeReply := f.insertError, f.tickReply, f.tradeReply
	f.mu.Unlock()
	lc := func() proto.Column { return proto.Alias(new(proto.ColStr), "LowCardinality(String)") }
	body := q.Body
	var out proto.Input
	switch {
	case strings.HasPrefix(body, "INSERT INTO"):
		if insertErr != nil {
			// Answer with the exception and hang up, so the client's
			// unread input cannot be taken for the next query.
			proto.ServerCodeException.Encode(&fc.buf)
			insertErr.EncodeAware(&fc.buf, fc.ver)
			if err := fc.flush(); err != nil {
				return err
			}
			return io.EOF
		}
		// The table's structure, as a server sends it before the data.
		if strings.Contains(body, "market_trades") {
			var th proto.Input
			for _, c := range tradeStrings {
				th = append(th, proto.InputColumn{Name: c, Data: lc()})
			}
			th = append(th, proto.InputColumn{Name: "timestamp", Data: new(proto.ColInt64)}, proto.InputColumn{Name: "received_at", Data: new(proto.ColInt64)})
			for _, d := range tradeDecimals {
				th = append(th, proto.InputColumn{Name: d.name, Data: proto.Alias(new(proto.ColDecimal128), decimalType)})
			}
			for _, d := range tradeDecimals {
				th = append(th, proto.InputColumn{Name: d.scale, Data: new(proto.ColUInt8)})
			}
			if err := fc.sendBlock(th); err != nil {
				return err
			}
			if err := fc.flush(); err != nil {
				return err
			}
			return f.readInserts(fc)
		}
		header := proto.Input{
			{Name: "exchange", Data: proto.Alias(new(proto.ColStr), "LowCardinality(String)")},
			{Name: "symbol", Data: proto.Alias(new(proto.ColStr), "LowCardinality(String)")},
			{Name: "base", Data: proto.Alias(new(proto.ColStr), "LowCardinality(String)")},
			{Name: "quote", Data: proto.Alias(new(proto.ColStr), "LowCardinality(String)")},
			{Name: "timestamp", Data: new(proto.ColInt64)},
			{Name: "received_at", Data: new(proto.ColInt64)},
		}
		for _, d := range decimalFields {
			header = append(header, proto.InputColumn{Name: d.name, Data: proto.Alias(new(proto.ColDecimal128), decimalType)})
		}
		for _, d := range decimalFields {
			header = append(header, proto.InputColumn{Name: d.scale, Data: new(proto.ColUInt8)})
		}
		if err := fc.sendBlock(header); err != nil {
			return err
		}
		if err := fc.flush(); err != nil {
			return err
		}
		return f.readInserts(fc)
	case body == "SELECT version()":
		out = proto.Input{{Name: "version()", Data: strCol("24.8.4.13")}}
	case strings.Contains(body, "FROM system.settings"):
		out = proto.Input{{Name: "value", Data: strCol()}} // setting gone: LowCardinality is GA
	case strings.Contains(body, "FROM system.tables"):
		out = proto.Input{{Name: "engine", Data: strCol("ReplacingMergeTree")}, {Name: "engine_full", Data: strCol("ReplacingMergeTree ORDER BY (exchange, symbol, timestamp, received_at)")}}
	case strings.Contains(body, "FROM system.columns") && strings.Contains(body, "'market_trades'"):
		names, types := strCol(), strCol()
		add := func(n, t string) { names.Append(n); types.Append(t) }
		for _, c := range tradeStrings {
			add(c, "LowCardinality(String)")
		}
		add("timestamp", "Int64")
		add("received_at", "Int64")
		for _, d := range tradeDecimals {
			add(d.name, string(decimalType))
			add(d.scale, "UInt8")
		}
		out = proto.Input{{Name: "name", Data: names}, {Name: "type", Data: types}}
	case strings.Contains(body, "FROM system.columns"):
		names, types := strCol(), strCol()
		for _, c := range [][2]string{{"exchange", "LowCardinality(String)"}, {"symbol", "LowCardinality(String)"},
			{"base", "LowCardinality(String)"}, {"quote", "LowCardinality(String)"}, {"timestamp", "Int64"}, {"received_at", "Int64"}} {
			names.Append(c[0])
			types.Append(c[1])
		}
		for _, d := range decimalFields {
			names.Append(d.name)
			types.Append(string(decimalType))
			names.Append(d.scale)
			types.Append("UInt8")
		}
		out = proto.Input{{Name: "name", Data: names}, {Name: "type", Data: types}}
	case strings.HasPrefix(body, "SELECT timestamp, received_at"):
		out = reply
	case strings.HasPrefix(body, "SELECT timestamp, trade_id"):
		out = tradeReply
	case strings.HasPrefix(body, "CREATE "):
	default:
		return fmt.Errorf("fake server: unexpected query %q", body)
	}
	if out != nil {
		if err := fc.sendBlock(out); err != nil {
			return err
		}
	}
	proto.ServerCodeEndOfStream.Encode(&fc.buf)
	return nil
}

// readInserts takes an INSERT's data blocks until the empty one that ends
// them, and answers with the end of the stream.
func (f *fakeNative) readInserts(fc *fakeConn) error {
	for {
		rb := new(recvBlock)
		b, err := fc.readBlock(rb)
		if err != nil {
			return fmt.Errorf("insert data: %w", err)
		}
		if b.End() {
			break
		}
		f.mu.Lock()
		f.inserts = append(f.inserts, rb)
		f.mu.Unlock()
	}
	proto.ServerCodeEndOfStream.Encode(&fc.buf)
	return nil
}

// TestNativeTransportProtocol runs the sink over clickhouse:// against the
// fake server: schema detection picks a current server's features, the
// INSERT block arrives compressed with the right types and exact values,
// and tick reads decode native result blocks.
func TestNativeTransportProtocol(t *testing.T) {
	f := startFakeNative(t)
	env, _ := testEnv(nil)
	cfg := DefaultConfig()
	cfg.ClickHouse.URL = f.url()
	cfg.ClickHouse.Database = "hist"
	cfg.ClickHouse.RetentionDays = 90
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
	if !s.features.lowCardinality || !s.features.codecs || !s.features.ttl {
		t.Fatalf("features %+v, want a current server's", s.features)
	}
	f.mu.Lock()
	ddl := strings.Join(f.queries, "\n")
	f.mu.Unlock()
	for _, want := range []string{"CREATE DATABASE IF NOT EXISTS `hist`", "CREATE TABLE IF NOT EXISTS `hist`.`market_ticks`",
		"exchange LowCardinality(String)", "CODEC(Delta, ZSTD(1))", "TTL toDateTime(intDiv(timestamp, 1000), 'UTC') + INTERVAL 90 DAY"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("statements lack %q:\n%s", want, ddl)
		}
	}

	in := sampleTicks()
	if err := s.WriteBatch(ctx, in); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	inserts := f.inserts
	last := f.queries[len(f.queries)-1]
	f.mu.Unlock()
	if len(inserts) != 1 {
		t.Fatalf("server got %d blocks, want one", len(inserts))
	}
	if !strings.HasPrefix(last, "INSERT INTO `hist`.`market_ticks` (\"exchange\",\"symbol\",\"base\",\"quote\",\"timestamp\"") {
		t.Fatalf("insert statement %q", last)
	}
	checkBlock(t, inserts[0], layout{true, true, true, true}, in)

	// Reads: the server answers with a native block the sink decodes.
	var ts, recv proto.ColInt64
	var base, quote proto.ColStr
	var decs [numDecimals]proto.ColDecimal128
	var scales [numDecimals]proto.ColUInt8
	reply := proto.Input{{Name: "timestamp", Data: &ts}, {Name: "received_at", Data: &recv}, {Name: "_base", Data: &base}, {Name: "_quote", Data: &quote}}
	for i, d := range decimalFields {
		reply = append(reply, proto.InputColumn{Name: "_" + d.name, Data: proto.Alias(&decs[i], decimalType)})
	}
	for i, d := range decimalFields {
		reply = append(reply, proto.InputColumn{Name: "_" + d.scale, Data: &scales[i]})
	}
	want := []tick.Tick{in[4], in[2], in[0]}
	for i := range want {
		ts.Append(want[i].Timestamp)
		recv.Append(want[i].ReceivedAt)
		base.Append(want[i].Base)
		quote.Append(want[i].Quote)
		for j, d := range decimalFields {
			v, err := toDecimal128(d.get(&want[i]))
			if err != nil {
				t.Fatal(err)
			}
			decs[j].Append(v)
			sc, err := scaleOf(d.get(&want[i]))
			if err != nil {
				t.Fatal(err)
			}
			scales[j].Append(sc)
		}
	}
	f.mu.Lock()
	f.tickReply = reply
	f.mu.Unlock()
	got, err := s.Ticks(ctx, tick.Query{Exchange: "binance", Symbol: "BTCUSDT"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d ticks", len(got))
	}
	for i := range got {
		if err := sameTick(&got[i], &want[i]); err != nil {
			t.Fatal(err)
		}
	}

	// A server exception for a missing table sends the runtime back to
	// Connect; the broken connection is not reused.
	f.mu.Lock()
	f.insertError = &proto.Exception{Code: proto.ErrUnknownTable, Name: "DB::Exception", Message: "Table hist.market_ticks does not exist"}
	f.mu.Unlock()
	err = s.WriteBatch(ctx, in)
	var se *serverError
	if !errors.Is(err, sinks.ErrNotConnected) || !errors.As(err, &se) || se.Code != codeUnknownTable {
		t.Fatalf("insert into missing table: %v", err)
	}
	f.mu.Lock()
	f.insertError = nil
	f.mu.Unlock()
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
}

// TestNativeServerDown: a refused dial is a link error, so the runtime
// reconnects with backoff.
func TestNativeServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env, _ := testEnv(nil)
	cfg := DefaultConfig()
	cfg.ClickHouse.URL = "clickhouse://" + addr
	s, err := New(env, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Connect(bg(t))
	if !isLinkError(err) {
		t.Fatalf("connect to nothing: %v", err)
	}
	if err := s.Ready(bg(t)); err == nil {
		t.Fatal("ready with no server")
	}
}

// TestNativeTradesProtocol runs the trade writer and the trade history
// over clickhouse:// against the fake server: the trades table is made
// with a current server's types, the INSERT block carries every column
// typed and exact, and trade reads decode native result blocks.
func TestNativeTradesProtocol(t *testing.T) {
	f := startFakeNative(t)
	env, _ := testEnv(nil)
	cfg := DefaultConfig()
	cfg.ClickHouse.URL = f.url()
	cfg.ClickHouse.Database = "hist"
	s, err := New(env, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	w := s.TradeWriter()
	defer w.Close(context.Background())
	ctx := bg(t)
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ddl := strings.Join(f.queries, "\n")
	f.mu.Unlock()
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS `hist`.`market_trades`", "side LowCardinality(String)", "ORDER BY (exchange, symbol, timestamp, trade_id)"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("statements lack %q:\n%s", want, ddl)
		}
	}
	in := []tick.Trade{mkTrade("okx", "BTC-USDT", 1), mkTrade("kraken", "BTC/USD", 2), mkTrade("okx", "BTC-USDT", 3)}
	in[2].Price = tick.MustDecimal("99999999999999999999.999999999999999999")
	if err := w.WriteBatch(ctx, in); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	inserts := f.inserts
	last := f.queries[len(f.queries)-1]
	f.mu.Unlock()
	if len(inserts) != 1 || !strings.HasPrefix(last, "INSERT INTO `hist`.`market_trades` (\"exchange\",\"symbol\",\"base\",\"quote\",\"trade_id\",\"side\",\"timestamp\"") {
		t.Fatalf("%d blocks; insert statement %q", len(inserts), last)
	}
	rb := inserts[0]
	wantTypes := []string{"LowCardinality(String)", "LowCardinality(String)", "LowCardinality(String)", "LowCardinality(String)", "LowCardinality(String)", "LowCardinality(String)",
		"Int64", "Int64", "Decimal(38, 18)", "Decimal(38, 18)", "UInt8", "UInt8"}
	if len(rb.cols) != len(wantTypes) {
		t.Fatalf("block has %d columns, want %d", len(rb.cols), len(wantTypes))
	}
	for i, typ := range wantTypes {
		if string(rb.cols[i].typ) != typ || rb.cols[i].data.Rows() != len(in) {
			t.Fatalf("column %d %s is %s with %d rows, want %s with %d", i, rb.cols[i].name, rb.cols[i].typ, rb.cols[i].data.Rows(), typ, len(in))
		}
	}
	for i := range in {
		var got tick.Trade
		strs := make([]string, len(tradeStrings))
		for j := range strs {
			strs[j] = rb.cols[j].data.(*proto.ColLowCardinality[string]).Row(i)
		}
		got.Exchange, got.Symbol, got.Base, got.Quote, got.TradeID, got.Side = strs[0], strs[1], strs[2], strs[3], strs[4], tick.Side(strs[5])
		got.Timestamp = rb.cols[6].data.(*proto.ColInt64).Row(i)
		got.ReceivedAt = rb.cols[7].data.(*proto.ColInt64).Row(i)
		for j, d := range tradeDecimals {
			v := rb.cols[8+j].data.(*proto.ColDecimal128).Row(i)
			if got, want := int128Big(v), unscaled(t, d.get(&in[i]).String()); got.Cmp(want) != 0 {
				t.Fatalf("row %d %s: unscaled %s, want %s", i, d.name, got, want)
			}
			fromDecimal128(d.get(&got), v, rb.cols[8+len(tradeDecimals)+j].data.(*proto.ColUInt8).Row(i))
		}
		if err := sameTrade(&got, &in[i]); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}

	// Reads: the server answers with a native block the history decodes.
	var ts, recv proto.ColInt64
	var id, base, quote, side proto.ColStr
	var decs [len(tradeDecimals)]proto.ColDecimal128
	var scales [len(tradeDecimals)]proto.ColUInt8
	reply := proto.Input{{Name: "timestamp", Data: &ts}, {Name: "trade_id", Data: &id}, {Name: "_received_at", Data: &recv},
		{Name: "_base", Data: &base}, {Name: "_quote", Data: &quote}, {Name: "_side", Data: &side}}
	for i, d := range tradeDecimals {
		reply = append(reply, proto.InputColumn{Name: "_" + d.name, Data: proto.Alias(&decs[i], decimalType)})
	}
	for i, d := range tradeDecimals {
		reply = append(reply, proto.InputColumn{Name: "_" + d.scale, Data: &scales[i]})
	}
	want := []tick.Trade{in[2], in[0]} // okx's, newest first
	for i := range want {
		ts.Append(want[i].Timestamp)
		id.Append(want[i].TradeID)
		recv.Append(want[i].ReceivedAt)
		base.Append(want[i].Base)
		quote.Append(want[i].Quote)
		side.Append(string(want[i].Side))
		for j, d := range tradeDecimals {
			v, err := toDecimal128(d.get(&want[i]))
			if err != nil {
				t.Fatal(err)
			}
			decs[j].Append(v)
			sc, err := scaleOf(d.get(&want[i]))
			if err != nil {
				t.Fatal(err)
			}
			scales[j].Append(sc)
		}
	}
	f.mu.Lock()
	f.tradeReply = reply
	f.mu.Unlock()
	got, err := s.Trades(ctx, tick.Query{Exchange: "okx", Symbol: "BTC-USDT"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d trades", len(got))
	}
	for i := range got {
		if err := sameTrade(&got[i], &want[i]); err != nil {
			t.Fatal(err)
		}
	}
}
