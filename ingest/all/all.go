// Package all compiles in every tickflow source: main blank-imports it, so
// the set a binary can ingest from is this list.
package all

import (
	_ "github.com/tickflow/tickflow/ingest/binance"
	_ "github.com/tickflow/tickflow/ingest/bybit"
	_ "github.com/tickflow/tickflow/ingest/coinbase"
	_ "github.com/tickflow/tickflow/ingest/kraken"
	_ "github.com/tickflow/tickflow/ingest/okx"
	_ "github.com/tickflow/tickflow/ingest/sim"
)
