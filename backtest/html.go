package backtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"

	"github.com/tickflow/tickflow/web"
)

// The page embeds the report as JSON in a <script type="application/json">
// element, which the bundled script (web/src/backtest.js, lightweight-charts
// inlined) reads and draws: per strategy, the pair's price bars with each
// trade's entry and exit as markers, and the equity curve. Nothing is
// fetched, so the file can be mailed or opened offline.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tickflow backtest {{.Title}}</title>
<style>{{.Style}}</style>
</head>
<body>
<main id="root"></main>
<script id="report" type="application/json">{{.Report}}</script>
<script>{{.Script}}</script>
</body>
</html>
`))

// WriteHTML writes a self-contained page showing rep.
func WriteHTML(w io.Writer, rep *Report) error {
	// json.Marshal escapes <, > and &, so the report cannot end its
	// element early.
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	script, style := web.BacktestPage()
	title := fmt.Sprintf("%d strategies, %d ticks", len(rep.Strategies), rep.Ticks)
	return page.Execute(w, struct {
		Title  string
		Style  template.CSS
		Report template.JS
		Script template.JS
	}{title, template.CSS(style), template.JS(b), template.JS(script)})
}
