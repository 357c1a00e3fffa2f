package push

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// netConnKey carries the TCP connection under a request, so a connection
// whose closing handshake hangs can be cut.
type netConnKey struct{}

func (s *Sink) serveWS(w http.ResponseWriter, r *http.Request) {
	if !originAllowed(r, s.cfg.AllowedOrigins) {
		s.m.accepted.WithLabelValues("origin_rejected").Inc()
		s.log.Debug("push: origin rejected", "origin", r.Header.Get("Origin"), "host", r.Host, "remote", r.RemoteAddr)
		http.Error(w, "origin not allowed (see sinks.push.allowed_origins)", http.StatusForbidden)
		return
	}
	// The origin is checked above with our own rule (same host name on any
	// port, so the page on the API port may connect); the library's rule
	// compares host and port.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("push: handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	nc, _ := r.Context().Value(netConnKey{}).(net.Conn)
	c := newClient(s, ws, nc)
	if ok, shuttingDown := s.track(c); !ok {
		if shuttingDown {
			s.reject(ws, nc, codeShutdown, "server shutting down; reconnect shortly", websocket.StatusGoingAway, "server shutting down")
			return
		}
		s.m.accepted.WithLabelValues("limit_rejected").Inc()
		s.m.clientErrors.WithLabelValues(codeTooManyConns).Inc()
		s.m.disconnects.WithLabelValues(codeTooManyConns).Inc()
		s.reject(ws, nc, codeTooManyConns, "the server is at its connection limit; try again later",
			websocket.StatusTryAgainLater, "too many connections")
		return
	}
	defer s.untrack(c)
	s.m.accepted.WithLabelValues("accepted").Inc()
	s.m.connections.Inc()
	defer s.m.connections.Dec()
	reason := c.serve()
	s.log.Debug("push: client disconnected", "remote", r.RemoteAddr, "reason", reason)
}

// track registers c unless the server is shutting down or the connection
// limit is reached.
func (s *Sink) track(c *client) (ok, shuttingDown bool) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if !s.serving.Load() {
		return false, true
	}
	if len(s.conns) >= s.cfg.Limits.MaxConnections {
		return false, false
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	return true, false
}

func (s *Sink) untrack(c *client) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
	s.handlers.Done()
}

// reject tells a client it cannot be served, and why, before closing: a
// browser cannot read the body of a refused handshake.
func (s *Sink) reject(ws *websocket.Conn, nc net.Conn, code, msg string, status websocket.StatusCode, reason string) {
	kill := time.AfterFunc(s.cfg.WriteTimeout, func() {
		if nc != nil {
			_ = nc.Close()
		}
	})
	defer kill.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, encodeError(code, msg))
	_ = ws.Close(status, reason)
}

// originAllowed applies sinks.push.allowed_origins. A request without an
// Origin header is not from a browser page and is allowed: origin checks
// protect browsers' users from other sites' pages, not the server from
// other programs (limits do that).
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Hostname(), hostname(r.Host)) {
		return true
	}
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}
