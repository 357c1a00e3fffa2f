package bus

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// Listen is the TCP address outside Kafka tools (kcat) connect to.
	Listen string
	// DataDir persists the log and committed group offsets across restarts.
	DataDir string
	// SyncWrites fsyncs every produced batch (slower, crash-proof).
	SyncWrites bool
	Logger     *slog.Logger
}

// Embedded is a single-node Kafka-protocol broker (franz-go's kfake) running
// inside tickflow, so one binary runs the whole pipeline on a laptop.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded starts the broker and returns once it is listening.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("embedded broker: data_dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: data dir: %w", err)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(cfg.DataDir),
		// kfake chooses 127.0.0.1:<port>; we bind the configured address
		// instead so the host (and port 0 for tests) is ours to choose.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.Logger != nil {
		opts = append(opts, kfake.WithLogger(kfakeLogger{cfg.Logger}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", listen, err)
	}
	return &Embedded{c: c}, nil
}

// Addrs are the broker's listen addresses, for clients.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Close stops the broker and saves its state to the data dir.
func (e *Embedded) Close() { e.c.Close() }

type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	case kfake.LogLevelInfo:
		lvl = slog.LevelDebug // kfake's info is chatty per connection
	default:
		return
	}
	k.l.Log(nil, lvl, "embedded broker: "+fmt.Sprintf(msg, args...)) //nolint:staticcheck // nil ctx allowed by slog
}
