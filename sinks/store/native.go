package store

import (
	"context"
	"fmt"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
)

// nativeTransport speaks ClickHouse's native TCP protocol through ch-go's
// client, with LZ4-compressed blocks. A ch.Client serves one query at a
// time, so the transport keeps a few idle connections and dials more when
// the API and the sink query at once. Connections use the server's default
// database: statements name their tables in full, and the store's database
// may not exist before the first CREATE DATABASE.
type nativeTransport struct {
	e    endpoint
	idle chan *ch.Client
}

const nativeIdleConns = 4

func newNative(e endpoint) *nativeTransport {
	return &nativeTransport{e: e, idle: make(chan *ch.Client, nativeIdleConns)}
}

func (n *nativeTransport) get(ctx context.Context) (*ch.Client, error) {
	for {
		select {
		case c := <-n.idle:
			if !c.IsClosed() {
				return c, nil
			}
		default:
			c, err := ch.Dial(ctx, ch.Options{
				Address:     n.e.url.Host,
				User:        n.e.user,
				Password:    n.e.password,
				Compression: ch.CompressionLZ4,
				ClientName:  "tickflow",
				ReadTimeout: n.e.timeout,
				DialTimeout: n.e.timeout,
			})
			if err != nil {
				return nil, nativeError(ctx, err)
			}
			return c, nil
		}
	}
}

// put returns c to the idle set, or closes it after any failure: a query
// cut short (an exception mid-INSERT, say) can leave packets in flight that
// the next query would misread.
func (n *nativeTransport) put(c *ch.Client, err error) {
	if err != nil {
		_ = c.Close()
		return
	}
	select {
	case n.idle <- c:
	default:
		_ = c.Close()
	}
}

// nativeError sorts ch-go's errors into the sink's kinds.
func nativeError(ctx context.Context, err error) error {
	if e, ok := ch.AsException(err); ok {
		return &serverError{Code: int(e.Code), Message: e.Message}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return &linkError{err}
}

func (n *nativeTransport) do(ctx context.Context, q ch.Query) error {
	c, err := n.get(ctx)
	if err != nil {
		return err
	}
	err = c.Do(ctx, q)
	n.put(c, err)
	if err != nil {
		return nativeError(ctx, err)
	}
	return nil
}

func (n *nativeTransport) exec(ctx context.Context, sql string) error {
	return n.do(ctx, ch.Query{Body: sql})
}

func (n *nativeTransport) insert(ctx context.Context, table string, in proto.Input) error {
	return n.do(ctx, ch.Query{Body: "INSERT INTO " + table + " " + in.Columns() + " VALUES", Input: in})
}

func (n *nativeTransport) query(ctx context.Context, sql string, res proto.Results, onBlock func() error) error {
	return n.do(ctx, ch.Query{
		Body:   sql,
		Result: res,
		OnResult: func(ctx context.Context, b proto.Block) error {
			// The server leads with an empty block naming the columns.
			if b.Rows == 0 {
				return nil
			}
			return onBlock()
		},
	})
}

func (n *nativeTransport) ping(ctx context.Context) error {
	c, err := n.get(ctx)
	if err != nil {
		return err
	}
	err = c.Ping(ctx)
	n.put(c, err)
	if err != nil {
		return nativeError(ctx, err)
	}
	return nil
}

func (n *nativeTransport) close() error {
	for {
		select {
		case c := <-n.idle:
			_ = c.Close()
		default:
			return nil
		}
	}
}

func (*nativeTransport) name() string { return "native" }
