// Package web is tickflow's live page. The sources are in src/; esbuild
// (pinned by package-lock.json) builds them into dist/, which is committed
// and embedded here, so `go build` needs no npm step. After editing src/:
//
//	cd web && npm ci && npm run build
//
// and commit dist/ with the change.
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Assets is the built page: index.html and assets/.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed directive guarantees dist exists
	}
	return sub
}

// BacktestPage is the script and style of tickflow backtest's
// self-contained page (src/backtest.js with lightweight-charts bundled,
// src/backtest.css), which the backtest inlines with the report.
func BacktestPage() (script, style []byte) {
	script, err := dist.ReadFile("dist/backtest/backtest.js")
	if err != nil {
		panic(err) // built and embedded with dist
	}
	style, err = dist.ReadFile("dist/backtest/backtest.css")
	if err != nil {
		panic(err)
	}
	return script, style
}
