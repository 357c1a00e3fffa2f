// Package config loads tickflow's YAML configuration: defaults first, then a
// strict decode (unknown keys are errors), then environment overrides for
// addresses and secrets, then cross-field checks. Every error names the key
// it is about, so a broken config stops tickflow before anything starts.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/sinks"
)

// Config is the whole of config.yaml.
type Config struct {
	Ingest Ingest `yaml:"ingest"`
	Bus    Bus    `yaml:"bus"`
	API    API    `yaml:"api"`
	Log    Log    `yaml:"log"`
	// Sinks holds one entry per sink named in the file, in Names order.
	Sinks []Sink `yaml:"-"`
}

// Ingest configures the exchange sources.
type Ingest struct {
	Binance Binance `yaml:"binance"`
	Sim     Sim     `yaml:"sim"`
	// Queue is how many ticks may wait between a source's read loop and the
	// producer before the read loop blocks (and says so).
	Queue int `yaml:"queue"`
}

// Binance configures the Binance spot ticker source.
type Binance struct {
	Enabled bool     `yaml:"enabled"`
	URL     string   `yaml:"url"`
	Symbols []string `yaml:"symbols"`
	// StreamsPerConn caps streams on one connection (Binance allows 1024).
	StreamsPerConn int `yaml:"streams_per_conn"`
	// StaleAfter: a connection that delivers nothing for this long is
	// considered dead and replaced.
	StaleAfter time.Duration `yaml:"stale_after"`
	// MaxLifetime: reconnect before Binance's 24 h cut-off.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// Backoff bounds for reconnects (exponential with jitter).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
}

// Sim configures the built-in simulated exchange for offline demos.
type Sim struct {
	Enabled  bool          `yaml:"enabled"`
	Symbols  []string      `yaml:"symbols"`
	Interval time.Duration `yaml:"interval"` // per symbol
	Seed     int64         `yaml:"seed"`     // 0 = random
}

// Bus configures Kafka.
type Bus struct {
	// Brokers of an external Kafka/Redpanda cluster; empty starts the
	// embedded broker.
	Brokers    []string `yaml:"brokers"`
	Listen     string   `yaml:"listen"`
	DataDir    string   `yaml:"data_dir"`
	SyncWrites bool     `yaml:"sync_writes"`
	Topic      string   `yaml:"topic"`
	Partitions int      `yaml:"partitions"`
	// Replication for topics tickflow creates on an external cluster;
	// -1 uses the broker default.
	Replication int           `yaml:"replication"`
	ClientID    string        `yaml:"client_id"`
	Linger      time.Duration `yaml:"linger"`
	SASL        SASL          `yaml:"sasl"`
	TLS         TLS           `yaml:"tls"`
}

// SASL authenticates to an external cluster.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// TLS secures the connection to an external cluster.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// API configures the REST server.
type API struct {
	Listen          string        `yaml:"listen"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Sink is one entry under sinks:.
type Sink struct {
	Name    string
	Enabled bool
	Batch   sinks.BatchPolicy
	// Available is false when the sink's package is not compiled in.
	Available bool
	// Settings is the sink's own decoded config (Spec.Config's value), nil
	// when it takes none or is not available.
	Settings any
}

// Default returns the documented defaults (those of config.yaml).
func Default() Config {
	return Config{
		Ingest: Ingest{
			Binance: Binance{
				Enabled:        true,
				URL:            "wss://stream.binance.com:9443",
				Symbols:        []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"},
				StreamsPerConn: 200,
				StaleAfter:     60 * time.Second,
				MaxLifetime:    23 * time.Hour,
				BackoffMin:     500 * time.Millisecond,
				BackoffMax:     30 * time.Second,
			},
			Sim: Sim{
				Symbols:  []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"},
				Interval: 250 * time.Millisecond,
			},
			Queue: 4096,
		},
		Bus: Bus{
			Listen:      "127.0.0.1:9092",
			DataDir:     "./data/kafka",
			Topic:       "market_data.ticks",
			Partitions:  12,
			Replication: -1,
			ClientID:    "tickflow",
			Linger:      0, // no linger: measured in docs/PERFORMANCE.md ("Producer linger")
		},
		API: API{Listen: "127.0.0.1:8080", ShutdownTimeout: 10 * time.Second},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Load reads and validates the file at path, applying environment overrides
// from getenv (os.Getenv when nil).
func Load(path string, getenv func(string) string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b, getenv)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// file is the top level as written, less the sinks section, which each
// sink's spec decodes on its own.
type file struct {
	Ingest *Ingest `yaml:"ingest"`
	Bus    *Bus    `yaml:"bus"`
	API    *API    `yaml:"api"`
	Log    *Log    `yaml:"log"`
}

// Parse decodes YAML text into a validated Config.
func Parse(b []byte, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return Config{}, err
	}
	if root.Kind == 0 { // empty file: all defaults
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return Config{}, errors.New("top level must be a mapping")
	}
	if err := applyEnv(&root, getenv); err != nil {
		return Config{}, err
	}
	// Split off sinks: its keys are sink names, each decoded by its spec.
	var sinksNode *yaml.Node
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "sinks" {
			sinksNode = top.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, top.Content[i], top.Content[i+1])
	}
	cfg := Default()
	f := file{Ingest: &cfg.Ingest, Bus: &cfg.Bus, API: &cfg.API, Log: &cfg.Log}
	if err := decodeStrict(rest, &f, ""); err != nil {
		return Config{}, err
	}
	entries := map[string]*yaml.Node{}
	if sinksNode != nil && !isNull(sinksNode) {
		if sinksNode.Kind != yaml.MappingNode {
			return Config{}, errors.New("sinks: must be a mapping of sink name to settings")
		}
		for i := 0; i+1 < len(sinksNode.Content); i += 2 {
			name := sinksNode.Content[i].Value
			if !sinks.Known(name) {
				return Config{}, fmt.Errorf("sinks.%s: unknown sink (known: %s)", name, strings.Join(sinks.Names, ", "))
			}
			entries[name] = sinksNode.Content[i+1]
		}
	}
	for _, name := range sinks.Names {
		node, ok := entries[name]
		if !ok {
			continue
		}
		s, err := decodeSink(name, node)
		if err != nil {
			return Config{}, fmt.Errorf("sinks.%s: %w", name, err)
		}
		cfg.Sinks = append(cfg.Sinks, s)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style &^= yaml.FlowStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// decodeStrict decodes n into v rejecting unknown keys. yaml.v3 only checks
// unknown keys when decoding from text, so n is re-encoded first; errors
// then carry line numbers of that text, which are mapped back to key paths
// (prefix.key.sub) so each error quotes the key it is about.
func decodeStrict(n *yaml.Node, v any, prefix string) error {
	blockStyle(n) // one key per line, so a line number names one key
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	text := buf.Bytes()
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var again yaml.Node
	paths, parents := map[int]string{}, map[int]string{}
	if yaml.Unmarshal(text, &again) == nil && len(again.Content) > 0 {
		linePaths(again.Content[0], prefix, paths, parents)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "yaml: "))
		var line int
		if _, serr := fmt.Sscanf(l, "line %d:", &line); serr == nil {
			if i := strings.Index(l, ": "); i > 0 {
				l = l[i+2:]
			}
			p := paths[line]
			if strings.HasPrefix(l, "field ") { // names the key already
				p = parents[line]
			}
			if p != "" {
				l = p + ": " + l
			}
		}
		if l != "" {
			parts = append(parts, l)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

// linePaths records, for each line holding a key, the dotted path of that
// key (type errors name only the value) and of the mapping it sits in
// (unknown-field errors name the key themselves).
func linePaths(n *yaml.Node, prefix string, out, parents map[int]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if _, ok := out[k.Line]; !ok {
				out[k.Line], parents[k.Line] = p, prefix
			}
			linePaths(v, p, out, parents)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			linePaths(c, prefix, out, parents)
		}
	}
}

// decodeSink splits a sink's section into the host's keys (enabled, batch)
// and the sink's own, which its spec decodes strictly.
func decodeSink(name string, node *yaml.Node) (Sink, error) {
	s := Sink{Name: name}
	spec, registered := sinks.Lookup(name)
	s.Available = registered
	if registered {
		s.Batch = spec.Batch
	}
	own := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if node.Kind != yaml.MappingNode && !isNull(node) {
		return s, errors.New("must be a mapping")
	}
	for i := 0; node.Kind == yaml.MappingNode && i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		switch k.Value {
		case "enabled":
			if err := v.Decode(&s.Enabled); err != nil {
				return s, fmt.Errorf("enabled: must be true or false, got %q", v.Value)
			}
		case "batch":
			if err := decodeStrict(v, &s.Batch, "batch"); err != nil {
				return s, err
			}
		default:
			own.Content = append(own.Content, k, v)
		}
	}
	if !registered {
		return s, nil
	}
	if err := s.Batch.Validate(); err != nil {
		return s, fmt.Errorf("batch: %w", err)
	}
	if spec.Config == nil {
		if len(own.Content) > 0 {
			return s, fmt.Errorf("%s: not allowed, this sink takes no settings", own.Content[0].Value)
		}
		return s, nil
	}
	s.Settings = spec.Config()
	if err := decodeStrict(own, s.Settings, ""); err != nil {
		return s, err
	}
	if v, ok := s.Settings.(sinks.Validator); ok && s.Enabled {
		if err := v.Validate(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Sink returns the named sink's entry.
func (c *Config) Sink(name string) (Sink, bool) {
	for _, s := range c.Sinks {
		if s.Name == name {
			return s, true
		}
	}
	return Sink{}, false
}

// Validate checks cross-field rules.
func (c *Config) Validate() error {
	b := c.Ingest.Binance
	if b.Enabled {
		if b.URL == "" {
			return errors.New("ingest.binance.url: required when ingest.binance.enabled")
		}
		if !strings.HasPrefix(b.URL, "ws://") && !strings.HasPrefix(b.URL, "wss://") {
			return fmt.Errorf("ingest.binance.url: %q is not a ws:// or wss:// URL", b.URL)
		}
		if err := symbols("ingest.binance.symbols", b.Symbols); err != nil {
			return err
		}
		if b.StreamsPerConn < 1 || b.StreamsPerConn > 1024 {
			return fmt.Errorf("ingest.binance.streams_per_conn: %d is outside 1..1024 (Binance's limit)", b.StreamsPerConn)
		}
		for key, d := range map[string]time.Duration{"stale_after": b.StaleAfter, "max_lifetime": b.MaxLifetime, "backoff_min": b.BackoffMin, "backoff_max": b.BackoffMax} {
			if d <= 0 {
				return fmt.Errorf("ingest.binance.%s: must be > 0, got %s", key, d)
			}
		}
		if b.MaxLifetime >= 24*time.Hour {
			return fmt.Errorf("ingest.binance.max_lifetime: %s must be under Binance's 24h cut-off", b.MaxLifetime)
		}
		if b.BackoffMin > b.BackoffMax {
			return errors.New("ingest.binance.backoff_min: larger than backoff_max")
		}
	}
	if c.Ingest.Sim.Enabled {
		if err := symbols("ingest.sim.symbols", c.Ingest.Sim.Symbols); err != nil {
			return err
		}
		if c.Ingest.Sim.Interval <= 0 {
			return fmt.Errorf("ingest.sim.interval: must be > 0, got %s", c.Ingest.Sim.Interval)
		}
	}
	if c.Ingest.Queue <= 0 {
		return fmt.Errorf("ingest.queue: must be > 0, got %d", c.Ingest.Queue)
	}
	if c.Bus.Topic == "" {
		return errors.New("bus.topic: required")
	}
	// Kafka carries these as int32 and int16; a larger value would wrap.
	if c.Bus.Partitions < 1 || c.Bus.Partitions > math.MaxInt32 {
		return fmt.Errorf("bus.partitions: must be 1..%d, got %d", math.MaxInt32, c.Bus.Partitions)
	}
	if c.Bus.Replication != -1 && (c.Bus.Replication < 1 || c.Bus.Replication > math.MaxInt16) {
		return fmt.Errorf("bus.replication: must be -1 (broker default) or 1..%d, got %d", math.MaxInt16, c.Bus.Replication)
	}
	if len(c.Bus.Brokers) == 0 {
		if c.Bus.Listen == "" {
			return errors.New("bus.listen: required for the embedded broker (bus.brokers is empty)")
		}
		if c.Bus.DataDir == "" {
			return errors.New("bus.data_dir: required for the embedded broker (bus.brokers is empty)")
		}
	}
	for _, b := range c.Bus.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("bus.brokers: %q is not host:port", b)
		}
	}
	switch strings.ToUpper(c.Bus.SASL.Mechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return fmt.Errorf("bus.sasl.mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Bus.SASL.Mechanism)
	}
	if c.Bus.SASL.Mechanism != "" && c.Bus.SASL.Username == "" {
		return errors.New("bus.sasl.username: required with bus.sasl.mechanism")
	}
	if c.API.Listen == "" {
		return errors.New("api.listen: required")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	return nil
}

func symbols(key string, ss []string) error {
	if len(ss) == 0 {
		return fmt.Errorf("%s: empty, but the source is enabled", key)
	}
	seen := map[string]bool{}
	for _, s := range ss {
		if s == "" || strings.ContainsAny(s, " /@:\t") {
			return fmt.Errorf("%s: bad symbol %q", key, s)
		}
		u := strings.ToUpper(s)
		if seen[u] {
			return fmt.Errorf("%s: %q listed twice", key, s)
		}
		seen[u] = true
	}
	return nil
}
