package spawn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ClickHouse is a clickhouse-server running from a directory of its own on
// free ports.
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

// LaunchClickHouse starts a server with its data, logs and config under dir;
// the caller must Kill it.
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
	ports, err := FreePorts(3)
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
			return fmt.Errorf("stock config.xml has no %q; update internal/spawn/clickhouse.go", r.old)
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

// NewClickHouseShard writes the configuration of a server under dir, with
// extra files in its config.d (name -> contents), without starting it: a
// cluster's shards must all know each other's ports before any starts.
func NewClickHouseShard(dir string) (*ClickHouse, error) {
	ch := &ClickHouse{dir: dir}
	if err := ch.writeConfig(); err != nil {
		return nil, err
	}
	return ch, nil
}

// AddConfig writes an extra file into the server's config.d.
func (c *ClickHouse) AddConfig(name, contents string) error {
	d := filepath.Join(c.dir, "config.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, name), []byte(contents), 0o644)
}

// NativePort is the server's native protocol port.
func (c *ClickHouse) NativePort() int { return c.tcpPort }
