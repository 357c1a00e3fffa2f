package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ClickHouse/ch-go/proto"
)

// nativeFormatRevision is the protocol revision the FORMAT Native bodies
// are encoded and decoded with. Over HTTP the server uses the layout without
// per-column serialization flags unless the client asks for a newer one, and
// 54412 (ClickHouse 18.16's revision) is such a layout on every server.
const nativeFormatRevision = 54412

// httpTransport speaks ClickHouse's HTTP interface: statements as the
// request body, INSERT data and SELECT results as FORMAT Native blocks
// encoded and decoded by ch-go.
type httpTransport struct {
	e      endpoint
	client *http.Client
	bufs   sync.Pool // *proto.Buffer, reused across inserts
}

func newHTTP(e endpoint) *httpTransport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	return &httpTransport{e: e, client: &http.Client{Transport: tr}}
}

func (h *httpTransport) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// endpointURL is the server URL with the query-string settings for one
// request. The credentials travel in a header, never in the URL. No
// session database is set: every statement names its tables in full, and
// the first one may be the CREATE DATABASE.
func (h *httpTransport) endpointURL(params url.Values) string {
	u := *h.e.url
	u.User = nil
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (h *httpTransport) do(ctx context.Context, params url.Values, body io.Reader) (*http.Response, error) {
	if h.e.timeout > 0 {
		// The cancel is deferred to the body's Close by the caller reading
		// it; a short-lived context here would cut the body off.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.e.timeout)
		resp, err := h.send(ctx, params, body)
		if err != nil {
			cancel()
			return nil, err
		}
		resp.Body = cancelOnClose{resp.Body, cancel}
		return resp, nil
	}
	return h.send(ctx, params, body)
}

func (h *httpTransport) send(ctx context.Context, params url.Values, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.endpointURL(params), body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(h.e.user, h.e.password)
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ctx.Err()
		}
		return nil, &linkError{err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, httpError(resp, msg)
	}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

var codeRE = regexp.MustCompile(`^Code: (\d+)`)

// httpError turns a non-200 answer into a serverError: newer servers name
// the code in a header, 18.16 only at the start of the body.
func httpError(resp *http.Response, body []byte) error {
	msg := strings.TrimSpace(string(body))
	code, err := strconv.Atoi(resp.Header.Get("X-ClickHouse-Exception-Code"))
	if err != nil {
		if m := codeRE.FindStringSubmatch(msg); m != nil {
			code, _ = strconv.Atoi(m[1])
		}
	}
	if code == 0 {
		if resp.StatusCode >= 500 {
			// A proxy or load balancer in front of a server that is down.
			return &linkError{fmt.Errorf("HTTP %s: %s", resp.Status, msg)}
		}
		return fmt.Errorf("clickhouse: HTTP %s: %s", resp.Status, msg)
	}
	return &serverError{Code: code, Message: msg}
}

func (h *httpTransport) exec(ctx context.Context, sql string) error {
	resp, err := h.do(ctx, nil, strings.NewReader(sql))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (h *httpTransport) insert(ctx context.Context, table string, in proto.Input) error {
	buf, _ := h.bufs.Get().(*proto.Buffer)
	if buf == nil {
		buf = new(proto.Buffer)
	}
	defer h.bufs.Put(buf)
	buf.Reset()
	rows := 0
	if len(in) > 0 {
		rows = in[0].Data.Rows()
	}
	block := proto.Block{Columns: len(in), Rows: rows}
	if err := block.EncodeRawBlock(buf, nativeFormatRevision, in); err != nil {
		return fmt.Errorf("encode block: %w", err)
	}
	params := url.Values{"query": {"INSERT INTO " + table + " " + in.Columns() + " FORMAT Native"}}
	resp, err := h.do(ctx, params, bytes.NewReader(buf.Buf))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (h *httpTransport) query(ctx context.Context, sql string, res proto.Results, onBlock func() error) error {
	// wait_end_of_query makes the server finish before answering, so an
	// error comes back as a status code rather than mid-body.
	params := url.Values{"wait_end_of_query": {"1"}}
	resp, err := h.do(ctx, params, strings.NewReader(sql+" FORMAT Native"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	r := proto.NewReader(br)
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return nil
		} else if err != nil {
			return &linkError{err}
		}
		var b proto.Block
		if err := b.DecodeRawBlock(r, nativeFormatRevision, res); err != nil {
			return fmt.Errorf("decode result block: %w", err)
		}
		if b.Rows == 0 {
			continue
		}
		if err := onBlock(); err != nil {
			return err
		}
	}
}

func (h *httpTransport) ping(ctx context.Context) error {
	return h.exec(ctx, "SELECT 1")
}

func (*httpTransport) name() string { return "http" }
