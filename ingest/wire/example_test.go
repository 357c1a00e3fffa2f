package wire_test

import (
	"fmt"

	"github.com/tickflow/tickflow/ingest/okx"
	"github.com/tickflow/tickflow/ingest/wire"
)

// How a connection manager drives an exchange package: build the request,
// record the topics, decode every frame into one reused Frame and act on
// its kind.
func Example() {
	var topics wire.Topics
	args := []okx.Arg{{Channel: okx.Tickers, InstID: "BTC-USDT"}, {Channel: okx.Trades, InstID: "BTC-USDT"}}
	req, _ := okx.Subscribe("1", args...)
	for _, a := range args {
		topics.Add(a.Channel, a.InstID)
	}
	fmt.Printf("send %s\n", req)

	dec := okx.NewDecoder(&topics, nil)
	var f wire.Frame
	for _, frame := range []string{
		`{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3"}]}`,
		`{"id":"1","event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a4d3ae55"}`,
		`{"arg":{"channel":"trades","instId":"ETH-USDT"},"data":[]}`,
		`pong`,
		`{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}`,
	} {
		f.Reset()
		if err := dec.Decode([]byte(frame), 1630048897901234, &f); err != nil {
			fmt.Println("malformed:", wire.ReasonOf(err)) // count it, skip it
			continue
		}
		switch f.Kind {
		case wire.Data:
			for _, t := range f.Trades {
				fmt.Printf("trade %s\n", t.AppendJSON(nil))
			}
			for _, s := range f.Seqs {
				fmt.Printf("seq %s %s %s=%d prev=%d contiguous=%v\n", s.Channel, s.Symbol, s.Field, s.Value, s.Prev, s.Contiguous)
			}
			for _, r := range f.Rejects {
				fmt.Println("rejected:", r.Reason) // count it, keep the rest
			}
		case wire.Notice:
			fmt.Println("notice", f.Control.Code, "→ open a replacement connection")
		default:
			fmt.Println(f.Kind, f.Control.Channel, f.Control.Symbols)
		}
	}
	// Output:
	// send {"id":"1","op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"},{"channel":"trades","instId":"BTC-USDT"}]}
	// trade {"exchange":"okx","symbol":"BTC-USDT","base":"BTC","quote":"USDT","timestamp":1630048897897,"price":"42219.9","size":"0.12060306","side":"buy","trade_id":"130639474","received_at_us":1630048897901234}
	// seq trades BTC-USDT tradeId=130639474 prev=130639471 contiguous=true
	// subscribed tickers [BTC-USDT]
	// malformed: unknown_stream
	// pong  []
	// notice 64008 → open a replacement connection
}
