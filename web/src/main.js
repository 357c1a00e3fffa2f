// tickflow's live page: a table of every pair, candlesticks of the selected
// one (history from the REST API, then live ticks) with its alerts and
// signals marked, and a panel of alerts and signals, all fed by the push
// sink's WebSocket.
import { createChart, createSeriesMarkers, CandlestickSeries, HistogramSeries } from 'lightweight-charts';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;
const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;
const MAX_EVENTS = 100;
const STALE_AFTER_MS = 30000;

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const noticeEl = $('notice');
const tbody = document.querySelector('#pairs tbody');

// rows: "exchange:symbol" -> {tr, cells, tick}
const rows = new Map();
let selected = null;
let ws = null;
let attempt = 0;
let lastMessageAt = 0;
const counters = { ticks: 0, reconnects: 0 };

// ---- status -------------------------------------------------------------

function setStatus(kind, text) {
  statusEl.className = 'status ' + kind;
  statusEl.textContent = text;
}

function setNotice(text) {
  noticeEl.textContent = text;
}

// ---- table --------------------------------------------------------------

function fmtChange(t) {
  const open = Number(t.open_24h);
  const price = Number(t.price);
  if (!t.open_24h || !open) return { text: '—', cls: '' };
  // Display only: the exact decimals stay strings everywhere else.
  const pct = ((price - open) / open) * 100;
  return { text: (pct >= 0 ? '+' : '') + pct.toFixed(2) + '%', cls: pct > 0 ? 'up' : pct < 0 ? 'down' : '' };
}

function fmtAge(ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return (ms / 1000).toFixed(1) + 's';
  if (ms < 60000) return Math.floor(ms / 1000) + 's';
  if (ms < 3600000) return Math.floor(ms / 60000) + 'm';
  return Math.floor(ms / 3600000) + 'h';
}

function flash(td, dir) {
  td.classList.remove('flash-up', 'flash-down');
  // Restart the animation on every tick in the same direction.
  void td.offsetWidth;
  td.classList.add(dir > 0 ? 'flash-up' : 'flash-down');
}

function rowFor(t) {
  const key = t.exchange + ':' + t.symbol;
  let row = rows.get(key);
  if (row) return row;
  const tr = document.createElement('tr');
  tr.dataset.key = key;
  const cells = {};
  for (const name of ['exchange', 'symbol', 'price', 'bid', 'ask', 'change', 'age']) {
    const td = document.createElement('td');
    td.dataset.col = name;
    if (!['exchange', 'symbol'].includes(name)) td.className = 'num';
    tr.appendChild(td);
    cells[name] = td;
  }
  cells.exchange.textContent = t.exchange;
  cells.symbol.textContent = t.symbol;
  tr.addEventListener('click', () => select(key));
  row = { tr, cells, tick: null };
  rows.set(key, row);
  // Keep the table sorted by exchange, then symbol.
  const after = [...rows.keys()].sort().indexOf(key);
  const next = tbody.children[after];
  tbody.insertBefore(tr, next || null);
  $('empty').hidden = true;
  return row;
}

function onTick(t) {
  counters.ticks++;
  const row = rowFor(t);
  const prev = row.tick;
  // A replayed or snapshot tick older than the one shown is not news.
  if (prev && t.timestamp < prev.timestamp) return;
  row.tick = t;
  const c = row.cells;
  const dir = prev ? Math.sign(Number(t.price) - Number(prev.price)) : 0;
  c.price.textContent = t.price;
  c.price.classList.toggle('up', dir > 0);
  c.price.classList.toggle('down', dir < 0);
  if (dir !== 0) flash(c.price, dir);
  c.bid.textContent = t.bid;
  c.ask.textContent = t.ask;
  const ch = fmtChange(t);
  c.change.textContent = ch.text;
  c.change.className = 'num ' + ch.cls;
  updateAge(row);
  if (selected === null) select(t.exchange + ':' + t.symbol);
  if (selected === t.exchange + ':' + t.symbol) chartTick(t);
}

function updateAge(row) {
  const age = Date.now() - row.tick.timestamp;
  row.cells.age.textContent = fmtAge(age);
  row.cells.age.classList.toggle('stale', age > STALE_AFTER_MS);
}

setInterval(() => {
  for (const row of rows.values()) if (row.tick) updateAge(row);
}, 1000);

// ---- chart --------------------------------------------------------------
// Candlesticks of the selected pair at the chosen interval, loaded from
// GET /api/v1/candles (recent buckets from the cache, older ones from the
// store) and moved on by the pushed ticks. Under them, the traded volume
// per bucket when the candles carry it (summed from the trade stream by
// the cache and the store), refreshed from the API every VOLUME_REFRESH_MS
// since the pushed ticks carry none; otherwise the number of ticks per
// bucket, labelled as activity: a ticker's volume is a rolling 24 h
// figure, so no per-bucket volume can be made from it, and a feed without
// trades is not shown a volume of 0.

const INTERVALS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '1d': 86400 };
const UP = '#1fbf75';
const DOWN = '#f0485b';

const chart = createChart($('chart'), {
  autoSize: true,
  layout: { background: { color: 'transparent' }, textColor: '#9aa7b5', panes: { separatorColor: '#26303c' } },
  grid: { vertLines: { color: '#202833' }, horzLines: { color: '#202833' } },
  timeScale: { timeVisible: true, secondsVisible: false },
  rightPriceScale: { borderColor: '#26303c' },
});
const series = chart.addSeries(CandlestickSeries, {
  upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
});
const lower = chart.addSeries(HistogramSeries, {
  color: '#3a4a5c', priceFormat: { type: 'volume' }, title: 'ticks', lastValueVisible: false,
}, 1);
const VOLUME_REFRESH_MS = 5000;
// lowerMode: 'volume' when a loaded candle carries traded volume, else
// 'ticks'.
let lowerMode = 'ticks';
const LOWER_LEGEND = {
  volume: 'Lower pane: traded volume per bucket (sum of trade sizes, in the base asset); a bucket without counted trades is left blank.',
  ticks: 'Lower pane: ticks per bucket — how many price updates the exchange sent (activity), not traded volume (no trades counted for this pair).',
};
chart.panes()[1].setHeight(90);
const markerLayer = createSeriesMarkers(series, []);

let interval = '1m';
// candles: ascending by time; each {time (s), open, high, low, close} as
// exact strings from the API or the ticks, ticks a count, and volume (an
// exact string) and trades when the API counted trades for the bucket.
let candles = [];
let lastTickTs = 0; // event time (ms) of the newest tick drawn
let lastTickTime = null; // its second, for chartLast
let chartUpdates = 0; // candles loaded plus live ticks drawn since
let chartReady = false; // history loaded for the selected pair
let pending = []; // live ticks that arrived while history was loading
let loadSeq = 0;
let source = ''; // which layer answered the history

// Display only: the exact decimals stay strings in `candles`.
const bar = (c) => ({ time: c.time, open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close) });
const barColor = (c) => (Number(c.close) >= Number(c.open) ? '#1f5f45' : '#6b2a33');
// In volume mode a bucket without counted trades is whitespace, not 0.
const lowerBar = (c) => {
  if (lowerMode === 'ticks') return { time: c.time, value: c.ticks, color: barColor(c) };
  if (c.volume === undefined) return { time: c.time };
  return { time: c.time, value: Number(c.volume), color: barColor(c) };
};

function setLowerMode() {
  lowerMode = candles.some((c) => c.volume !== undefined) ? 'volume' : 'ticks';
  lower.applyOptions({ title: lowerMode === 'volume' ? 'volume' : 'ticks' });
  $('lower-legend').textContent = LOWER_LEGEND[lowerMode];
}
const bucketOf = (ms) => Math.floor(ms / 1000 / INTERVALS[interval]) * INTERVALS[interval];
const above = (a, b) => Number(a) > Number(b);

function drawAll() {
  setLowerMode();
  series.setData(candles.map(bar));
  lower.setData(candles.map(lowerBar));
  drawMarkers();
}

function drawLast() {
  const c = candles[candles.length - 1];
  series.update(bar(c));
  lower.update(lowerBar(c));
}

function chartTick(t) {
  $('chart-price').textContent = t.price;
  if (!chartReady) {
    pending.push(t);
    return;
  }
  applyTick(t);
}

// The identities of the ticks drawn into the newest candle.
let liveSeen = new Set();

// applyTick moves the newest candle on, or opens the next one. A tick for
// an older bucket than the newest is left to the next reload: the chart
// library redraws only its last bar live.
function applyTick(t) {
  const time = bucketOf(t.timestamp);
  const last = candles[candles.length - 1];
  if (last && time < last.time) return;
  // A tick sent again (the snapshot after a reconnect, a resumed feed) is
  // the same event and receive time: counted once, like the API does.
  const id = t.timestamp + ':' + t.received_at_us;
  if (last && time === last.time && liveSeen.has(id)) return;
  if (!last || time > last.time) {
    candles.push({ time, open: t.price, high: t.price, low: t.price, close: t.price, ticks: 1 });
    liveSeen = new Set();
  } else {
    if (above(t.price, last.high)) last.high = t.price;
    if (above(last.low, t.price)) last.low = t.price;
    if (t.timestamp >= lastTickTs) last.close = t.price;
    last.ticks++;
  }
  liveSeen.add(id);
  if (t.timestamp >= lastTickTs) {
    lastTickTs = t.timestamp;
    lastTickTime = Math.floor(t.timestamp / 1000);
  }
  chartUpdates++;
  drawLast();
  drawMarkers();
}

async function fetchData(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!body.success) throw new Error(body.error ? body.error.message : res.statusText);
  return { data: body.data, source: res.headers.get('X-Tickflow-Source') || '' };
}

const candleOf = (k) => {
  const c = { time: k.start / 1000, open: k.open, high: k.high, low: k.low, close: k.close, ticks: k.ticks };
  if (k.volume !== undefined) {
    c.volume = k.volume;
    c.trades = k.trades;
  }
  return c;
};

// refreshVolume takes the newest buckets' volume from the API again: the
// pushed ticks move the prices on, but only the trade stream, summed by
// the cache, moves the volume. Prices and tick counts stay the page's.
async function refreshVolume() {
  if (!chartReady || lowerMode !== 'volume' || !selected || candles.length === 0) return;
  const [exchange, symbol] = selected.split(':');
  const seq = loadSeq;
  const from = candles[Math.max(0, candles.length - 3)].time * 1000;
  let r;
  try {
    r = await fetchData(`/api/v1/candles/${encodeURIComponent(exchange)}/${encodeURIComponent(symbol)}?interval=${interval}&from=${from}`);
  } catch (e) {
    return; // the next refresh or reload tries again
  }
  if (seq !== loadSeq || !chartReady) return;
  const byTime = new Map(r.data.candles.map((k) => [k.start / 1000, k]));
  let changed = false;
  for (const c of candles) {
    const k = byTime.get(c.time);
    if (k && k.volume !== undefined && (k.volume !== c.volume || k.trades !== c.trades)) {
      c.volume = k.volume;
      c.trades = k.trades;
      changed = true;
    }
  }
  if (changed) lower.setData(candles.map(lowerBar));
}
setInterval(refreshVolume, VOLUME_REFRESH_MS);

async function loadChart() {
  const [exchange, symbol] = selected.split(':');
  chartReady = false;
  const seq = ++loadSeq;
  let loaded = [];
  let note = '';
  try {
    const r = await fetchData(`/api/v1/candles/${encodeURIComponent(exchange)}/${encodeURIComponent(symbol)}?interval=${interval}`);
    loaded = r.data.candles.map(candleOf);
    source = r.source;
    note = `history: ${r.source}` + (r.data.partial ? ' (partial: ' + r.data.unavailable.map((u) => u.layer).join(', ') + ' down)' : '');
  } catch (e) {
    source = '';
    note = 'no history: ' + e.message;
  }
  if (seq !== loadSeq) return; // another pair or interval was chosen meanwhile
  $('chart-note').textContent = note;
  candles = loaded;
  liveSeen = new Set();
  chartUpdates = loaded.length;
  lastTickTs = 0;
  lastTickTime = loaded.length ? loaded[loaded.length - 1].time : null;
  drawAll();
  chart.timeScale().fitContent();
  chartReady = true;
  // Ticks that came while loading: one in a bucket the history has is
  // taken to be in it already (the cache is written from the same stream),
  // so it is not counted twice; one in a newer bucket cannot be, and is
  // drawn. A tick pushed after this that the cache had already counted
  // still counts again in the live bucket until the next reload: the
  // history has no tick identities to tell.
  const newest = loaded.length ? loaded[loaded.length - 1].time : -Infinity;
  const early = pending.filter((t) => bucketOf(t.timestamp) > newest).sort((a, b) => a.timestamp - b.timestamp);
  pending = [];
  for (const t of early) applyTick(t);
}

async function select(key) {
  if (selected === key) return;
  if (selected && rows.get(selected)) rows.get(selected).tr.classList.remove('selected');
  selected = key;
  const row = rows.get(key);
  if (row) row.tr.classList.add('selected');
  const [exchange, symbol] = key.split(':');
  $('chart-title').textContent = exchange + ' · ' + symbol;
  $('chart-price').textContent = row && row.tick ? row.tick.price : '';
  pending = [];
  candles = [];
  drawAll();
  await Promise.all([loadChart(), loadMarkers(key)]);
}

function setChartInterval(name) {
  if (!(name in INTERVALS)) throw new Error('unknown interval ' + name);
  interval = name;
  for (const b of document.querySelectorAll('#intervals button')) b.classList.toggle('active', b.dataset.iv === name);
  pending = [];
  if (selected) return loadChart();
  return Promise.resolve();
}

for (const name of Object.keys(INTERVALS)) {
  const b = document.createElement('button');
  b.type = 'button';
  b.dataset.iv = name;
  b.textContent = name;
  b.classList.toggle('active', name === interval);
  b.addEventListener('click', () => setChartInterval(name));
  $('intervals').append(b);
}

// ---- markers --------------------------------------------------------------
// Alerts and signals of the selected pair on its candles: what the REST
// lists hold when the pair is chosen, then what the push feed brings.

const MARKER_LIMIT = 200;
// markers: "exchange:symbol" -> Map(id -> {timestamp, kind, ...})
const markers = new Map();

function rememberMarker(kind, data) {
  if (!data || !data.exchange || !data.symbol || !data.timestamp) return;
  const key = data.exchange + ':' + data.symbol;
  let m = markers.get(key);
  if (!m) markers.set(key, (m = new Map()));
  const id = kind + ':' + (data.id || data.timestamp);
  m.set(id, { kind, timestamp: data.timestamp, side: data.side, severity: data.severity, rule: data.rule, status: data.status });
  if (m.size > MARKER_LIMIT) m.delete(m.keys().next().value);
}

async function loadMarkers(key) {
  const [exchange, symbol] = key.split(':');
  const lists = await Promise.allSettled([fetchData(`/api/v1/alerts?limit=${MARKER_LIMIT}`), fetchData(`/api/v1/signals?limit=${MARKER_LIMIT}`)]);
  lists.forEach((r, i) => {
    if (r.status !== 'fulfilled') return; // not followed here: no markers of that kind
    for (const d of r.value.data) if (d.exchange === exchange && d.symbol === symbol) rememberMarker(i === 0 ? 'alert' : 'signal', d);
  });
  if (selected === key) drawMarkers();
}

function markerOf(m) {
  const time = bucketOf(m.timestamp);
  if (m.kind === 'signal') {
    const buy = m.side === 'buy';
    return { time, position: buy ? 'belowBar' : 'aboveBar', shape: buy ? 'arrowUp' : 'arrowDown', color: buy ? UP : DOWN, text: buy ? 'BUY' : 'SELL' };
  }
  const color = m.status === 'resolved' ? '#7d8a99' : m.severity === 'critical' ? DOWN : '#e8a93b';
  return { time, position: 'aboveBar', shape: 'circle', color, text: m.rule || 'alert' };
}

function drawMarkers() {
  const m = selected && markers.get(selected);
  const first = candles.length ? candles[0].time : Infinity;
  // Only markers within the drawn candles: the library would pin others
  // to the nearest bar, misplacing them.
  const list = m ? [...m.values()].map(markerOf).filter((x) => x.time >= first && candles.length && x.time <= candles[candles.length - 1].time) : [];
  list.sort((a, b) => a.time - b.time);
  markerLayer.setMarkers(list);
}

// ---- alerts and signals -------------------------------------------------

function onEvent(type, key, data) {
  if (type === 'alert' || type === 'signal') {
    rememberMarker(type, data);
    drawMarkers();
  }
  $('no-events').hidden = true;
  const li = document.createElement('li');
  li.className = type + (data && data.severity ? ' ' + data.severity : '');
  const meta = document.createElement('span');
  meta.className = 'meta';
  const when = data && data.timestamp ? new Date(data.timestamp).toLocaleTimeString() : new Date().toLocaleTimeString();
  meta.textContent = `${type} · ${key || ''} · ${when}`;
  const text = document.createElement('span');
  if (type === 'alert') {
    text.textContent = `${data.status === 'resolved' ? 'resolved: ' : ''}[${data.severity || '?'}] ${data.rule || ''} — ${data.message || ''}`;
  } else if (type === 'signal') {
    text.textContent = `${(data.side || '').toUpperCase()} ${data.symbol || ''} @ ${data.price || '?'} (${data.strategy || ''}) ${data.reason || ''}`;
  } else {
    text.textContent = JSON.stringify(data);
  }
  li.append(meta, text);
  const list = $('events');
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// ---- gaps -----------------------------------------------------------------
// Gaps in the ingested data (a dropped connection, a sequence jump), from
// GET /api/v1/gaps: polled, since gaps are rare and not on the push feed.

const GAPS_EVERY_MS = 10000;
const MAX_GAPS = 10;

function secs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

async function refreshGaps() {
  try {
    const res = await fetch(`/api/v1/gaps?limit=${MAX_GAPS}`);
    const body = await res.json();
    if (!body.success) return;
    const list = $('gaps');
    list.replaceChildren();
    for (const g of body.data) {
      const li = document.createElement('li');
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = `${g.exchange}:${g.symbol} · ${new Date(g.to).toLocaleTimeString()}`;
      const text = document.createElement('span');
      const what = g.reason === 'sequence' ? `${g.channel} ${g.cause} ${g.from_seq}→${g.to_seq}` : `reconnect (${g.cause || '?'})`;
      text.textContent = `${secs(g.to - g.from)} missing: ${what}`;
      li.append(meta, text);
      list.append(li);
    }
    $('no-gaps').hidden = body.data.length > 0;
  } catch (e) {
    // The API is down: the status line already says so.
  }
}

// ---- connection ---------------------------------------------------------

async function pushURL() {
  try {
    const res = await fetch('/api/v1/push');
    const body = await res.json();
    if (body.success && body.data.url) return body.data.url;
    setNotice(body.error ? body.error.message : 'live feed not configured');
  } catch (e) {
    setNotice('cannot ask the API for the live feed: ' + e.message);
  }
  return null;
}

function backoff() {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  return Math.round(base / 2 + Math.random() * base / 2);
}

function scheduleReconnect(why) {
  const wait = backoff();
  attempt++;
  counters.reconnects++;
  let left = Math.ceil(wait / 1000);
  const tick = () => setStatus('reconnecting', `${why} — reconnecting in ${left}s`);
  tick();
  const iv = setInterval(() => { left--; if (left > 0) tick(); }, 1000);
  setTimeout(() => { clearInterval(iv); connect(); }, wait);
}

// Where the feed is up to, kept across reconnects so the server can replay
// what was missed: {epoch, offsets: {partition: offset}}, advanced by every
// tick and by the server's "position" (see sinks/push/protocol.go).
let resume = null;

function advance(pos) {
  if (!pos) return;
  if (!resume || resume.epoch !== pos.epoch) resume = { epoch: pos.epoch, offsets: {} };
  for (const [p, o] of Object.entries(pos.offsets)) {
    if (!(p in resume.offsets) || o > resume.offsets[p]) resume.offsets[p] = o;
  }
}

async function connect() {
  setStatus('connecting', attempt ? `reconnecting (attempt ${attempt + 1})…` : 'connecting…');
  const url = await pushURL();
  if (!url) {
    scheduleReconnect('live feed unavailable');
    return;
  }
  let sock;
  try {
    sock = new WebSocket(url);
  } catch (e) {
    scheduleReconnect('bad live feed URL');
    return;
  }
  ws = sock;
  let pinger = null;
  sock.onopen = () => {
    attempt = 0;
    setStatus('live', 'live');
    setNotice('');
    lastMessageAt = Date.now();
    sock.send(JSON.stringify(resume ? { type: 'subscribe', since: resume } : { type: 'subscribe' }));
    // The server pings too, but a browser cannot see those; this catches
    // a connection that died without a close.
    pinger = setInterval(() => {
      if (Date.now() - lastMessageAt > PING_EVERY_MS + PONG_WITHIN_MS) {
        sock.close(4000, 'no answer');
        return;
      }
      sock.send('{"type":"ping"}');
    }, PING_EVERY_MS);
  };
  sock.onmessage = (ev) => {
    lastMessageAt = Date.now();
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    switch (m.type) {
      case 'tick':
        if (m.part !== undefined && resume) {
          const k = String(m.part);
          if (!(k in resume.offsets) || m.off > resume.offsets[k]) resume.offsets[k] = m.off;
        }
        onTick(m.data);
        break;
      case 'subscribed':
        advance(m.position);
        if (m.recovered === false) {
          setNotice(`reconnected with a gap: some updates were missed (${m.recovery.reason})`);
        }
        break;
      case 'position':
        advance(m.position);
        break;
      case 'alert':
      case 'signal':
        onEvent(m.type, m.key, m.data);
        break;
      case 'conflated':
        setNotice(`slow connection: ${m.skipped} updates skipped`);
        break;
      case 'error':
        setNotice(`server: ${m.code}: ${m.message}`);
        break;
    }
  };
  sock.onclose = (ev) => {
    clearInterval(pinger);
    if (ws !== sock) return;
    ws = null;
    const why = ev.reason ? `disconnected (${ev.reason})` : 'disconnected';
    scheduleReconnect(why);
  };
}

// For tests and the curious: what the page shows, without scraping.
window.tickflow = {
  status: () => ({ kind: statusEl.className.replace('status ', ''), text: statusEl.textContent }),
  price: (key) => (rows.get(key) && rows.get(key).cells.price.textContent) || null,
  selected: () => selected,
  select,
  // chartPoints: updates the chart drew (candles loaded, then live ticks);
  // chartLast: the newest price drawn, at the second of its tick.
  chartPoints: () => chartUpdates,
  chartLast: () => (candles.length ? { time: lastTickTime, value: Number(candles[candles.length - 1].close) } : null),
  // The candles as drawn, exact decimals as strings; which interval, and
  // which layer answered the history.
  candles: () => candles.map((c) => ({ ...c })),
  interval: () => interval,
  setInterval: setChartInterval,
  historySource: () => source,
  ready: () => chartReady,
  // The lower pane: 'volume' or 'ticks', and its bar for each candle as
  // drawn (no value for a bucket without counted trades in volume mode).
  lowerMode: () => lowerMode,
  lowerBars: () => {
    const drawn = new Map(lower.data().map((d) => [d.time, d.value]));
    return candles.map((c) => ({ time: c.time, value: drawn.get(c.time) }));
  },
  markers: () => markerLayer.markers().map((m) => ({ ...m })),
  counters,
  disconnect: () => ws && ws.close(4001, 'test'),
  // forget drops the resume position, so the next connect gets a snapshot.
  forget: () => { resume = null; },
  gaps: () => document.querySelectorAll('#gaps li').length,
  refreshGaps,
};

connect();
refreshGaps();
setInterval(refreshGaps, GAPS_EVERY_MS);
