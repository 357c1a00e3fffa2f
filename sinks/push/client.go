package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// chControl marks per-client replies (subscribed, pong, error): never
// conflated, never fanned out.
const chControl channel = 255

// closeInfo says why and how a connection ends.
type closeInfo struct {
	status websocket.StatusCode
	code   string // error frame sent before the close frame; "" sends none
	msg    string
	reason string // close frame reason (at most 123 bytes)
	label  string // the tickflow_push_disconnects_total reason
	// flush writes what is queued before the error and close (a client's
	// own mistake); otherwise the queue is dropped (a slow client's backlog
	// is stale by definition).
	flush bool
	// silent skips the error and close frames: the peer is gone.
	silent bool
}

// client is one WebSocket connection: a reader goroutine (the HTTP
// handler's) that handles requests, and a writer goroutine that drains the
// outgoing queue. The hub enqueues without ever waiting: the queue is
// bounded in bytes, conflates ticks past half of the bound and ends the
// connection past the bound or when its oldest message is too old.
type client struct {
	s       *Sink
	ws      *websocket.Conn
	netConn net.Conn // the TCP connection under ws, to cut it when a close hangs

	queueBytes int
	conflateAt int
	maxLag     int64 // ns

	mu         sync.Mutex
	queue      []*message
	spare      []*message // the writer's last batch, reused
	qbytes     int
	headAt     int64 // when the oldest queued message was enqueued (ns)
	conflating bool
	slots      map[slotKey]int // channel and pair → index of its queued tick or quote, while conflating
	tombs      int             // nil entries conflation left in queue
	skipped    uint64          // conflated ticks not yet reported to the client
	// holding is set while a recovery reads the broker: what the hub
	// sends meanwhile waits in held (bounded by queueBytes), to follow the
	// missed ticks.
	holding   bool
	held      []*message
	heldBytes int
	// through is, per partition, the offset up to which a recovery sent
	// this client every tick: a live tick at or below it is a duplicate.
	// An entry goes once a live tick passes it.
	through    map[int32]int64
	final      *closeInfo
	killTimer  *time.Timer
	dropping   atomic.Bool // the writer stops mid-batch
	wake       chan struct{}
	writerDone chan struct{}
	pingTimer  *time.Timer

	// Owned by the reader goroutine.
	subs   map[subKey]struct{}
	bucket bucket
	buf    []byte
}

func newClient(s *Sink, ws *websocket.Conn, nc net.Conn) *client {
	l := s.cfg.Limits
	return &client{
		s: s, ws: ws, netConn: nc,
		queueBytes: l.QueueBytes,
		conflateAt: l.QueueBytes / 2,
		maxLag:     l.MaxLag.Nanoseconds(),
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		subs:       map[subKey]struct{}{},
		bucket:     newBucket(l.MaxMessagesPerSecond, l.MessageBurst, s.now()),
	}
}

// enqueue queues m for the writer; now is the enqueuer's clock reading in
// ns. It never blocks beyond the client's own short critical section.
func (c *client) enqueue(m *message, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueueLocked(m, now)
}

// enqueueLocked queues a live message: one a recovery already replayed
// is dropped.
func (c *client) enqueueLocked(m *message, now int64) {
	if c.through != nil && m.ch == chTick && m.positioned {
		if t, ok := c.through[m.part]; ok {
			if m.off <= t {
				c.s.m.duplicates.Inc()
				return
			}
			delete(c.through, m.part)
			if len(c.through) == 0 {
				c.through = nil
			}
		}
	}
	c.queueLocked(m, now)
}

// queueLocked queues m as it is (snapshot ticks go straight here: they
// predate any recovery's range and are no duplicates).
func (c *client) queueLocked(m *message, now int64) {
	if c.final != nil {
		return
	}
	if c.holding {
		c.held = append(c.held, m)
		if c.heldBytes += len(m.data); c.heldBytes > c.queueBytes {
			c.closeLocked(slowConsumer(fmt.Sprintf("more than %d bytes arrived while recovering", c.queueBytes)))
		}
		return
	}
	// The writer has not taken anything for max_lag: conflation keeps the
	// queue small, but the client is still not reading.
	if len(c.queue) > 0 && now-c.headAt > c.maxLag {
		c.closeLocked(slowConsumer(fmt.Sprintf("nothing read for more than %s", time.Duration(c.maxLag))))
		return
	}
	if c.conflating && conflatable(m.ch) {
		if i, ok := c.slots[slotKey{m.ch, m.pair}]; ok {
			// The newer tick goes to the end, not into the old one's
			// place: a partition's ticks then stay in offset order, so the
			// client's position never passes a tick it has not seen.
			c.qbytes -= len(c.queue[i].data)
			c.queue[i] = nil
			c.tombs++
			c.skipped++
			c.s.m.conflated.Inc()
			if c.tombs > 256 && 2*c.tombs > len(c.queue) {
				c.compactLocked()
			}
		}
	}
	c.queue = append(c.queue, m)
	c.qbytes += len(m.data)
	if len(c.queue) == 1 {
		c.headAt = now
		c.signal()
	}
	switch {
	case c.qbytes > c.queueBytes:
		c.closeLocked(slowConsumer(fmt.Sprintf("more than %d bytes queued", c.queueBytes)))
	case c.conflating:
		if conflatable(m.ch) {
			c.slots[slotKey{m.ch, m.pair}] = len(c.queue) - 1
		}
	case c.qbytes > c.conflateAt:
		// From now on a tick replaces its pair's queued tick instead of
		// queueing behind it, until the writer catches up.
		c.conflating = true
		if c.slots == nil {
			c.slots = map[slotKey]int{}
		}
		for i, q := range c.queue {
			if q != nil && conflatable(q.ch) {
				c.slots[slotKey{q.ch, q.pair}] = i
			}
		}
	}
}

// compactLocked drops conflation's nil entries from the queue.
func (c *client) compactLocked() {
	q := c.queue[:0]
	for _, m := range c.queue {
		if m != nil {
			q = append(q, m)
		}
	}
	clear(c.queue[len(q):])
	c.queue, c.tombs = q, 0
	clear(c.slots)
	for i, m := range c.queue {
		if conflatable(m.ch) {
			c.slots[slotKey{m.ch, m.pair}] = i
		}
	}
}

// slotKey is what conflation replaces by: a pair's tick by its newer tick,
// its quote by its newer quote.
type slotKey struct {
	ch   channel
	pair string
}

// conflatable reports whether a channel's messages may be replaced by
// their pair's newer one: ticks and quotes are states, where only the
// newest matters to a client behind; trades, alerts and signals are
// events, each of which does.
func conflatable(ch channel) bool { return ch == chTick || ch == chQuote }

func slowConsumer(why string) *closeInfo {
	return &closeInfo{
		status: websocket.StatusPolicyViolation, code: codeSlowConsumer,
		msg:    "client too slow: " + why + "; reconnect to resume",
		reason: "too slow: " + why, label: "slow_consumer",
	}
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *client) enqueueControl(data []byte) {
	c.enqueue(&message{data: data, ch: chControl}, c.s.now())
}

// closeWith ends the connection: the writer sends what ci asks for and
// closes. The first call wins. A kill timer bounds the whole goodbye.
func (c *client) closeWith(ci *closeInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(ci)
}

func (c *client) closeLocked(ci *closeInfo) {
	if c.final != nil {
		return
	}
	c.final = ci
	c.s.m.disconnects.WithLabelValues(ci.label).Inc()
	if !ci.flush {
		c.dropping.Store(true)
		clear(c.queue)
		c.queue, c.qbytes, c.tombs = c.queue[:0], 0, 0
		c.held, c.heldBytes = nil, 0
		c.conflating = false
		clear(c.slots)
	}
	c.signal()
	if ci.silent {
		c.kill()
		return
	}
	// Real time on purpose: this bounds network I/O, which no test fakes.
	c.killTimer = time.AfterFunc(c.s.cfg.WriteTimeout, c.kill)
}

func (c *client) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.final != nil
}

// kill cuts the TCP connection, unblocking every read and write on it.
func (c *client) kill() {
	switch {
	case c.netConn != nil:
		_ = c.netConn.Close()
	case c.ws != nil:
		_ = c.ws.CloseNow()
	}
}

// take hands the writer everything queued.
func (c *client) take() (batch []*message, skipped uint64, final *closeInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch = c.queue
	c.queue, c.spare = c.spare, nil
	c.qbytes, c.tombs = 0, 0
	if c.conflating {
		c.conflating = false
		clear(c.slots)
	}
	skipped, c.skipped = c.skipped, 0
	return batch, skipped, c.final
}

func (c *client) recycle(batch []*message) {
	clear(batch)
	if cap(batch) > 4096 {
		return // a burst's huge slice is not worth keeping per connection
	}
	c.mu.Lock()
	if c.spare == nil {
		c.spare = batch[:0]
	}
	c.mu.Unlock()
}

func (c *client) writeLoop() {
	defer close(c.writerDone)
	cork, _ := c.netConn.(*corkConn)
	for range c.wake {
		batch, skipped, final := c.take()
		corked := cork != nil && len(batch) > 1
		if corked {
			cork.cork()
		}
		if skipped > 0 && !c.write(encodeConflated(skipped)) {
			return
		}
		sent, firstRecv := 0, int64(0)
		for _, m := range batch {
			if m == nil {
				continue // conflated
			}
			if c.dropping.Load() {
				break
			}
			if !c.write(m.data) {
				c.s.m.sent.Add(float64(sent))
				return
			}
			sent++
			if firstRecv == 0 {
				firstRecv = m.recvUS
			}
		}
		if corked {
			if err := cork.uncork(); err != nil {
				c.closeWith(&closeInfo{label: "write_error", silent: true})
				return
			}
		}
		if firstRecv != 0 {
			c.s.m.latency.Observe(float64(c.s.now()/1e3-firstRecv) / 1e6)
		}
		c.s.m.sent.Add(float64(sent))
		c.recycle(batch)
		if final != nil {
			c.finish(final)
			return
		}
	}
}

// write sends one frame. No deadline here: a stuck write is ended by the
// kill timer once the client is closed as too slow or unresponsive to
// pings; a per-write timer would cost more than the write on this path.
func (c *client) write(data []byte) bool {
	if err := c.ws.Write(context.Background(), websocket.MessageText, data); err != nil {
		c.closeWith(&closeInfo{label: "write_error", silent: true})
		return false
	}
	return true
}

func (c *client) finish(ci *closeInfo) {
	if ci.silent {
		return
	}
	if ci.code != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.WriteTimeout)
		_ = c.ws.Write(ctx, websocket.MessageText, encodeError(ci.code, ci.msg))
		cancel()
	}
	_ = c.ws.Close(ci.status, ci.reason)
}

// serve runs the connection until it ends and returns why it ended.
func (c *client) serve() string {
	go c.writeLoop()
	c.mu.Lock()
	c.pingTimer = time.AfterFunc(c.s.cfg.PingInterval, c.ping)
	c.mu.Unlock()
	err := c.readLoop()
	c.closeWith(readEnd(err))
	<-c.writerDone
	c.kill()
	c.mu.Lock()
	c.pingTimer.Stop()
	if c.killTimer != nil {
		c.killTimer.Stop()
	}
	label := c.final.label
	c.mu.Unlock()
	keys := make([]subKey, 0, len(c.subs))
	for k := range c.subs {
		keys = append(keys, k)
	}
	c.s.hub.unsubscribe(c, keys)
	return label
}

// readEnd classifies why the reader stopped, when nothing else closed the
// connection first.
func readEnd(err error) *closeInfo {
	if websocket.CloseStatus(err) != -1 {
		return &closeInfo{label: "client_closed", silent: true}
	}
	return &closeInfo{label: "read_error", silent: true}
}

// ping checks the peer is alive; Real time, like the kill timer: it paces
// network I/O.
func (c *client) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.final != nil:
	case err != nil:
		c.closeLocked(&closeInfo{label: "ping_timeout", silent: true})
	default:
		c.pingTimer.Reset(c.s.cfg.PingInterval)
	}
}

// readLoop handles requests until the connection fails or a request breaks
// a limit that closes it (then it returns nil with the close under way).
func (c *client) readLoop() error {
	max := c.s.cfg.Limits.MaxMessageBytes
	// Our own limit below stops at max+1 bytes so the client gets an error
	// frame first; the library's limit is a backstop past it.
	c.ws.SetReadLimit(int64(max) + 1)
	for {
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			c.fail(codeBinary, "binary frames are not supported; send JSON text", websocket.StatusUnsupportedData, "binary frames not supported")
			return nil
		}
		b, err := readAtMost(r, c.buf[:0], max+1)
		c.buf = b
		if err != nil {
			return err
		}
		if len(b) > max {
			c.fail(codeTooBig, fmt.Sprintf("message larger than %d bytes", max), websocket.StatusMessageTooBig, "message too big")
			return nil
		}
		if !c.bucket.allow(c.s.now()) {
			c.fail(codeRateLimited, fmt.Sprintf("more than %g messages per second", c.s.cfg.Limits.MaxMessagesPerSecond),
				websocket.StatusPolicyViolation, "message rate exceeded")
			return nil
		}
		c.handle(b)
	}
}

// readAtMost reads r into b until EOF or until b holds limit bytes.
func readAtMost(r io.Reader, b []byte, limit int) ([]byte, error) {
	for len(b) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

func (c *client) fail(code, msg string, status websocket.StatusCode, reason string) {
	c.s.m.clientErrors.WithLabelValues(code).Inc()
	c.closeWith(&closeInfo{status: status, code: code, msg: msg, reason: reason, label: code, flush: true})
}

func (c *client) sendError(e *protoError) {
	c.s.m.clientErrors.WithLabelValues(e.code).Inc()
	c.enqueueControl(encodeError(e.code, e.msg))
}

func (c *client) handle(b []byte) {
	var req request
	if err := json.Unmarshal(b, &req); err != nil {
		c.sendError(perr(codeBadJSON, "not a valid request: %v", err))
		return
	}
	switch req.Type {
	case "ping":
		c.enqueueControl(pongFrame)
	case "subscribe":
		c.subscribe(&req)
	case "unsubscribe":
		c.unsubscribe(&req)
	case "":
		c.sendError(perr(codeUnknownType, `missing "type" (subscribe, unsubscribe or ping)`))
	default:
		c.sendError(perr(codeUnknownType, "unknown type %q (known: subscribe, unsubscribe, ping)", truncate(req.Type, 32)))
	}
}

func (c *client) subscribe(req *request) {
	limit := c.s.cfg.Limits.MaxSubscriptions
	f, pe := parseFilter(req, limit)
	if pe != nil {
		c.sendError(pe)
		return
	}
	var added []subKey
	for _, k := range f.keys() {
		if _, ok := c.subs[k]; !ok {
			added = append(added, k)
		}
	}
	if n := len(c.subs) + len(added); n > limit {
		c.sendError(perr(codeTooManySubs, "this would make %d subscriptions; the limit per connection is %d", n, limit))
		return
	}
	var since map[int32]int64
	if req.Since != nil {
		if since, pe = parsePosition(req.Since); pe != nil {
			c.sendError(pe)
			return
		}
	}
	// A resume is checked against the broker before the client is
	// subscribed, so a refusal is a plain subscribe with its reason and
	// nothing is held meanwhile.
	var plan *recoveryPlan
	var refusal *recoveryResult
	if since != nil {
		plan, refusal = c.s.planRecovery(req.Since.Epoch, since)
	}
	var seed []*message
	if f.hasChannel(chTick) {
		seed = c.s.cacheSeed()
	}
	now := c.s.now()
	epoch := c.s.epoch()
	var snapshot []*message
	var seams, to, through map[int32]int64
	c.s.hub.subscribe(c, added, &f, seed, func(snap []*message, sm map[int32]int64) {
		for _, k := range added {
			c.subs[k] = struct{}{}
		}
		if plan == nil {
			reply := subscribedMsg{Type: "subscribed", Subscriptions: len(c.subs), Snapshot: len(snap), Position: encodePosition(epoch, sm)}
			if refusal != nil {
				no := false
				reply.Recovered, reply.Recovery = &no, &recovery{Reason: refusal.reason, Lost: refusal.lost}
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.queueLocked(&message{data: encodeReply(reply, &f), ch: chControl}, now)
			for _, m := range snap {
				c.queueLocked(m, now)
			}
			return
		}
		// Resuming: live messages wait until the missed ticks are read,
		// and from now on a live tick the replay will hold is dropped, so
		// what waits is only what comes after it.
		snapshot, seams = snap, sm
		to, through = plan.recoverRange(sm)
		c.mu.Lock()
		c.holding = true
		c.raiseThroughLocked(through)
		c.mu.Unlock()
	})
	if plan == nil {
		return
	}
	res := c.s.readRecovery(plan, &f, to, through)
	c.resume(&f, res, snapshot, seams)
}

// raiseThroughLocked makes live ticks at or below through duplicates.
func (c *client) raiseThroughLocked(through map[int32]int64) {
	for p, o := range through {
		if c.through == nil {
			c.through = map[int32]int64{}
		}
		if old, ok := c.through[p]; !ok || o > old {
			c.through[p] = o
		}
	}
}

// resume ends a recovery: the reply, then the missed ticks (or, when
// they could not be replayed, the snapshot), then what the hub sent
// meanwhile, less what the recovery already had.
func (c *client) resume(f *filter, res *recoveryResult, snapshot []*message, seams map[int32]int64) {
	now := c.s.now()
	ok := res.reason == ""
	reply := subscribedMsg{Type: "subscribed", Subscriptions: len(c.subs), Recovered: &ok, Recovery: &recovery{
		Ticks: len(res.ticks), Reason: res.reason, Lost: res.lost,
	}}
	pos := maps.Clone(seams)
	if pos == nil {
		pos = map[int32]int64{}
	}
	for p, o := range res.through {
		pos[p] = max(pos[p], o)
	}
	if !ok {
		reply.Snapshot = len(snapshot)
		reply.Position = encodePosition(c.s.epoch(), pos)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.held
	c.holding, c.held, c.heldBytes = false, nil, 0
	c.enqueueLocked(&message{data: encodeReply(reply, f), ch: chControl}, now)
	if ok {
		// Missed ticks are not conflated and not counted against the
		// queue bound: they are bounded by max_recovery_bytes instead, and
		// the writer takes them in one go.
		if c.final == nil && len(res.ticks) > 0 {
			if len(c.queue) == 0 {
				c.headAt = now
			}
			c.queue = append(c.queue, res.ticks...)
			c.signal()
		}
		// The position goes after the missed ticks, in a frame of its
		// own: a client that applied it before reading them, and lost the
		// connection meanwhile, would skip them.
		c.enqueueLocked(&message{data: encodePositionFrame(encodePosition(c.s.epoch(), pos)), ch: chControl}, now)
	} else {
		for _, m := range snapshot {
			c.queueLocked(m, now)
		}
	}
	for _, m := range held {
		c.enqueueLocked(m, now)
	}
}

func (c *client) unsubscribe(req *request) {
	f, pe := parseFilter(req, c.s.cfg.Limits.MaxSubscriptions)
	if pe != nil {
		c.sendError(pe)
		return
	}
	var removed []subKey
	for _, k := range f.keys() {
		if _, ok := c.subs[k]; ok {
			removed = append(removed, k)
			delete(c.subs, k)
		}
	}
	c.s.hub.unsubscribe(c, removed)
	c.enqueueControl(encodeSubscribed("unsubscribed", &f, len(c.subs), 0))
}

// bucket is a token bucket over the client's messages.
type bucket struct {
	tokens, burst, perNS float64
	last                 int64
}

func newBucket(perSecond float64, burst int, now int64) bucket {
	return bucket{tokens: float64(burst), burst: float64(burst), perNS: perSecond / 1e9, last: now}
}

func (b *bucket) allow(now int64) bool {
	if now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)*b.perNS)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
