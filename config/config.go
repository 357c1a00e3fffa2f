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
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
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

// Ingest configures the exchange sources. Its keys are the registered
// sources' names (each section decoded by its spec) and the host's own,
// listed in ingestHostKeys.
type Ingest struct {
	// Sources holds one entry per registered source, sorted by name,
	// whether or not the file mentions it (a source may be enabled by
	// default).
	Sources []Source `yaml:"-"`
	// Queue is how many ticks may wait between a source's read loop and the
	// producer before the read loop blocks (and says so).
	Queue int `yaml:"queue"`
}

// ingestHostKeys are the keys under ingest: that are not sources.
var ingestHostKeys = map[string]bool{"queue": true}

// Source is one entry under ingest:.
type Source struct {
	Name    string
	Enabled bool
	// Settings is the source's own decoded config (Spec.Config's value).
	Settings any
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
	// PartitionsSet says the file sets bus.partitions. Only then does
	// tickflow add partitions to an existing tick topic that has fewer: a
	// process relying on the default must not grow a topic others made.
	PartitionsSet bool `yaml:"-"`
	// Replication for topics tickflow creates on an external cluster;
	// -1 uses the broker default.
	Replication int           `yaml:"replication"`
	ClientID    string        `yaml:"client_id"`
	Linger      time.Duration `yaml:"linger"`
	// Compression of produced batches: none, lz4, snappy, zstd or gzip.
	Compression string `yaml:"compression"`
	// InstanceID names this process among the tickflow instances on one
	// cluster; a sink that consumes every tick on every instance (push,
	// the in-process cache) does so in group tickflow.<sink>.<instance_id>,
	// and resumes from that group's commit after a restart, so it must
	// stay the same across restarts and differ between processes. Empty:
	// <hostname>-<api port>, which is both on any one machine.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the broker waits for a silent consumer (a
	// killed process) before moving its partitions to the others;
	// RebalanceTimeout is how long members have to finish their batch and
	// rejoin when the group changes.
	SessionTimeout   time.Duration `yaml:"session_timeout"`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`

	SASL SASL `yaml:"sasl"`
	TLS  TLS  `yaml:"tls"`
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

// Default returns the documented defaults of the host's keys (those of
// config.yaml). Sources' and sinks' defaults come from their specs.
func Default() Config {
	return Config{
		Ingest: Ingest{Queue: 4096},
		Bus: Bus{
			Listen:      "127.0.0.1:9092",
			DataDir:     "./data/kafka",
			Topic:       "market_data.ticks",
			Partitions:  12,
			Replication: -1,
			ClientID:    "tickflow",
			Linger:      0, // no linger: measured in docs/PERFORMANCE.md ("Producer linger")
			// lz4 even for the embedded broker in this process: measured
			// faster than none (docs/PERFORMANCE.md, "Compression").
			Compression: "lz4",
			// franz-go's defaults; the broker's group.min.session.timeout.ms
			// (6 s by default, the embedded broker's too) bounds the first.
			SessionTimeout:   45 * time.Second,
			RebalanceTimeout: 60 * time.Second,
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

// file is the top level as written, less the ingest and sinks sections,
// whose entries each component's spec decodes on its own.
type file struct {
	Bus *Bus `yaml:"bus"`
	API *API `yaml:"api"`
	Log *Log `yaml:"log"`
}

// Registries are the component specs a config is decoded against. A nil
// field means that kind's Default registry, the one init() fills.
type Registries struct {
	Sinks   *sinks.Registry
	Sources *ingest.Registry
}

func (r Registries) withDefaults() Registries {
	if r.Sinks == nil {
		r.Sinks = sinks.Default
	}
	if r.Sources == nil {
		r.Sources = ingest.Default
	}
	return r
}

// Parse decodes YAML text into a validated Config, against the compiled-in
// sources and sinks.
func Parse(b []byte, getenv func(string) string) (Config, error) {
	return ParseWith(b, getenv, Registries{})
}

// ParseWith is Parse against the given registries; tests pass their own.
func ParseWith(b []byte, getenv func(string) string, regs Registries) (Config, error) {
	regs = regs.withDefaults()
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
	if err := applyEnv(&root, getenv, sourceOverrides(regs.Sources)); err != nil {
		return Config{}, err
	}
	// Split off ingest and sinks: their keys are mostly component names,
	// each decoded by its spec.
	var ingestNode, sinksNode *yaml.Node
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(top.Content); i += 2 {
		switch top.Content[i].Value {
		case "ingest":
			ingestNode = top.Content[i+1]
		case "sinks":
			sinksNode = top.Content[i+1]
		default:
			rest.Content = append(rest.Content, top.Content[i], top.Content[i+1])
		}
	}
	cfg := Default()
	f := file{Bus: &cfg.Bus, API: &cfg.API, Log: &cfg.Log}
	if err := decodeStrict(rest, &f, ""); err != nil {
		return Config{}, err
	}
	cfg.Bus.PartitionsSet = hasKey(rest, "bus", "partitions")
	if err := decodeIngest(ingestNode, regs.Sources, &cfg.Ingest); err != nil {
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
				return Config{}, fmt.Errorf("sinks.%s: unknown sink (known: %s)", name, strings.Join(sinks.Names(), ", "))
			}
			entries[name] = sinksNode.Content[i+1]
		}
	}
	for _, name := range sinks.Names() {
		node, ok := entries[name]
		if !ok {
			continue
		}
		s, err := decodeSink(regs.Sinks, name, node)
		if err != nil {
			return Config{}, fmt.Errorf("sinks.%s: %w", name, err)
		}
		cfg.Sinks = append(cfg.Sinks, s)
	}
	if cfg.Bus.InstanceID == "" {
		cfg.Bus.InstanceID = defaultInstanceID(cfg.API.Listen)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// hostname is os.Hostname; tests replace it.
var hostname = os.Hostname

// defaultInstanceID is <hostname>-<api port>: stable across restarts of one
// config on one machine, and different for two processes on it, which
// cannot share an API port.
func defaultInstanceID(apiListen string) string {
	h, err := hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	id := h
	if _, port, err := net.SplitHostPort(apiListen); err == nil && port != "" {
		id += "-" + port
	}
	return strings.Map(func(r rune) rune {
		if validIDRune(r) {
			return r
		}
		return '_'
	}, id)
}

func validIDRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-'
}

func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style &^= yaml.FlowStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// hasKey reports whether the mapping n has the key path.
func hasKey(n *yaml.Node, path ...string) bool {
	for _, k := range path {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return true
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

// decodeIngest splits ingest: into the host's keys and the sources'
// sections, and decodes every registered source, mentioned or not, so a
// source enabled by default runs with its defaults.
func decodeIngest(node *yaml.Node, reg *ingest.Registry, in *Ingest) error {
	host := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	entries := map[string]*yaml.Node{}
	if node != nil && !isNull(node) {
		if node.Kind != yaml.MappingNode {
			return errors.New("ingest: must be a mapping of source name to settings")
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if ingestHostKeys[k.Value] {
				host.Content = append(host.Content, k, v)
				continue
			}
			if _, ok := reg.Lookup(k.Value); !ok {
				return fmt.Errorf("ingest.%s: unknown source (known: %s)", k.Value, strings.Join(reg.Registered(), ", "))
			}
			entries[k.Value] = v
		}
	}
	if err := decodeStrict(host, in, "ingest"); err != nil {
		return err
	}
	for _, name := range reg.Registered() {
		spec, _ := reg.Lookup(name)
		prefix := "ingest." + name
		src := Source{Name: name, Enabled: spec.Enabled}
		own := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if node := entries[name]; node != nil {
			var err error
			if own, err = section(node, map[string]func(*yaml.Node) error{
				"enabled": func(v *yaml.Node) error { return decodeEnabled(v, &src.Enabled) },
			}); err != nil {
				return fmt.Errorf("%s: %w", prefix, err)
			}
		}
		settings, err := decodeSettings(spec.Config, own, prefix, src.Enabled, "source")
		if err != nil {
			return err
		}
		src.Settings = settings
		in.Sources = append(in.Sources, src)
	}
	return nil
}

// decodeSink splits a sink's section into the host's keys (enabled, batch)
// and the sink's own, which its spec decodes strictly.
func decodeSink(reg *sinks.Registry, name string, node *yaml.Node) (Sink, error) {
	s := Sink{Name: name}
	spec, registered := reg.Lookup(name)
	s.Available = registered
	if registered {
		s.Batch = spec.Batch
	}
	own, err := section(node, map[string]func(*yaml.Node) error{
		"enabled": func(v *yaml.Node) error { return decodeEnabled(v, &s.Enabled) },
		"batch":   func(v *yaml.Node) error { return decodeStrict(v, &s.Batch, "batch") },
	})
	if err != nil || !registered {
		return s, err
	}
	if err := s.Batch.Validate(); err != nil {
		return s, fmt.Errorf("batch: %w", err)
	}
	s.Settings, err = decodeSettings(spec.Config, own, "", s.Enabled, "sink")
	return s, err
}

// section splits a component's mapping into the host's keys, each handed
// to its decoder, and the component's own, returned as a mapping.
func section(node *yaml.Node, host map[string]func(*yaml.Node) error) (*yaml.Node, error) {
	own := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if node.Kind != yaml.MappingNode && !isNull(node) {
		return own, errors.New("must be a mapping")
	}
	for i := 0; node.Kind == yaml.MappingNode && i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if dec, ok := host[k.Value]; ok {
			if err := dec(v); err != nil {
				return own, err
			}
			continue
		}
		own.Content = append(own.Content, k, v)
	}
	return own, nil
}

func decodeEnabled(v *yaml.Node, dst *bool) error {
	if err := v.Decode(dst); err != nil {
		return fmt.Errorf("enabled: must be true or false, got %q", v.Value)
	}
	return nil
}

// decodeSettings decodes a component's own keys strictly into a fresh
// value from newConfig and, for an enabled component, runs its Validate.
// Errors carry prefix: the keys' full path when prefix is set (a source's
// ingest.binance.url), none when the caller wraps them (a sink's).
func decodeSettings(newConfig func() any, own *yaml.Node, prefix string, enabled bool, kind string) (any, error) {
	if newConfig == nil {
		if len(own.Content) > 0 {
			return nil, qualify(prefix, fmt.Errorf("%s: not allowed, this %s takes no settings", own.Content[0].Value, kind))
		}
		return nil, nil
	}
	settings := newConfig()
	if err := decodeStrict(own, settings, prefix); err != nil {
		return nil, err
	}
	if v, ok := settings.(interface{ Validate() error }); ok && enabled {
		if err := v.Validate(); err != nil {
			return nil, qualify(prefix, err)
		}
	}
	return settings, nil
}

// qualify puts the section's key in front of a component's error. An error
// that starts with a key ("symbols: empty") gets the whole path
// (ingest.binance.symbols: empty); any other follows the section after a
// colon. An empty prefix leaves err alone.
func qualify(prefix string, err error) error {
	if prefix == "" {
		return err
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 && strings.IndexFunc(msg[:i], func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '.')
	}) < 0 {
		return fmt.Errorf("%s.%w", prefix, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// Source returns the named source's entry.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Ingest.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
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
	if id := c.Bus.InstanceID; id == "" || len(id) > 100 || strings.IndexFunc(id, func(r rune) bool { return !validIDRune(r) }) >= 0 {
		return fmt.Errorf("bus.instance_id: %q must be 1..100 of A-Z a-z 0-9 . _ - (it names consumer groups)", id)
	}
	if c.Bus.SessionTimeout < time.Second || c.Bus.SessionTimeout > 30*time.Minute {
		return fmt.Errorf("bus.session_timeout: must be 1s..30m, got %s", c.Bus.SessionTimeout)
	}
	if c.Bus.RebalanceTimeout < time.Second || c.Bus.RebalanceTimeout > 30*time.Minute {
		return fmt.Errorf("bus.rebalance_timeout: must be 1s..30m, got %s", c.Bus.RebalanceTimeout)
	}
	if _, err := bus.Codec(c.Bus.Compression); err != nil {
		return fmt.Errorf("bus.compression: %w", err)
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
