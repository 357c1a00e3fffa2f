package backtest

import (
	"errors"
	"io"
)

// WriteHTML writes a self-contained page showing rep.
func WriteHTML(w io.Writer, rep *Report) error { return errors.New("not yet") }
