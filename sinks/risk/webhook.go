package risk

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/clock"
)

// Webhook request headers. The signature is "sha256=" and the hex
// HMAC-SHA256 of the body under the configured secret, GitHub-style, so a
// receiver can check the alert came from us; the alert ID lets it drop the
// duplicates that retries and replays can cause.
const (
	SignatureHeader = "X-Tickflow-Signature"
	EventHeader     = "X-Tickflow-Event"
	IDHeader        = "X-Tickflow-Alert-Id"
)

// Sign returns the signature header value for body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// notifier posts alerts to a webhook from its own goroutine, so a slow or
// dead receiver never holds up a batch: enqueue never waits, and alerts
// beyond the queue are dropped and counted.
type notifier struct {
	cfg    Webhook
	client *http.Client
	clock  clock.Clock
	log    *slog.Logger
	m      *metrics
	queue  chan alert.Alert
}

func newNotifier(cfg Webhook, clk clock.Clock, log *slog.Logger, m *metrics) *notifier {
	return &notifier{
		cfg:    cfg,
		client: &http.Client{},
		clock:  clk,
		log:    log,
		m:      m,
		queue:  make(chan alert.Alert, cfg.Queue),
	}
}

func (n *notifier) enqueue(a alert.Alert) {
	if a.Severity.Rank() < n.cfg.MinSeverity.Rank() {
		return
	}
	select {
	case n.queue <- a:
	default:
		n.m.webhook.WithLabelValues("dropped").Inc()
		n.log.Warn("risk: webhook queue full, alert not posted", "id", a.ID, "rule", a.Rule, "pair", a.Key())
	}
}

// run delivers queued alerts until ctx ends.
func (n *notifier) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case a := <-n.queue:
			if err := n.deliver(ctx, &a); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				n.m.webhook.WithLabelValues("failed").Inc()
				n.log.Error("risk: webhook delivery failed", "id", a.ID, "rule", a.Rule, "url", n.cfg.URL, "err", err)
				continue
			}
			n.m.webhook.WithLabelValues("ok").Inc()
		}
	}
}

// deliver posts one alert, retrying transient failures with exponential
// backoff. A 4xx other than 408 and 429 is the receiver refusing this alert,
// which a retry will not change.
func (n *notifier) deliver(ctx context.Context, a *alert.Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	backoff := n.cfg.Backoff
	var last error
	for attempt := 0; attempt <= n.cfg.Retries; attempt++ {
		if attempt > 0 {
			n.m.webhookRetries.Inc()
			t := n.clock.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C():
			}
			backoff = min(backoff*2, n.cfg.MaxBackoff)
		}
		retry, err := n.post(ctx, a, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry {
			break
		}
	}
	return last
}

func (n *notifier) post(ctx context.Context, a *alert.Alert, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tickflow-risk")
	req.Header.Set(EventHeader, "alert")
	req.Header.Set(IDHeader, a.ID)
	if n.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign([]byte(n.cfg.Secret), body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return false, fmt.Errorf("webhook refused the alert: %s", resp.Status)
	}
}
