package tick

import "time"

// Query selects a page of one pair's ticks, newest first. It lives here,
// not in api, so a history provider (the store sink) and the API handler
// that uses it can share the type without importing each other.
type Query struct {
	Exchange, Symbol string
	// From and To bound the event time, inclusive; a zero value leaves
	// that side open.
	From, To time.Time
	// Limit caps the number of ticks returned.
	Limit int
	// Before is a paging cursor: only ticks with Timestamp < Before (Unix
	// ms) are returned. Zero means no cursor.
	Before int64
}

// Window is what a cache holds of one pair for a Query: the matching ticks,
// newest first, and Since, the event time (Unix ms) from which it holds
// every tick of the pair it was given (zero when it holds nothing). A reader
// that needs ticks older than Since must ask the history store.
type Window struct {
	Ticks []Tick
	Since int64
}
