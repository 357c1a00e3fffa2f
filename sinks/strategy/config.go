package strategy

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/tick"
)

// Config is the sinks.strategy section of config.yaml.
type Config struct {
	Strategies []Entry `yaml:"strategies"`
	// Workers run Execute; Queue bounds the triggers waiting for them.
	Workers int `yaml:"workers"`
	Queue   int `yaml:"queue"`
	// Timeout bounds one Execute, and how long a trigger may wait for room
	// in a full queue before it is dropped.
	Timeout time.Duration `yaml:"timeout"`
	// Recent is how many signals the REST API keeps for listing.
	Recent int `yaml:"recent"`
	// StateDir is where strategy state and paper positions are journalled
	// after every batch; empty keeps them in memory only (see the package
	// doc for what a restart then loses).
	StateDir string `yaml:"state_dir"`
}

// DefaultConfig is the documented default: no strategies.
func DefaultConfig() *Config {
	return &Config{Workers: 4, Queue: 1024, Timeout: 2 * time.Second, Recent: 1000}
}

// Entry is one strategy in the list. Besides the keys below, an entry
// holds its type's parameters, inline (as in config.yaml's examples) or
// under "params":
//
//   - {name: btc-breakout, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "50050", direction: up}
//   - {name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, params: {fast: 20, slow: 50}}
type Entry struct {
	Name     string
	Type     string
	Exchange string
	Symbol   string
	// Quantity is the paper executor's position size (default 1).
	Quantity string
	// AllowShort lets a sell signal open a short paper position; without
	// it a sell only closes a long.
	AllowShort bool
	// Params is a mapping of the type's parameters, kept as YAML so
	// decimals are never read through a float.
	Params yaml.Node
}

// UnmarshalYAML splits an entry into its common keys and its parameters.
func (e *Entry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("a strategy must be a mapping with name, type, exchange, symbol and the type's parameters")
	}
	e.Params = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	seen := map[string]bool{}
	add := func(k, v *yaml.Node) error {
		if seen[k.Value] {
			return fmt.Errorf("parameter %q given twice", k.Value)
		}
		seen[k.Value] = true
		e.Params.Content = append(e.Params.Content, k, v)
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			err = v.Decode(&e.Name)
		case "type":
			err = v.Decode(&e.Type)
		case "exchange":
			err = v.Decode(&e.Exchange)
		case "symbol":
			err = v.Decode(&e.Symbol)
		case "quantity":
			err = v.Decode(&e.Quantity)
		case "allow_short":
			err = v.Decode(&e.AllowShort)
		case "params":
			if v.Kind != yaml.MappingNode {
				return errors.New("params: must be a mapping")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				if err := add(v.Content[j], v.Content[j+1]); err != nil {
					return err
				}
			}
		default:
			err = add(k, v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k.Value, cleanYAML(err))
		}
	}
	return nil
}

// Validate checks the pool settings and builds every strategy once, so a
// bad one stops tickflow at startup with an error naming it.
func (c *Config) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("workers: must be >= 1, got %d", c.Workers)
	case c.Queue < 1:
		return fmt.Errorf("queue: must be >= 1, got %d", c.Queue)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout: must be > 0, got %s", c.Timeout)
	case c.Recent < 1:
		return fmt.Errorf("recent: must be >= 1, got %d", c.Recent)
	}
	names := map[string]int{}
	for i := range c.Strategies {
		e := &c.Strategies[i]
		if j, dup := names[e.Name]; dup && e.Name != "" {
			return fmt.Errorf("strategies[%d] %q: name already used by strategies[%d]", i, e.Name, j)
		}
		names[e.Name] = i
		if _, err := e.build(); err != nil {
			return fmt.Errorf("strategies[%d] %s: %w", i, e.label(), err)
		}
	}
	return nil
}

func (e *Entry) label() string {
	if e.Type == "" {
		return fmt.Sprintf("%q", e.Name)
	}
	return fmt.Sprintf("%q (%s)", e.Name, e.Type)
}

// built is an entry made ready to run.
type built struct {
	strategy Strategy
	pair     tick.Pair
	quantity apd.Decimal
}

func (e *Entry) build() (*built, error) {
	switch {
	case e.Name == "":
		return nil, errors.New("name: required")
	case e.Type == "":
		return nil, errors.New("type: required (one of " + strings.Join(Types(), ", ") + ")")
	case e.Exchange == "":
		return nil, errors.New("exchange: required")
	case e.Symbol == "":
		return nil, errors.New("symbol: required")
	}
	typ, ok := lookupType(e.Type)
	if !ok {
		return nil, fmt.Errorf("type: unknown strategy type %q (known: %s)", e.Type, strings.Join(Types(), ", "))
	}
	b := &built{pair: tick.Pair{Exchange: tick.NormalizeExchange(e.Exchange), Symbol: tick.NormalizeSymbol(e.Symbol)}}
	q := e.Quantity
	if q == "" {
		q = "1"
	}
	if err := tick.ParseDecimal(&b.quantity, q); err != nil || b.quantity.Sign() <= 0 {
		return nil, fmt.Errorf("quantity: %q is not a positive decimal", q)
	}
	params := typ.Params()
	allowed := paramKeys(params)
	for i := 0; i+1 < len(e.Params.Content); i += 2 {
		k := e.Params.Content[i].Value
		if !allowed[k] {
			return nil, fmt.Errorf("unknown parameter %q (%s takes %s)", k, e.Type, strings.Join(sortedKeys(allowed), ", "))
		}
	}
	if len(e.Params.Content) > 0 {
		if err := e.Params.Decode(params); err != nil {
			return nil, cleanYAML(err)
		}
	}
	s, err := typ.New(params)
	if err != nil {
		return nil, err
	}
	b.strategy = s
	return b, nil
}

// paramKeys are the yaml keys of a params struct.
func paramKeys(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys[k] = true
		}
	}
	return keys
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParamsView is the entry's parameters as their YAML text, for the API.
func (e *Entry) ParamsView() map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(e.Params.Content); i += 2 {
		k, v := e.Params.Content[i], e.Params.Content[i+1]
		if v.Kind == yaml.ScalarNode {
			out[k.Value] = v.Value
			continue
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			out[k.Value] = "?"
			continue
		}
		out[k.Value] = strings.TrimSpace(string(b))
	}
	return out
}

var yamlLine = regexp.MustCompile(`^line \d+: `)

// cleanYAML drops yaml's prefixes and line numbers (which refer to the
// re-encoded document, not the user's file).
func cleanYAML(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = yamlLine.ReplaceAllString(strings.TrimSpace(l), ""); l != "" {
			parts = append(parts, l)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}
