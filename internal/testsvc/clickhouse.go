package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClickHouse is a clickhouse-server running from a temp dir on free ports.
// Kill and Start stop and restart the real process on the same data and
// ports, so tests can take the server away mid-stream.
type ClickHouse struct {
	dir      string
	config   string
	httpPort int
	tcpPort  int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// clickHouseStartTimeout bounds how long a start may take; 18.16 answers
// within a few seconds on a quiet machine, a loaded 2-core box needs more.
const clickHouseStartTimeout = 60 * time.Second

// StartClickHouse starts a server for the test and stops it at cleanup. It
// skips (or fails, under TICKFLOW_REQUIRE_SERVICES=1) without the binary.
// Starting takes seconds: share one per package where tests allow it.
func StartClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	NeedBinary(t, "clickhouse-server", "clickhouse-server")
	ch, err := LaunchClickHouse(t.TempDir())
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() { _ = ch.Kill() })
	return ch
}

// LaunchClickHouse starts a server with its data, logs and config under dir.
// It is StartClickHouse without a testing.TB, for a TestMain that shares one
// server across a package; the caller must Kill it.
func LaunchClickHouse(dir string) (*ClickHouse, error) {
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		return nil, err
	}
	ch := &ClickHouse{dir: dir}
	if err := ch.writeConfig(); err != nil {
		return nil, err
	}
	if err := ch.Start(); err != nil {
		return nil, err
	}
	return ch, nil
}

// HTTPURL is the server's HTTP interface, "http://127.0.0.1:port".
func (c *ClickHouse) HTTPURL() string { return "http://" + Addr(c.httpPort) }

// TCPAddr is the native protocol's "127.0.0.1:port".
func (c *ClickHouse) TCPAddr() string { return Addr(c.tcpPort) }

// Dir is the server's working directory (data, logs, config).
func (c *ClickHouse) Dir() string { return c.dir }

// writeConfig copies Debian's config.xml and users.xml into dir with every
// path and port rewritten, so the server needs no root and no fixed port.
func (c *ClickHouse) writeConfig() error {
	raw, err := os.ReadFile("/etc/clickhouse-server/config.xml")
	if err != nil {
		return fmt.Errorf("read stock config: %w", err)
	}
	users, err := os.ReadFile("/etc/clickhouse-server/users.xml")
	if err != nil {
		return fmt.Errorf("read stock users: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	c.httpPort, c.tcpPort = ports[0], ports[1]
	data := filepath.Join(c.dir, "data") + "/"
	logs := filepath.Join(c.dir, "log") + "/"
	cfg := string(raw)
	for _, r := range []struct{ old, new string }{
		{"/var/lib/clickhouse/", data},
		{"/var/log/clickhouse-server/", logs},
		{"<http_port>8123</http_port>", "<http_port>" + strconv.Itoa(c.httpPort) + "</http_port>"},
		{"<tcp_port>9000</tcp_port>", "<tcp_port>" + strconv.Itoa(c.tcpPort) + "</tcp_port>"},
		{"<interserver_http_port>9009</interserver_http_port>",
			"<interserver_http_port>" + strconv.Itoa(ports[2]) + "</interserver_http_port>"},
		// The stock file leaves listen_host commented out (both loopbacks);
		// a machine without IPv6 would then refuse to start.
		{"<yandex>", "<yandex>\n    <listen_host>127.0.0.1</listen_host>"},
		// Keep the test server small: the stock caches are sized for a host.
		{"<mark_cache_size>5368709120</mark_cache_size>", "<mark_cache_size>268435456</mark_cache_size>"},
	} {
		if !strings.Contains(cfg, r.old) {
			return fmt.Errorf("stock config.xml has no %q; update testsvc/clickhouse.go", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	for _, d := range []string{data, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	c.config = filepath.Join(c.dir, "config.xml")
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, "users.xml"), users, 0o644)
}

func freePorts(n int) ([]int, error) {
	// Hold every listener until all are chosen so the ports differ.
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start runs the server (again, after Kill) and waits until it answers
// queries.
func (c *ClickHouse) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("clickhouse: already running")
	}
	out, err := os.OpenFile(filepath.Join(c.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("clickhouse-server", "--config-file="+c.config)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a test's Ctrl-C or kill must not leave it behind
	// signalled twice, and Kill reaches only this server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("clickhouse: start: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	c.cmd, c.done = cmd, done
	if err := c.waitReady(done); err != nil {
		c.killLocked()
		return err
	}
	return nil
}

// waitReady polls the HTTP interface until a query answers, the process
// exits, or the start timeout passes.
func (c *ClickHouse) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), clickHouseStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTPURL()+"/?query=SELECT%201", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("clickhouse exited during start; see %s", filepath.Join(c.dir, "log"))
		case <-ctx.Done():
			return fmt.Errorf("clickhouse not ready after %s; see %s", clickHouseStartTimeout, filepath.Join(c.dir, "log"))
		case <-tick.C:
		}
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the
// process to be gone. Killing a stopped server is a no-op.
func (c *ClickHouse) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked()
	return nil
}

func (c *ClickHouse) killLocked() {
	if c.cmd == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	c.cmd, c.done = nil, nil
}

// StartClickHouseCluster starts n servers that each know all n as the
// shards (one replica each) of the cluster called name, through a
// config.d/cluster.xml beside each config. No ZooKeeper: ON CLUSTER DDL
// does not work, so tables are created on each shard.
func StartClickHouseCluster(t testing.TB, name string, n int) []*ClickHouse {
	t.Helper()
	NeedBinary(t, "clickhouse-server", "clickhouse-server")
	var out []*ClickHouse
	for range n {
		ch := &ClickHouse{dir: t.TempDir()}
		if err := ch.writeConfig(); err != nil {
			t.Fatalf("clickhouse: %v", err)
		}
		out = append(out, ch)
	}
	var shards strings.Builder
	for _, ch := range out {
		fmt.Fprintf(&shards, "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>", ch.tcpPort)
	}
	xml := fmt.Sprintf("<yandex><remote_servers><%s>%s</%s></remote_servers></yandex>\n", name, shards.String(), name)
	for _, ch := range out {
		d := filepath.Join(ch.dir, "config.d")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cluster.xml"), []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ch.Start(); err != nil {
			t.Fatalf("clickhouse: %v", err)
		}
		t.Cleanup(func() { _ = ch.Kill() })
	}
	return out
}
