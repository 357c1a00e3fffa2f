package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
)

// features are what the server supports beyond ClickHouse 18.16, detected
// once per Connect.
type features struct {
	version string
	// lowCardinality: LowCardinality(String) works without an experimental
	// setting (18.16 has it only behind one, so it is not used there).
	lowCardinality bool
	// codecs: per-column CODEC(...) clauses.
	codecs bool
	// ttl: a table TTL clause for retention.
	ttl bool
}

// modernVersion is where codecs and TTL are taken as given. Both arrived
// during 19.x; 20.3 (an LTS) is a conservative line that avoids guessing
// at the exact minor version. Older servers get the plain schema.
var modernVersion = [2]int{20, 3}

func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

func detectFeatures(ctx context.Context, tr transport) (features, error) {
	var f features
	var str proto.ColStr
	if err := tr.query(ctx, "SELECT version()", proto.Results{{Data: &str}}, func() error {
		f.version = str.Row(0)
		return nil
	}); err != nil {
		return f, fmt.Errorf("server version: %w", err)
	}
	major, minor, ok := parseVersion(f.version)
	if !ok {
		return f, fmt.Errorf("server version %q not understood", f.version)
	}
	modern := major > modernVersion[0] || (major == modernVersion[0] && minor >= modernVersion[1])
	f.codecs, f.ttl = modern, modern

	// The experimental switch exists (set to 0) where LowCardinality is
	// still experimental; later servers enable it or dropped the setting.
	f.lowCardinality = true
	var val proto.ColStr
	if err := tr.query(ctx, "SELECT value FROM system.settings WHERE name = 'allow_experimental_low_cardinality_type'",
		proto.Results{{Data: &val}}, func() error {
			if val.Row(0) == "0" {
				f.lowCardinality = false
			}
			return nil
		}); err != nil {
		return f, fmt.Errorf("server settings: %w", err)
	}
	return f, nil
}

// tableDDL is the CREATE TABLE statement for the server's features.
//
// ReplacingMergeTree keyed by the whole tick identity (pair, event time,
// receive time) makes a replayed tick a duplicate row that merges collapse;
// until they do, every query the API runs groups by the same identity, so
// no copy is ever visible. Receive time is part of the identity because two
// distinct updates can share an exchange millisecond; a replay of a Kafka
// record carries the same receive time, so it still collapses.
func tableDDL(table string, f features, retentionDays int) string {
	str := stringType(f)
	intCodec, decCodec := "", ""
	if f.codecs {
		intCodec, decCodec = " CODEC(Delta, ZSTD(1))", " CODEC(ZSTD(1))"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n", table)
	fmt.Fprintf(&b, "    exchange %s,\n    symbol %s,\n", str, str)
	fmt.Fprintf(&b, "    base %s,\n    quote %s,\n", str, str) // the normalized instrument; '' when unresolved
	fmt.Fprintf(&b, "    timestamp Int64%s,\n", intCodec)      // exchange event time, Unix ms
	fmt.Fprintf(&b, "    received_at Int64%s", intCodec)       // tickflow receive time, Unix µs
	for _, d := range decimalFields {
		fmt.Fprintf(&b, ",\n    %s %s%s", d.name, decimalType, decCodec)
	}
	for _, d := range decimalFields {
		fmt.Fprintf(&b, ",\n    %s %s%s", d.scale, scaleType, decCodec) // digits after the point, see decimal.go
	}
	b.WriteString("\n) ENGINE = ReplacingMergeTree\n")
	b.WriteString("PARTITION BY toYYYYMM(toDateTime(intDiv(timestamp, 1000), 'UTC'))\n")
	b.WriteString("ORDER BY (exchange, symbol, timestamp, received_at)")
	if f.ttl && retentionDays > 0 {
		fmt.Fprintf(&b, "\nTTL toDateTime(intDiv(timestamp, 1000), 'UTC') + INTERVAL %d DAY", retentionDays)
	}
	return b.String()
}

// instrumentColumns are the columns an older tickflow's table lacks and the
// sink adds itself: they are not part of any key, adding them is a
// metadata change, and rows already stored read back with the default ”
// exactly as a tick without an instrument. (The scale columns, by
// contrast, change what old rows mean, so adding them is left to the
// user.)
var instrumentColumns = [...]string{"base", "quote"}

// checkTable verifies an existing table (ours, or one made by hand or by an
// older tickflow) can take the sink's rows and keeps duplicates invisible,
// adds the instrument columns if it is otherwise fit and lacks them, and
// returns how its string columns are typed.
func checkTable(ctx context.Context, tr transport, database, table string, f features) (layout, error) {
	var l layout
	distributed, err := checkEngine(ctx, tr, database, table)
	if err != nil {
		return l, err
	}
	types, err := columnTypes(ctx, tr, database, table)
	if err != nil {
		return l, err
	}
	var problems []string
	want := func(col string, ok func(string) bool, expect string) {
		got, present := types[col]
		switch {
		case !present:
			problems = append(problems, fmt.Sprintf("no column %s (want %s)", col, expect))
		case !ok(got):
			problems = append(problems, fmt.Sprintf("column %s is %s, want %s", col, got, expect))
		}
	}
	isStr := func(t string) bool { return t == "String" || t == "LowCardinality(String)" }
	want("exchange", isStr, "String")
	want("symbol", isStr, "String")
	isInt64 := func(t string) bool { return t == "Int64" }
	want("timestamp", isInt64, "Int64")
	want("received_at", isInt64, "Int64")
	var noScales []string
	for _, d := range decimalFields {
		want(d.name, sameDecimal, string(decimalType))
		if _, ok := types[d.scale]; !ok {
			noScales = append(noScales, d.scale)
			continue
		}
		want(d.scale, func(t string) bool { return t == string(scaleType) }, string(scaleType))
	}
	if len(noScales) > 0 {
		// A table from before the scale columns: it would hand back
		// "50100" for "50100.00". Altering a user's table is not the
		// sink's call; say exactly what to run.
		problems = append(problems, fmt.Sprintf("missing %s: the table predates per-value decimal scales, "+
			"so prices would read back without their trailing zeros; add the columns with %q "+
			"(rows already stored keep reading back as before, trailing zeros dropped)",
			strings.Join(noScales, ", "), addScalesSQL(database, table, noScales)))
	}
	var noInstrument []string
	for _, c := range instrumentColumns {
		if _, ok := types[c]; !ok {
			noInstrument = append(noInstrument, c)
			continue
		}
		want(c, isStr, "String")
	}
	if len(noInstrument) > 0 && distributed && len(problems) == 0 {
		// Without ZooKeeper there is no ON CLUSTER: the shards' tables
		// are the user's to alter, like creating them was.
		problems = append(problems, fmt.Sprintf("missing %s: the table predates the normalized instrument; run %q "+
			"on every shard's local table and on this Distributed table", strings.Join(noInstrument, ", "),
			addColumnsSQL(database, table, noInstrument, stringType(f))))
	}
	if len(problems) > 0 {
		return l, fmt.Errorf("table %s.%s does not match the store's schema: %s", database, table, strings.Join(problems, "; "))
	}
	if len(noInstrument) > 0 {
		if types, err = addInstrumentColumns(ctx, tr, database, table, noInstrument, f); err != nil {
			return l, err
		}
	}
	l.lowCardExchange = types["exchange"] != "String"
	l.lowCardSymbol = types["symbol"] != "String"
	l.lowCardBase = types["base"] != "String"
	l.lowCardQuote = types["quote"] != "String"
	return l, nil
}

// checkEngine verifies the table exists and keeps replayed duplicates
// invisible: a ReplacingMergeTree, or a Distributed table over
// ReplacingMergeTrees on every shard. It reports whether it is Distributed.
func checkEngine(ctx context.Context, tr transport, database, table string) (distributed bool, err error) {
	var engine, engineFull proto.ColStr
	found := false
	if err := tr.query(ctx, fmt.Sprintf("SELECT engine, engine_full FROM system.tables WHERE database = %s AND name = %s",
		quoteString(database), quoteString(table)), proto.Results{{Data: &engine}, {Data: &engineFull}}, func() error {
		found = true
		switch e := engine.Row(0); {
		case e == "Distributed":
			distributed = true
			return checkShards(ctx, tr, database, table, engineFull.Row(0))
		case !strings.Contains(e, "ReplacingMergeTree"):
			return fmt.Errorf("table %s.%s has engine %s; the store needs a ReplacingMergeTree to hide replayed duplicates", database, table, e)
		}
		return nil
	}); err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("table %s.%s missing after CREATE", database, table)
	}
	return distributed, nil
}

// columnTypes is the table's columns and their types.
func columnTypes(ctx context.Context, tr transport, database, table string) (map[string]string, error) {
	var name, typ proto.ColStr
	types := map[string]string{}
	if err := tr.query(ctx, fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = %s AND table = %s",
		quoteString(database), quoteString(table)), proto.Results{{Data: &name}, {Data: &typ}}, func() error {
		for i := 0; i < name.Rows(); i++ {
			types[name.Row(i)] = typ.Row(i)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return types, nil
}

// addInstrumentColumns adds the missing instrument columns to a table an
// older tickflow made, and returns the table's columns afterwards. 18.16
// has no ADD COLUMN IF NOT EXISTS, so two instances starting together may
// both try: the loser's ALTER fails, and it is fine if the columns are
// there when it looks again.
func addInstrumentColumns(ctx context.Context, tr transport, database, table string, cols []string, f features) (map[string]string, error) {
	alterErr := tr.exec(ctx, addColumnsSQL(database, table, cols, stringType(f)))
	types, err := columnTypes(ctx, tr, database, table)
	if err != nil {
		return nil, err
	}
	for _, c := range cols {
		if _, ok := types[c]; !ok {
			return nil, fmt.Errorf("table %s.%s: adding the instrument columns %s: %w", database, table, strings.Join(cols, ", "), alterErr)
		}
	}
	return types, nil
}

// addColumnsSQL is the ALTER that gives an older table the instrument
// columns, after symbol.
func addColumnsSQL(database, table string, cols []string, typ string) string {
	adds := make([]string, len(cols))
	after := "symbol"
	if cols[0] == "quote" { // base is there already
		after = "base"
	}
	for i, c := range cols {
		adds[i] = "ADD COLUMN " + c + " " + typ + " AFTER " + after
		after = c
	}
	return "ALTER TABLE " + quoteIdent(database) + "." + quoteIdent(table) + " " + strings.Join(adds, ", ")
}

// stringType is how the sink types a string column on this server.
func stringType(f features) string {
	if f.lowCardinality {
		return "LowCardinality(String)"
	}
	return "String"
}

// checkShards verifies a Distributed table over ReplacingMergeTree tables:
// every server of its cluster has the local table, and it is a
// ReplacingMergeTree. With a sharding key by pair, every copy of a tick
// lands on one shard, where merges and the API's grouping collapse it as
// they do on one server. ClickHouse without ZooKeeper has no ON CLUSTER
// DDL, so the local tables are created on each shard by hand (README).
func checkShards(ctx context.Context, tr transport, database, table, engineFull string) error {
	args := strings.TrimSuffix(strings.TrimPrefix(engineFull, "Distributed("), ")")
	parts := strings.SplitN(args, ",", 4)
	if len(parts) < 3 {
		return fmt.Errorf("table %s.%s: cannot read Distributed engine %q", database, table, engineFull)
	}
	unq := func(s string) string { return strings.Trim(strings.TrimSpace(s), "'`\"") }
	cluster, ldb, ltable := unq(parts[0]), unq(parts[1]), unq(parts[2])
	if ldb == "" || strings.Contains(ldb, "(") { // currentDatabase() and the like
		ldb = database
	}
	var servers, tables, replacing proto.ColUInt64
	if err := tr.query(ctx, "SELECT count() FROM system.clusters WHERE cluster = "+quoteString(cluster),
		proto.Results{{Data: &servers}}, func() error { return nil }); err != nil {
		return fmt.Errorf("table %s.%s: cluster %s: %w", database, table, cluster, err)
	}
	if err := tr.query(ctx, fmt.Sprintf("SELECT count(), countIf(engine LIKE '%%ReplacingMergeTree') FROM cluster(%s, system, tables) WHERE database = %s AND name = %s",
		quoteString(cluster), quoteString(ldb), quoteString(ltable)), proto.Results{{Data: &tables}, {Data: &replacing}}, func() error { return nil }); err != nil {
		return fmt.Errorf("table %s.%s: the shards' tables: %w", database, table, err)
	}
	if servers.Rows() == 0 || tables.Rows() == 0 || servers.Row(0) == 0 {
		return fmt.Errorf("table %s.%s: cluster %s is not configured on this server", database, table, cluster)
	}
	if n, have, rmt := servers.Row(0), tables.Row(0), replacing.Row(0); have != n || rmt != n {
		return fmt.Errorf("table %s.%s is Distributed over %s.%s on cluster %s: %d of its %d servers have that table, %d of them a ReplacingMergeTree; "+
			"create it on every shard (no ON CLUSTER without ZooKeeper)", database, table, ldb, ltable, cluster, have, n, rmt)
	}
	return nil
}

// addScalesSQL is the ALTER that gives an older table the scale columns it
// lacks. They default to 0, which fromDecimal128 reads as "scale unknown"
// for any value with digits after the point.
func addScalesSQL(database, table string, cols []string) string {
	adds := make([]string, len(cols))
	for i, c := range cols {
		adds[i] = "ADD COLUMN " + c + " " + string(scaleType)
	}
	return "ALTER TABLE " + quoteIdent(database) + "." + quoteIdent(table) + " " + strings.Join(adds, ", ")
}

// sameDecimal reports whether t is Decimal(38, 18) however the server
// spells it: a different scale would be misread silently.
func sameDecimal(t string) bool {
	return strings.ReplaceAll(t, " ", "") == strings.ReplaceAll(string(decimalType), " ", "")
}
