package push

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"time"
)

// Config is the sinks.push section of config.yaml.
type Config struct {
	// Listen is the WebSocket listener's address; TICKFLOW_PUSH_LISTEN
	// overrides it.
	Listen string `yaml:"listen"`
	// Path is where browsers connect: ws://host:port<Path>.
	Path string `yaml:"path"`
	// PublicURL is the URL the web page should dial, for deployments behind
	// a proxy. Empty means ws://<the page's host>:<listen port><path>.
	PublicURL string `yaml:"public_url"`
	// AllowedOrigins are host patterns (path.Match syntax, or
	// "scheme://host" patterns) whose pages may connect. Empty allows only
	// pages served from the push listener's own host name, on any port, so
	// the page on the API port can connect; "*" allows every origin.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Shards is how many hub shards (each with its own goroutine) fan
	// ticks out. Ticks are sharded by Kafka partition, so a partition's
	// ticks reach each client in offset order (what positions rely on);
	// more shards than bus.partitions leaves the extra ones to alerts,
	// signals, trades and quotes, which are sharded by pair.
	Shards int `yaml:"shards"`
	// PingInterval is how often the server pings each client; a client
	// that has not answered within PingTimeout is disconnected.
	PingInterval time.Duration `yaml:"ping_interval"`
	PingTimeout  time.Duration `yaml:"ping_timeout"`
	// WriteTimeout bounds a single frame write and the closing handshake;
	// past it the TCP connection is cut.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	Limits       Limits        `yaml:"limits"`
}

// Limits protect the server from clients, hostile or just slow.
type Limits struct {
	// MaxConnections beyond which new clients get an error and are closed
	// with 1013 (try again later).
	MaxConnections int `yaml:"max_connections"`
	// MaxMessageBytes is the largest client message; a larger one gets an
	// error and a close with 1009 (message too big).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxSubscriptions caps a connection's subscriptions, counted as
	// channel × exchange × symbol combinations (a missing list counts
	// once). A subscribe past it is refused with an error.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxMessagesPerSecond and MessageBurst shape what a client may send
	// (a token bucket); past it the client gets an error and is closed
	// with 1008 (policy violation).
	MaxMessagesPerSecond float64 `yaml:"max_messages_per_second"`
	MessageBurst         int     `yaml:"message_burst"`
	// QueueBytes bounds what may wait in a connection's outgoing queue.
	// Past half of it ticks are conflated (only the newest per pair waits);
	// past all of it the client is disconnected.
	QueueBytes int `yaml:"queue_bytes"`
	// MaxLag disconnects a client whose oldest queued message has waited
	// longer than this: it is too far behind to be worth feeding.
	MaxLag time.Duration `yaml:"max_lag"`
	// Recovery bounds what one resuming client may cost (a subscribe with
	// "since"): at most MaxRecoveryRecords broker records read and
	// MaxRecoveryBytes of missed ticks sent, within RecoveryTimeout, with
	// at most RecoveryConcurrency recoveries at once per instance. Past any
	// of them the client gets recovered:false and a snapshot instead.
	MaxRecoveryRecords  int           `yaml:"max_recovery_records"`
	MaxRecoveryBytes    int           `yaml:"max_recovery_bytes"`
	RecoveryConcurrency int           `yaml:"recovery_concurrency"`
	RecoveryTimeout     time.Duration `yaml:"recovery_timeout"`
}

// DefaultConfig is the documented default.
func DefaultConfig() *Config {
	return &Config{
		Listen:       ":8081",
		Path:         "/ws",
		Shards:       4,
		PingInterval: 20 * time.Second,
		PingTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		Limits: Limits{
			MaxConnections:       20000,
			MaxMessageBytes:      4096,
			MaxSubscriptions:     1000,
			MaxMessagesPerSecond: 10,
			MessageBurst:         20,
			QueueBytes:           1 << 20,
			MaxLag:               5 * time.Second,
			MaxRecoveryRecords:   200_000,
			MaxRecoveryBytes:     2 << 20,
			RecoveryConcurrency:  4,
			RecoveryTimeout:      5 * time.Second,
		},
	}
}

// Validate checks the config after decoding; errors quote the key.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("path: %q must start with /", c.Path)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("public_url: %q is not a ws:// or wss:// URL", c.PublicURL)
		}
	}
	for _, p := range c.AllowedOrigins {
		if p == "" {
			return errors.New("allowed_origins: empty pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("allowed_origins: bad pattern %q: %v", p, err)
		}
	}
	if c.Shards < 1 || c.Shards > 256 {
		return fmt.Errorf("shards: %d is outside 1..256", c.Shards)
	}
	for key, d := range map[string]time.Duration{
		"ping_interval": c.PingInterval, "ping_timeout": c.PingTimeout,
		"write_timeout": c.WriteTimeout, "limits.max_lag": c.Limits.MaxLag,
		"limits.recovery_timeout": c.Limits.RecoveryTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s: must be > 0, got %s", key, d)
		}
	}
	l := c.Limits
	for key, n := range map[string]int{
		"limits.max_connections": l.MaxConnections, "limits.max_message_bytes": l.MaxMessageBytes,
		"limits.max_subscriptions": l.MaxSubscriptions, "limits.message_burst": l.MessageBurst,
		"limits.queue_bytes": l.QueueBytes, "limits.max_recovery_records": l.MaxRecoveryRecords,
		"limits.max_recovery_bytes": l.MaxRecoveryBytes, "limits.recovery_concurrency": l.RecoveryConcurrency,
	} {
		if n <= 0 {
			return fmt.Errorf("%s: must be > 0, got %d", key, n)
		}
	}
	if l.MaxMessagesPerSecond <= 0 {
		return fmt.Errorf("limits.max_messages_per_second: must be > 0, got %g", l.MaxMessagesPerSecond)
	}
	return nil
}
