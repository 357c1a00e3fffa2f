package config

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/ingest"
)

// envOverride maps an environment variable onto a key path. Addresses and
// secrets are overridable so a container can be wired up without editing
// the file; list values are comma separated.
type envOverride struct {
	env  string
	path []string
	list bool
}

// overrides lists the environment variables for the host's keys and the
// sinks; each source's spec declares its own (sourceOverrides).
var overrides = []envOverride{
	{"TICKFLOW_BUS_BROKERS", []string{"bus", "brokers"}, true},
	{"TICKFLOW_BUS_LISTEN", []string{"bus", "listen"}, false},
	{"TICKFLOW_BUS_DATA_DIR", []string{"bus", "data_dir"}, false},
	{"TICKFLOW_BUS_INSTANCE_ID", []string{"bus", "instance_id"}, false},
	{"TICKFLOW_BUS_SASL_MECHANISM", []string{"bus", "sasl", "mechanism"}, false},
	{"TICKFLOW_BUS_SASL_USERNAME", []string{"bus", "sasl", "username"}, false},
	{"TICKFLOW_BUS_SASL_PASSWORD", []string{"bus", "sasl", "password"}, false},
	{"TICKFLOW_API_LISTEN", []string{"api", "listen"}, false},
	{"TICKFLOW_CACHE_REDIS_ADDRS", []string{"sinks", "cache", "redis", "addrs"}, true},
	{"TICKFLOW_CACHE_REDIS_PASSWORD", []string{"sinks", "cache", "redis", "password"}, false},
	{"TICKFLOW_STORE_CLICKHOUSE_URL", []string{"sinks", "store", "clickhouse", "url"}, false},
	{"TICKFLOW_STORE_CLICKHOUSE_USERNAME", []string{"sinks", "store", "clickhouse", "username"}, false},
	{"TICKFLOW_STORE_CLICKHOUSE_PASSWORD", []string{"sinks", "store", "clickhouse", "password"}, false},
	{"TICKFLOW_PUSH_LISTEN", []string{"sinks", "push", "listen"}, false},
}

// sourceOverrides are the overrides the registered sources declare, on
// their keys under ingest.<name>.
func sourceOverrides(reg *ingest.Registry) []envOverride {
	var out []envOverride
	for _, name := range reg.Registered() {
		spec, _ := reg.Lookup(name)
		for _, e := range spec.EnvVars {
			out = append(out, envOverride{e.Var, append([]string{"ingest", name}, strings.Split(e.Key, ".")...), e.List})
		}
	}
	return out
}

// EnvVars lists the environment variables Load honours, for documentation.
func EnvVars() []string {
	all := append(slices.Clone(overrides), sourceOverrides(ingest.Default)...)
	out := make([]string, len(all))
	for i, o := range all {
		out[i] = o.env + " → " + strings.Join(o.path, ".")
	}
	return out
}

func applyEnv(doc *yaml.Node, getenv func(string) string, more []envOverride) error {
	for _, o := range append(slices.Clone(overrides), more...) {
		v, ok := lookup(getenv, o.env)
		if !ok {
			continue
		}
		val := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
		if o.list {
			val = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					val.Content = append(val.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: item})
				}
			}
		}
		if err := set(doc.Content[0], o.path, val); err != nil {
			return fmt.Errorf("%s: %w", o.env, err)
		}
	}
	return nil
}

func lookup(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

// set writes val at path, creating mappings on the way.
func set(m *yaml.Node, path []string, val *yaml.Node) error {
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		m.Kind, m.Tag = yaml.MappingNode, "!!map"
	}
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a mapping in the config file", path[0])
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == path[0] {
			if len(path) == 1 {
				m.Content[i+1] = val
				return nil
			}
			return set(m.Content[i+1], path[1:], val)
		}
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, val)
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, key, child)
	return set(child, path[1:], val)
}
