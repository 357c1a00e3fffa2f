// Package okx speaks OKX's v5 public WebSocket format: the decoder for the
// tickers, trades and best bid/ask (bbo-tbt, books5) channels and their
// control frames, and the subscribe, unsubscribe and ping messages. It is
// pure — no network; the connection manager dials, paces and keeps alive.
//
// Best bid/ask comes from bbo-tbt (top of book, pushed tick by tick on
// every change, about every 10 ms): it is what a quote is. books5 has the
// same shape (five levels, every 100 ms) and is decoded too, taking its
// first level, for accounts or regions where bbo-tbt is not offered.
package okx

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Exchange is the exchange name on every record.
const Exchange = "okx"

// Documented endpoint and limits (OKX API v5, "WebSocket" overview).
const (
	PublicURL = "wss://ws.okx.com:8443/ws/v5/public"

	// MaxRequestsPerHour: subscribe, unsubscribe and login requests
	// together, per connection per hour. A request may carry many args, so
	// batch them.
	MaxRequestsPerHour = 480
	// MaxConnectsPerSecond: new connection attempts per second per IP.
	MaxConnectsPerSecond = 3
	// MaxRequestBytes: the total length of one subscribe request's args.
	MaxRequestBytes = 64 << 10
	// IdleTimeout: the server closes a connection that received no data
	// for this long. Send Ping when nothing arrived for PingAfter.
	IdleTimeout = 30 * time.Second
	PingAfter   = 25 * time.Second
	// NoticeReconnect is the notice code OKX sends before it closes a
	// connection for a service upgrade.
	NoticeReconnect = "64008"
)

// Channels this package decodes.
const (
	Tickers = "tickers"
	Trades  = "trades"
	BBO     = "bbo-tbt"
	Books5  = "books5"
)

// Arg is one subscription: a channel and an instrument ("BTC-USDT").
type Arg struct {
	Channel string `json:"channel"`
	InstID  string `json:"instId"`
}

// ErrTooLarge: a request over MaxRequestBytes; split the args.
var ErrTooLarge = errors.New("okx: request longer than 64 KB; split it")

type request struct {
	ID   string `json:"id,omitempty"`
	Op   string `json:"op"`
	Args []Arg  `json:"args"`
}

// Subscribe is the subscribe request for args, with an optional request id
// (echoed in the acks and errors, up to 32 letters and digits).
func Subscribe(id string, args ...Arg) ([]byte, error) { return build(id, "subscribe", args) }

// Unsubscribe is the unsubscribe request for args.
func Unsubscribe(id string, args ...Arg) ([]byte, error) { return build(id, "unsubscribe", args) }

func build(id, op string, args []Arg) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("okx: %s with no args", op)
	}
	b, err := json.Marshal(request{id, op, args})
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRequestBytes {
		return nil, ErrTooLarge
	}
	return b, nil
}

// Ping is OKX's keep-alive: the text frame "ping" (not JSON), answered by
// the text frame "pong".
func Ping() []byte { return []byte("ping") }
