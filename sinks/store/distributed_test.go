package store

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
)

// TestDistributedAcrossTwoShards: the store writes to a Distributed table
// over two ClickHouse 18.16 servers (ReplacingMergeTree on each, created on
// each since there is no ZooKeeper for ON CLUSTER), sharded by pair; a
// replayed batch still reads back once, each shard holds part of the
// ticks, and the API's queries through the other server see every tick
// exactly once.
func TestDistributedAcrossTwoShards(t *testing.T) {
	cs := testsvc.StartClickHouseCluster(t, "tickflow", 2)
	for _, ch := range cs {
		sql(t, ch, "CREATE DATABASE dist")
		sql(t, ch, tableDDL("`dist`.`market_ticks_local`", features{version: "18.16.1"}, 0))
		sql(t, ch, "CREATE TABLE dist.market_ticks AS dist.market_ticks_local ENGINE = Distributed(tickflow, dist, market_ticks_local, cityHash64(exchange, symbol))")
	}

	// A store whose shards lack the local table is refused at Connect.
	sql(t, cs[1], "CREATE DATABASE half")
	sql(t, cs[0], "CREATE DATABASE half")
	sql(t, cs[0], tableDDL("`half`.`market_ticks_local`", features{version: "18.16.1"}, 0))
	sql(t, cs[0], "CREATE TABLE half.market_ticks AS half.market_ticks_local ENGINE = Distributed(tickflow, half, market_ticks_local, cityHash64(exchange, symbol))")
	bad := newE2ESink(t, cs[0].HTTPURL(), "half")
	if err := bad.Connect(bg(t)); err == nil || !strings.Contains(err.Error(), "1 of its 2 servers have that table") {
		t.Fatalf("connect with a shard missing its table: %v", err)
	}

	// Shards made before the instrument columns: the sink cannot alter
	// them (no ON CLUSTER) and says what to run where; once that has run,
	// it connects.
	for _, ch := range cs {
		sql(t, ch, "CREATE DATABASE old")
		sql(t, ch, preInstrumentDDL("`old`.`market_ticks_local`"))
		sql(t, ch, "CREATE TABLE old.market_ticks AS old.market_ticks_local ENGINE = Distributed(tickflow, old, market_ticks_local, cityHash64(exchange, symbol))")
	}
	old := newE2ESink(t, cs[0].HTTPURL(), "old")
	err := old.Connect(bg(t))
	m := regexp.MustCompile(`"(ALTER TABLE [^"]+)"`).FindStringSubmatch(fmt.Sprint(err))
	if m == nil || !strings.Contains(err.Error(), "missing base, quote") || !strings.Contains(err.Error(), "every shard's local table") {
		t.Fatalf("connect to shards without the instrument columns: %v", err)
	}
	for _, ch := range cs {
		sql(t, ch, strings.Replace(m[1], "`market_ticks`", "`market_ticks_local`", 1))
		sql(t, ch, m[1])
	}
	if err := old.Connect(bg(t)); err != nil {
		t.Fatalf("connect after the ALTERs: %v", err)
	}

	s := newE2ESink(t, cs[0].HTTPURL(), "dist")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("connect to the Distributed table: %v", err)
	}
	defer s.Close(ctx)
	want := genTicks(3000, 3)
	for _, b := range [][2]int{{0, 1000}, {1000, 3000}, {500, 1500}} { // the last is a replay
		if err := s.WriteBatch(ctx, want[b[0]:b[1]]); err != nil {
			t.Fatal(err)
		}
	}

	// The other server, as an API-only process would read it.
	reader := newE2ESink(t, cs[1].HTTPURL(), "dist")
	testkit.Eventually(t, 30*time.Second, "every tick visible through the Distributed table", func() bool {
		return visibleCount(t, reader, want) == len(want)
	})
	checkExactlyOnce(t, reader, want)
	var local []int
	for _, ch := range cs {
		n, _ := strconv.Atoi(sql(t, ch, "SELECT uniqExact(exchange, symbol, timestamp, received_at) FROM dist.market_ticks_local"))
		local = append(local, n)
	}
	if local[0] == 0 || local[1] == 0 || local[0]+local[1] != len(want) {
		t.Fatalf("distinct ticks per shard %v, want both non-empty and %d in all", local, len(want))
	}
	t.Logf("distinct ticks per shard: %v", local)
}
