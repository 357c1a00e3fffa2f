package testsvc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/internal/spawn"
)

// ClickHouse is a clickhouse-server on free ports in a temp dir; Kill and
// Start stop and restart the real process on the same data and ports.
type ClickHouse = spawn.ClickHouse

// StartClickHouse starts a server for the test and stops it at cleanup. It
// skips (or fails, under TICKFLOW_REQUIRE_SERVICES=1) without the binary.
// Starting takes seconds: share one per package where tests allow it.
func StartClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	NeedBinary(t, "clickhouse-server", "clickhouse-server")
	ch, err := spawn.LaunchClickHouse(t.TempDir())
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() { _ = ch.Kill() })
	return ch
}

// LaunchClickHouse starts a server under dir without a testing.TB, for a
// TestMain that shares one server across a package; the caller must Kill it.
func LaunchClickHouse(dir string) (*ClickHouse, error) { return spawn.LaunchClickHouse(dir) }

// StartClickHouseCluster starts n servers that each know all n as the
// shards (one replica each) of the cluster called name, through a
// config.d/cluster.xml beside each config. No ZooKeeper: ON CLUSTER DDL
// does not work, so tables are created on each shard.
func StartClickHouseCluster(t testing.TB, name string, n int) []*ClickHouse {
	t.Helper()
	NeedBinary(t, "clickhouse-server", "clickhouse-server")
	var out []*ClickHouse
	for range n {
		ch, err := spawn.NewClickHouseShard(t.TempDir())
		if err != nil {
			t.Fatalf("clickhouse: %v", err)
		}
		out = append(out, ch)
	}
	var shards strings.Builder
	for _, ch := range out {
		fmt.Fprintf(&shards, "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>", ch.NativePort())
	}
	xml := fmt.Sprintf("<yandex><remote_servers><%s>%s</%s></remote_servers></yandex>\n", name, shards.String(), name)
	for _, ch := range out {
		if err := ch.AddConfig("cluster.xml", xml); err != nil {
			t.Fatal(err)
		}
		if err := ch.Start(); err != nil {
			t.Fatalf("clickhouse: %v", err)
		}
		t.Cleanup(func() { _ = ch.Kill() })
	}
	return out
}
