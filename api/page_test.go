package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakePush string

func (f fakePush) PushURL() string { return string(f) }

func TestPagePushURL(t *testing.T) {
	tests := []struct {
		push, reqHost, scheme, want string
	}{
		{"ws://[::]:8081/ws", "example.test:8080", "http", "ws://example.test:8081/ws"},
		{"ws://0.0.0.0:8081/ws", "10.1.2.3:8080", "http", "ws://10.1.2.3:8081/ws"},
		{"ws://127.0.0.1:8081/ws", "localhost:8080", "http", "ws://localhost:8081/ws"},
		{"ws://127.0.0.1:8081/ws", "[::1]:8080", "http", "ws://[::1]:8081/ws"},
		{"ws://localhost:8081/ws", "127.0.0.1", "https", "wss://127.0.0.1:8081/ws"},
		{"wss://push.example.com/ws", "10.1.2.3:8080", "http", "wss://push.example.com/ws"}, // public_url kept
		{"ws://10.0.0.5:8081/ws", "example.test:8080", "http", "ws://10.0.0.5:8081/ws"},     // a real address kept
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/push", nil)
		r.Host = tt.reqHost
		if got := pagePushURL(tt.push, r, tt.scheme); got != tt.want {
			t.Errorf("push %s via %s: got %s, want %s", tt.push, tt.reqHost, got, tt.want)
		}
	}
}

func TestPageRoutes(t *testing.T) {
	get := func(s *Server, path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Host = "box.test:8080"
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, r)
		return rec
	}
	s := New(Options{Push: fakePush("ws://[::]:8081/ws")})
	tests := []struct {
		path, ctype, contains string
		code                  int
	}{
		{"/", "text/html", `<script type="module" src="/assets/app.js">`, 200},
		{"/assets/app.js", "text/javascript", "", 200},
		{"/assets/app.css", "text/css", "", 200},
		{"/assets/nope.js", "application/json", `"not_found"`, 404},
		{"/api/v1/push", "application/json", `{"success":true,"data":{"url":"ws://box.test:8081/ws"}}`, 200},
	}
	for _, tt := range tests {
		rec := get(s, tt.path)
		if rec.Code != tt.code || !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.ctype) || !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: %d %s %.120q", tt.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
	}
	// Revalidation: same binary, same ETag, 304.
	first := get(s, "/assets/app.js")
	if etag := first.Header().Get("ETag"); etag == "" {
		t.Error("no ETag")
	} else if rec := get(s, "/assets/app.js", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}

	// Without a push sink the page learns why.
	rec := get(New(Options{}), "/api/v1/push")
	var env struct {
		Success bool
		Error   struct{ Code string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != 503 || env.Error.Code != "push_unavailable" {
		t.Errorf("no push sink: %d %s", rec.Code, rec.Body)
	}
}
