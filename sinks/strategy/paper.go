package strategy

import (
	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
)

// paper is a strategy's simulated account. A buy closes a short and opens
// a long of the configured quantity; a sell closes a long and, with
// allow_short, opens a short. A signal in the direction already held adds
// nothing (no pyramiding). Fills are at the signal's price, exactly; there
// are no fees or slippage, and no order is ever sent anywhere.
type paper struct {
	Position apd.Decimal `json:"position"` // signed
	Entry    apd.Decimal `json:"entry"`
	Realized apd.Decimal `json:"realized"`
	Fills    int         `json:"fills"`
}

func (p *paper) apply(side signal.Side, price, qty *apd.Decimal, allowShort bool) {
	ctx := &apd.BaseContext
	var pnl apd.Decimal
	closeOut := func() {
		// (price-entry)×position is the PnL of a long and of a short alike.
		ctx.Sub(&pnl, price, &p.Entry)
		ctx.Mul(&pnl, &pnl, &p.Position)
		ctx.Add(&p.Realized, &p.Realized, &pnl)
		p.Position.SetInt64(0)
		p.Entry.SetInt64(0)
		p.Fills++
	}
	open := func(q *apd.Decimal) {
		p.Position.Set(q)
		p.Entry.Set(price)
		p.Fills++
	}
	switch side {
	case signal.Buy:
		if p.Position.Sign() > 0 {
			return
		}
		if p.Position.Sign() < 0 {
			closeOut()
		}
		open(qty)
	case signal.Sell:
		if p.Position.Sign() < 0 {
			return
		}
		if p.Position.Sign() > 0 {
			closeOut()
		}
		if allowShort {
			var neg apd.Decimal
			open(neg.Neg(qty))
		}
	}
}

// unrealized is (mark-entry)×position.
func (p *paper) unrealized(mark *apd.Decimal) apd.Decimal {
	var d apd.Decimal
	if p.Position.IsZero() || mark.Sign() <= 0 {
		return d
	}
	apd.BaseContext.Sub(&d, mark, &p.Entry)
	apd.BaseContext.Mul(&d, &d, &p.Position)
	return d
}
