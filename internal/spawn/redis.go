package spawn

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
	"sync"
	"time"
)

// Redis is a redis-server process. Stop kills the real process and Start
// runs a new one on the same port and data dir, so a caller can watch
// clients ride through an outage.
type Redis struct {
	bin  string
	port int
	dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result once
}

// NewRedis describes a server in dir on a free loopback port, not yet
// started. By default it keeps an append-only file synced on every write,
// so what Redis acknowledged survives Stop and Start the way it would on a
// durable deployment; extra arguments are appended to the command line and
// win over the defaults ("--appendonly", "no" for benchmarks).
func NewRedis(dir string, extraArgs ...string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	return &Redis{bin: bin, port: ports[0], dir: dir, args: extraArgs}, nil
}

// StartRedis is NewRedis and Start.
func StartRedis(dir string, extraArgs ...string) (*Redis, error) {
	r, err := NewRedis(dir, extraArgs...)
	if err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Addr is the server's "127.0.0.1:port".
func (r *Redis) Addr() string { return Addr(r.port) }

// Running reports whether the server process is up.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

// Start runs the server (again, after Stop) and waits until it answers
// PING.
func (r *Redis) Start() error {
	if r.Running() {
		return errors.New("redis: already running")
	}
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
	poll := time.NewTicker(20 * time.Millisecond) // while the server boots
	defer poll.Stop()
	for {
		if Ping(ctx, r.Addr()) == nil {
			r.mu.Lock()
			r.cmd, r.exited = cmd, exited
			r.mu.Unlock()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited during start (%v); log:\n%s", err, r.Log())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not answering PING after 10s; log:\n%s", r.Addr(), r.Log())
		case <-poll.C:
		}
	}
}

// Stop kills the server with SIGKILL (no graceful shutdown: a crash is what
// callers rehearse) and returns once the process is gone, or an error if it
// is still there 10 s later. Stopping a stopped server does nothing.
func (r *Redis) Stop() error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd, r.exited = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("redis-server pid %d still running 10s after SIGKILL", cmd.Process.Pid)
	}
}

// Log is the server's log file so far.
func (r *Redis) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

// Ping speaks just enough RESP to know a server is up, so starting one
// needs no Redis client library.
func Ping(ctx context.Context, addr string) error {
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
