package web

import (
	"bytes"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// The page references its assets by fixed names; they must all be built.
func TestAssetsBuilt(t *testing.T) {
	a := Assets()
	for _, name := range []string{"index.html", "assets/app.js", "assets/app.css"} {
		b, err := fs.ReadFile(a, name)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v (run: cd web && npm ci && npm run build)", name, err)
		}
	}
	js, _ := fs.ReadFile(a, "assets/app.js")
	if !bytes.Contains(js, []byte("lightweight-charts")) && !bytes.Contains(js, []byte("TradingView")) {
		t.Error("app.js does not bundle lightweight-charts")
	}
}

// dist/index.html is a copy of src/index.html: a stale one means dist was
// not rebuilt after editing src.
func TestDistMatchesSource(t *testing.T) {
	src, err := os.ReadFile("src/index.html")
	if err != nil {
		t.Fatal(err)
	}
	built, _ := fs.ReadFile(Assets(), "index.html")
	if !bytes.Equal(src, built) {
		t.Error("dist/index.html differs from src/index.html: run cd web && npm ci && npm run build")
	}
	for _, ref := range []string{"/assets/app.js", "/assets/app.css"} {
		if !strings.Contains(string(src), ref) {
			t.Errorf("index.html does not reference %s", ref)
		}
	}
}

// The backtest page's script is built, bundles the charts, and can be
// inlined in a <script> element.
func TestBacktestPageBuilt(t *testing.T) {
	js, css := BacktestPage()
	if len(css) == 0 || !bytes.Contains(js, []byte("lightweight-charts")) && !bytes.Contains(js, []byte("TradingView")) {
		t.Fatal("dist/backtest is not built with lightweight-charts (run: cd web && npm ci && npm run build)")
	}
	if bytes.Contains(bytes.ToLower(js), []byte("</script")) || bytes.Contains(bytes.ToLower(css), []byte("</style")) {
		t.Fatal("the backtest page's assets cannot be inlined: they contain a closing tag")
	}
}
