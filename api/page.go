package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/web"
)

// PushURLer is implemented by the push sink: the WebSocket URL the live
// page should dial.
type PushURLer interface {
	PushURL() string
}

// pageFile is one embedded asset with its validator.
type pageFile struct {
	body  []byte
	etag  string
	ctype string
}

// pageFiles are read once: the assets are in the binary and never change
// while it runs.
var pageFiles = func() map[string]pageFile {
	files := map[string]pageFile{}
	assets := web.Assets()
	_ = fs.WalkDir(assets, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		files[name] = pageFile{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	return files
}()

func init() {
	addRoutes(func(s *Server) {
		s.e.GET("/", servePage("index.html"))
		s.e.GET("/assets/*", func(c echo.Context) error {
			return servePage("assets/" + c.Param("*"))(c)
		})
		s.e.GET("/api/v1/push", s.getPush)
	})
	describe("GET", "/api/v1/push", Operation{
		Summary: "Where the live WebSocket feed is",
		Description: "The URL of the push sink's WebSocket, for the web page. When the push sink listens on a " +
			"wildcard or loopback address (and sinks.push.public_url is not set), the host is the one this request " +
			"was made to, so a page loaded from any address of this machine dials the same machine. Clients send " +
			`{"type":"subscribe","channels":["tick","alert","signal","trade","quote"],"exchanges":[...],"symbols":[...]} ` +
			"(missing exchange and symbol lists mean all; a missing channels list means tick, alert and signal) and " +
			"receive those messages. Each tick frame carries its position (part, off: the Kafka partition and offset); " +
			`a client that reconnects with "since":{"epoch":...,"offsets":{...}} (the position it reached) gets the ` +
			`ticks it missed first, flagged "recovered":true, or "recovered":false with the reason and a fresh ` +
			"snapshot. The protocol is documented in sinks/push/protocol.go and the README.",
		Tags: []string{"live"},
		Data: Schema{
			"type":     "object",
			"required": []string{"url"},
			"properties": map[string]any{
				"url": Schema{"type": "string", "example": "ws://localhost:8081/ws"},
			},
		},
		Errors: map[int]string{503: "push_unavailable: the push sink is not enabled"},
	})
}

// servePage answers with an embedded file. The files have fixed names, so
// clients revalidate (no-cache) and get 304 while the binary is the same.
func servePage(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		f, ok := pageFiles[name]
		if !ok {
			return echo.ErrNotFound
		}
		h := c.Response().Header()
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(c.Response(), c.Request(), name, time.Time{}, bytes.NewReader(f.body))
		return nil
	}
}

func (s *Server) getPush(c echo.Context) error {
	if s.opts.Push == nil {
		return errorf(http.StatusServiceUnavailable, "push_unavailable", "the push sink is not enabled")
	}
	return ok(c, map[string]string{"url": pagePushURL(s.opts.Push.PushURL(), c.Request(), c.Scheme())})
}

// pagePushURL points a push URL whose host is a wildcard or loopback at the
// host the page was requested from, keeping the port: the listener answers
// there, and the browser's Origin then matches the push sink's default
// same-host check. Other hosts (a configured public URL) are kept.
func pagePushURL(raw string, r *http.Request, scheme string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "" && host != "localhost" && (ip == nil || !(ip.IsUnspecified() || ip.IsLoopback())) {
		return raw
	}
	reqHost := r.Host
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		reqHost = h
	}
	reqHost = strings.Trim(reqHost, "[]")
	if reqHost == "" {
		return raw
	}
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(reqHost, port)
	} else if strings.Contains(reqHost, ":") {
		u.Host = "[" + reqHost + "]"
	} else {
		u.Host = reqHost
	}
	if scheme == "https" && u.Scheme == "ws" {
		u.Scheme = "wss"
	}
	return u.String()
}
