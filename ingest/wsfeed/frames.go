package wsfeed

import (
	"strings"

	"github.com/tickflow/tickflow/ingest/wire"
)

// FrameExchange is an Exchange whose frames carry any number of records
// (ingest/wire.Frame: ticks, trades, quotes, sequence values, rejected
// entries) and whose decoder keeps per-connection state (the topics it
// subscribed, an instrument cache). When the Exchange given in Options
// implements it, each connection gets its own decoder from NewDecoder.
type FrameExchange interface {
	Exchange
	// NewDecoder returns the decoder of one connection carrying streams.
	// It is called once per connection, before the subscribe messages are
	// sent, from that connection's goroutine.
	NewDecoder(streams []string) FrameDecoder
}

// FrameDecoder decodes the frames of one connection; it need not be safe
// for concurrent use.
type FrameDecoder interface {
	// DecodeFrame decodes one text frame into f (Reset by the caller);
	// receivedAt is the local receive time, Unix µs. The Event's Kind is
	// Tick when f holds data (its Ticks go to the queue, its Rejects are
	// counted as malformed with their reasons, its Seqs are checked for
	// gaps), or what a control frame calls for. An error is a frame to
	// skip and count, as for TickDecoder.Decode; a *wire.Malformed names its
	// reason.
	DecodeFrame(frame []byte, receivedAt int64, f *wire.Frame) (Event, error)
}

// Server event names FromWire gives.
const (
	EventSubscribeError = "subscribe_error"
	EventError          = "error"
	EventNotice         = "server_notice"
)

// FromWire is the usual Event for a decoded wire.Frame: data is Tick;
// acks, pongs, heartbeats and status are Ignore; a subscribe error or an
// error frame is a ServerEvent; a notice that the server will close the
// connection (OKX 64008, Kraken maintenance) is a planned Reconnect.
func FromWire(f *wire.Frame) Event {
	info := func() string {
		c := f.Control
		parts := make([]string, 0, 4)
		for _, s := range []string{c.Code, c.Message, c.Channel, strings.Join(c.Symbols, ",")} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	}
	switch f.Kind {
	case wire.Data:
		return Event{Kind: Tick}
	case wire.SubscribeError:
		return Event{Kind: ServerEvent, Name: EventSubscribeError, Info: info()}
	case wire.Error:
		return Event{Kind: ServerEvent, Name: EventError, Info: info()}
	case wire.Notice:
		return Event{Kind: Reconnect, Name: EventNotice, Info: info()}
	}
	return Event{Kind: Ignore}
}

// Wire is the FrameDecoder of a wire.Decoder: its frames, with events
// from events (FromWire when nil) for the frames it accepts.
func Wire(d wire.Decoder, events func(*wire.Frame) Event) FrameDecoder {
	if events == nil {
		events = FromWire
	}
	return wireFrames{d, events}
}

type wireFrames struct {
	d      wire.Decoder
	events func(*wire.Frame) Event
}

func (x wireFrames) DecodeFrame(frame []byte, receivedAt int64, f *wire.Frame) (Event, error) {
	if err := x.d.Decode(frame, receivedAt, f); err != nil {
		return Event{}, err
	}
	return x.events(f), nil
}

// Topics is the set a connection carrying streams (native symbols)
// subscribes: every symbol on every channel.
func Topics(streams []string, channels ...string) *wire.Topics {
	var t wire.Topics
	for _, s := range streams {
		for _, ch := range channels {
			t.Add(ch, s)
		}
	}
	return &t
}
