package bus

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// Listen is the TCP address outside Kafka tools (kcat) connect to.
	Listen string
	// DataDir persists the log and committed group offsets across restarts.
	DataDir string
	// SyncWrites fsyncs every produced batch (slower, crash-proof).
	SyncWrites bool
	// Headroom is the free space the data directory's filesystem must keep
	// beyond a produce request for the broker to take it (default 4 MiB);
	// below it, or on a read-only filesystem, or after a failed log write,
	// produce requests are refused with the retriable KAFKA_STORAGE_ERROR.
	Headroom int64
	// StorageCheck is how often the data directory is re-checked while
	// nothing is produced, and after a failed write (default 1 s).
	StorageCheck time.Duration
	// OnStorage is called once per change of the data directory's state:
	// an error wrapping ErrStorage when it stops taking writes, nil when it
	// takes them again.
	OnStorage func(error)
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
}

// Embedded is a single-node Kafka-protocol broker (franz-go's kfake) running
// inside tickflow, so one binary runs the whole pipeline on a laptop.
type Embedded struct {
	c     *kfake.Cluster
	guard *storageGuard
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
	if cfg.Headroom <= 0 {
		cfg.Headroom = 4 << 20
	}
	if cfg.StorageCheck <= 0 {
		cfg.StorageCheck = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	guard, err := newStorageGuard(cfg.DataDir, cfg.Headroom, cfg.StorageCheck, log, cfg.OnStorage, cfg.Metrics)
	if err != nil {
		return nil, err
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
	opts = append(opts, kfake.WithLogger(kfakeLogger{log, guard}))
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", listen, err)
	}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.KafkaStorageError, Count: -1, When: guard.refuse})
	go guard.run()
	return &Embedded{c: c, guard: guard}, nil
}

// StorageErr is nil while the data directory takes writes, and otherwise
// says why not (wrapping ErrStorage).
func (e *Embedded) StorageErr() error { return e.guard.Err() }

// Addrs are the broker's listen addresses, for clients.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Close stops the broker and saves its state to the data dir.
func (e *Embedded) Close() {
	e.c.Close()
	e.guard.close()
}

type kfakeLogger struct {
	l     *slog.Logger
	guard *storageGuard
}

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	// kfake warns "persist batch …" when a log segment write fails; it
	// then answers that produce with UNKNOWN_SERVER_ERROR. Latch it so the
	// guard refuses (retriably) what follows until a probe write succeeds.
	if level <= kfake.LogLevelWarn && strings.HasPrefix(msg, "persist batch") {
		k.guard.writeFailed(fmt.Sprintf(msg, args...))
	}
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
