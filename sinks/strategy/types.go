package strategy

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// Strategy is one configured instance of a strategy type, fed the ticks of
// its pair in event-time order.
type Strategy interface {
	// ShouldTrigger runs inline, on the consuming goroutine, for every tick
	// of the strategy's pair. It updates the strategy's state and must be
	// cheap: no I/O, no locks, no waiting. It returns a Trigger when the
	// tick calls for a decision.
	ShouldTrigger(t *tick.Tick) (Trigger, bool)
	// Execute runs on the bounded worker pool with a deadline and turns a
	// trigger into a decision (nil: no signal). It may be slow (a model, a
	// remote check) but must honour ctx, and must not touch the strategy's
	// state, which ShouldTrigger may be changing meanwhile: everything it
	// needs travels in the Trigger.
	Execute(ctx context.Context, tr Trigger) (*Decision, error)
	// State and Restore move the strategy's state to and from JSON, for the
	// snapshot that survives restarts and for the API. They are never
	// called concurrently with ShouldTrigger.
	State() (json.RawMessage, error)
	Restore(json.RawMessage) error
}

// Trigger is what ShouldTrigger saw: the proposed side, and the tick's
// price and event time, at which the paper executor fills.
type Trigger struct {
	Side      signal.Side
	Price     apd.Decimal
	Timestamp int64
	Reason    string
}

// Decision is what Execute concluded.
type Decision struct {
	Side   signal.Side
	Reason string
}

// Type is a kind of strategy, registered by name in init().
type Type struct {
	Name string
	// Params returns a pointer to a fresh parameter struct with defaults
	// set; a strategy entry's own keys are decoded into it strictly.
	Params func() any
	// New checks the decoded params and builds a strategy. Its errors name
	// the offending parameter.
	New func(params any) (Strategy, error)
}

var (
	typesMu sync.RWMutex
	types   = map[string]Type{}
)

// RegisterType adds a strategy type. Registering a name twice panics.
func RegisterType(t Type) {
	typesMu.Lock()
	defer typesMu.Unlock()
	if t.Name == "" || t.Params == nil || t.New == nil {
		panic(fmt.Sprintf("strategy: incomplete type %q", t.Name))
	}
	if _, dup := types[t.Name]; dup {
		panic(fmt.Sprintf("strategy: type %q registered twice", t.Name))
	}
	types[t.Name] = t
}

func lookupType(name string) (Type, bool) {
	typesMu.RLock()
	defer typesMu.RUnlock()
	t, ok := types[name]
	return t, ok
}

// Types lists the registered strategy type names, sorted.
func Types() []string {
	typesMu.RLock()
	defer typesMu.RUnlock()
	out := make([]string, 0, len(types))
	for n := range types {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// decided is for strategies whose decision is complete when they trigger:
// their Execute confirms the trigger as it is.
type decided struct{}

func (decided) Execute(_ context.Context, tr Trigger) (*Decision, error) {
	return &Decision{Side: tr.Side, Reason: tr.Reason}, nil
}

// jsonState is State/Restore for strategies whose state is one struct.
func marshalState(v any) (json.RawMessage, error) { return json.Marshal(v) }

func unmarshalState(b json.RawMessage, v any) error { return json.Unmarshal(b, v) }
