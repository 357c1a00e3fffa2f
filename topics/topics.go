// Package topics names tickflow's Kafka topics, once. Every record type has
// its topic here; producers, consumers, followers and the topic setup at
// start read the names from this package, so a topic cannot be spelled two
// ways.
package topics

const (
	// Ticks is the default tick topic (bus.topic may name another; the
	// live pipeline reads it from the config).
	Ticks = "market_data.ticks"
	// Trades carries the exchanges' trades (tick.Trade), keyed
	// exchange:symbol.
	Trades = "market_data.trades"
	// Quotes carries best bid/ask quotes (tick.Quote), keyed
	// exchange:symbol.
	Quotes = "market_data.quotes"
	// Gaps carries the stretches a source knows it missed (tick.Gap),
	// keyed exchange:symbol.
	Gaps = "market_data.gaps"
	// Alerts carries the risk monitor's alerts (alert.Alert).
	Alerts = "risk.alerts"
	// Signals carries the strategy engine's signals (signal.Signal).
	Signals = "strategy.signals"
)

// Side lists every topic besides the tick topic that tickflow creates at
// start.
func Side() []string { return []string{Alerts, Signals, Gaps, Trades, Quotes} }
