package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// transport carries ch-go columns to and from ClickHouse. Both kinds speak
// the same column encoding: the native one inside the TCP protocol's
// packets, the HTTP one as a FORMAT Native body.
type transport interface {
	// exec runs a statement that returns no rows (DDL).
	exec(ctx context.Context, sql string) error
	// insert sends in as one block to table; it returns once ClickHouse
	// has acknowledged the INSERT.
	insert(ctx context.Context, table string, in proto.Input) error
	// query runs a SELECT, decoding each result block into res and calling
	// onBlock after each (res holds only that block's rows).
	query(ctx context.Context, sql string, res proto.Results, onBlock func() error) error
	// ping checks the server answers.
	ping(ctx context.Context) error
	close() error
	// name is "native" or "http", for logs.
	name() string
}

// endpoint is the parsed clickhouse.url with the credentials settled.
type endpoint struct {
	scheme   string // "clickhouse", "http" or "https"
	url      *url.URL
	database string
	user     string
	password string
	timeout  time.Duration
}

func parseEndpoint(c ClickHouseConfig) (endpoint, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return endpoint{}, fmt.Errorf("url: %w", err)
	}
	e := endpoint{scheme: strings.ToLower(u.Scheme), url: u, database: c.Database, timeout: c.Timeout}
	switch e.scheme {
	case "clickhouse", "http", "https":
	default:
		return endpoint{}, fmt.Errorf("url %q: scheme must be clickhouse:// (native TCP) or http(s):// (HTTP interface)", c.URL)
	}
	if u.Host == "" {
		return endpoint{}, fmt.Errorf("url %q: no host", c.URL)
	}
	if u.User != nil {
		e.user = u.User.Username()
		e.password, _ = u.User.Password()
	}
	// Explicit settings (and their environment overrides) beat the URL.
	if c.Username != "" {
		e.user = c.Username
	}
	if c.Password != "" {
		e.password = c.Password
	}
	if e.user == "" {
		e.user = "default"
	}
	if e.database == "" && e.scheme == "clickhouse" {
		e.database = strings.Trim(u.Path, "/")
	}
	if e.database == "" {
		e.database = "default"
	}
	return e, nil
}

func newTransport(e endpoint) (transport, error) {
	switch e.scheme {
	case "clickhouse":
		return newNative(e), nil
	case "http", "https":
		return newHTTP(e), nil
	}
	return nil, fmt.Errorf("no transport for scheme %q", e.scheme)
}

// serverError is an exception ClickHouse reported, with its numeric code,
// so callers can tell a missing table from a bad query.
type serverError struct {
	Code    int
	Message string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("clickhouse: code %d: %s", e.Code, e.Message)
}

// ClickHouse error codes the sink reacts to.
const (
	codeUnknownTable    = 60
	codeUnknownDatabase = 81
)

func isCode(err error, code int) bool {
	var se *serverError
	return errors.As(err, &se) && se.Code == code
}

// linkError marks a failure to reach the server at all (refused, reset,
// timed out), as opposed to the server refusing a query.
type linkError struct{ err error }

func (e *linkError) Error() string { return "clickhouse unreachable: " + e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

func isLinkError(err error) bool {
	var le *linkError
	return errors.As(err, &le)
}

// quoteIdent quotes a database, table or column name. Config validation
// allows only [A-Za-z_][A-Za-z0-9_]*, so this is belt and braces.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// quoteString is a ClickHouse string literal for s. Pair names come from
// URLs; backslash and quote are the only bytes with meaning inside quotes.
func quoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
