package testsvc

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/spawn"
)

// Redis is a redis-server process owned by one test. Stop kills the real
// process and Restart starts a new one on the same port and data dir, so
// tests can watch clients ride through an outage.
type Redis struct {
	t testing.TB
	*spawn.Redis
}

// StartRedis starts redis-server on a free loopback port in a temp dir and
// stops it when the test ends. By default it keeps an append-only file
// synced on every write, so what Redis acknowledged survives Stop/Restart
// the way it would on a durable deployment; extra arguments are appended to
// the command line and win over the defaults (pass "--appendonly", "no" for
// benchmarks).
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	NeedBinary(t, "redis-server", "redis-server")
	s, err := spawn.StartRedis(t.TempDir(), extraArgs...)
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	r := &Redis{t: t, Redis: s}
	t.Cleanup(r.Stop)
	return r
}

// Stop kills the server with SIGKILL and returns once the process is gone.
func (r *Redis) Stop() {
	if err := r.Redis.Stop(); err != nil {
		r.t.Error(err)
	}
}

// Restart starts the server again on the same port and data dir.
func (r *Redis) Restart() {
	r.t.Helper()
	if r.Running() {
		r.t.Fatalf("redis Restart: still running; Stop it first")
	}
	if err := r.Start(); err != nil {
		r.t.Fatalf("restart redis: %v", err)
	}
}

// RedisCluster is a Redis Cluster of primaries without replicas, each a
// Redis owned by the test.
type RedisCluster struct {
	Nodes []*Redis
}

// Addrs are the nodes' addresses, to seed a cluster client.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// StartRedisCluster starts n (at least 3) cluster-enabled redis-servers,
// joins them with redis-cli --cluster create and waits until every node
// reports cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 primaries, got %d", n)
	}
	cli := NeedBinary(t, "redis-cli", "redis-tools")
	c := &RedisCluster{}
	for range n {
		c.Nodes = append(c.Nodes, StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--appendonly", "no"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range c.Nodes {
		_, port, _ := net.SplitHostPort(node.Addr())
		for {
			out, err := exec.Command(cli, "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster node %s not ok after 20s: %v\n%s", node.Addr(), err, out)
			}
			time.Sleep(50 * time.Millisecond) // poll interval while the cluster converges
		}
	}
	return c
}
