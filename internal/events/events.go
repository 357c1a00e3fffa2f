// Package events is what the sinks that turn ticks into events (the risk
// monitor's alerts, the strategy engine's signals) share, and what reads
// those events back from their topics:
//
//   - Journal: state kept in a journal (package journal) with replay on
//     start; unusable saved state is moved aside and the sink starts
//     afresh.
//   - Outbox: events not yet acknowledged by the broker, published in
//     order; an event leaves it only once acked, so a failed batch retries
//     exactly what is missing.
//   - Recent, Alerts, Signals: the bounded lists the REST API serves.
//   - Reader: follows a topic for the life of the process without a
//     consumer group, reconnecting with backoff, counting records it cannot
//     decode; AlertFeed and SignalFeed fill the API's lists from the
//     topics with it, and the push sink fans the topics out to browsers.
//
// Components talk through the topics, not through each other: the sink
// that raises an event only publishes it; whoever shows it reads the topic,
// in this process or another.
package events
