package testsvc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server process owned by one test. Stop kills the real
// process and Restart starts a new one on the same port and data dir, so
// tests can watch clients ride through an outage.
type Redis struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result once
}

// StartRedis starts redis-server on a free loopback port in a temp dir and
// stops it when the test ends. By default it keeps an append-only file
// synced on every write, so what Redis acknowledged survives Stop/Restart
// the way it would on a durable deployment; extra arguments are appended to
// the command line and win over the defaults (pass "--appendonly", "no" for
// benchmarks).
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	bin := NeedBinary(t, "redis-server", "redis-server")
	r := &Redis{t: t, bin: bin, port: FreePort(t), dir: t.TempDir(), args: extraArgs}
	if err := r.start(); err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Addr is the server's "127.0.0.1:port".
func (r *Redis) Addr() string { return Addr(r.port) }

func (r *Redis) start() error {
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--daemonize", "no",
		"--logfile", filepath.Join(r.dir, "redis.log"),
	}
	cmd := exec.Command(r.bin, append(args, r.args...)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if ping(ctx, r.Addr()) == nil {
			r.mu.Lock()
			r.cmd, r.exited = cmd, exited
			r.mu.Unlock()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited during start (%v); log:\n%s", err, r.log())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not answering PING after 10s; log:\n%s", r.Addr(), r.log())
		case <-time.After(20 * time.Millisecond): // poll interval while the server boots
		}
	}
}

// Stop kills the server with SIGKILL (no graceful shutdown: a crash is what
// the tests care about) and returns once the process is gone.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd, r.exited = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		r.t.Errorf("redis-server pid %d still running 10s after SIGKILL", cmd.Process.Pid)
	}
}

// Restart starts the server again on the same port and data dir.
func (r *Redis) Restart() {
	r.t.Helper()
	r.mu.Lock()
	running := r.cmd != nil
	r.mu.Unlock()
	if running {
		r.t.Fatalf("redis Restart: still running; Stop it first")
	}
	if err := r.start(); err != nil {
		r.t.Fatalf("restart redis: %v", err)
	}
}

func (r *Redis) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

// ping speaks just enough RESP to know the server is up, so testsvc needs
// no Redis client library.
func ping(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
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
