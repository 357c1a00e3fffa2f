// tickflow's live page: a table of every pair, candlesticks of the selected
// one (history from the REST API, then live ticks) with its alerts and
// signals marked, its trades, best bid/ask and price on every exchange, and
// a panel of alerts and signals, all fed by the push sink's WebSocket.
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
  marketTick(t);
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
  selectMarket(key);
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

// ---- market: trades, best bid/ask, across exchanges ----------------------
// The selected pair's trades (on selection from REST: the API's recent list
// and the store's history; then the push feed's trade channel), its best
// bid/ask (the quote channel when the exchange publishes quotes, else the
// tick's), and the newest tick of its instrument (base-quote) on every
// exchange, from GET /api/v1/instruments/:instrument/ticks and moved on by
// the pushed ticks. Prices and sizes are shown as the strings received.

const MAX_TRADES = 50;
const CROSS_EVERY_MS = 5000;

let market = null; // the selected pair: {key, exchange, symbol}
let marketSeq = 0; // bumped on every selection; late answers for an older one are dropped
// trades: the selected pair's newest, newest first, at most MAX_TRADES, one
// per trade id (a trade can come by REST and by push, or twice by push).
let trades = [];
let tradeIds = new Set();
let tradesDirty = false;
let quote = null; // the selected pair's newest quote
let crossInstrument = null; // "BTC-USDT", or null when the pair's symbol did not resolve
let cross = new Map(); // exchange -> newest tick of crossInstrument there
let crossNote = '';
const marketCounters = { subscribed: 0, following: '', trades: 0, otherTrades: 0, duplicateTrades: 0, quotes: 0 };

const enc = encodeURIComponent;

// apiData answers the data of a success envelope, or throws its error.
async function apiData(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!body.success) throw new Error(body.error ? body.error.message : res.statusText);
  return body.data;
}

function sendMarket(type) {
  if (!market || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type, channels: ['trade', 'quote'], exchanges: [market.exchange], symbols: [market.symbol] }));
}

// selectMarket follows the newly selected pair: its trades and quotes on
// the push feed instead of the previous pair's, its history from REST.
function selectMarket(key) {
  if (market && market.key === key) return;
  sendMarket('unsubscribe');
  const [exchange, symbol] = key.split(':');
  market = { key, exchange, symbol };
  marketSeq++;
  trades = [];
  tradeIds = new Set();
  quote = null;
  $('market-title').textContent = exchange + ' · ' + symbol;
  drawTrades();
  drawQuote();
  sendMarket('subscribe');
  loadTrades();
  loadQuote();
  const row = rows.get(key);
  setInstrument(row && row.tick ? instrumentOf(row.tick) : null);
  drawCross(); // the same instrument: another row is the selected one now
}

// marketResubscribe runs on every (re)connect: the trade and quote channels
// have no resume, so what was missed meanwhile comes from REST again (the
// trade ids keep it from showing twice).
function marketResubscribe() {
  if (!market) return;
  sendMarket('subscribe');
  loadTrades();
  loadQuote();
}

// tradeBefore orders trades newest first: by trade time, then receive time.
const tradeBefore = (a, b) => b.timestamp - a.timestamp || (b.received_at_us || 0) - (a.received_at_us || 0);

// addTrade keeps t if it is new and among the newest MAX_TRADES. Among
// trades of the same times the one added later is taken as the newer.
function addTrade(t) {
  const id = t.trade_id || t.timestamp + ':' + t.price + ':' + t.size;
  if (tradeIds.has(id)) {
    marketCounters.duplicateTrades++;
    return;
  }
  let i = 0;
  while (i < trades.length && tradeBefore(trades[i], t) < 0) i++;
  if (i >= MAX_TRADES) return; // older than every trade shown
  trades.splice(i, 0, { ...t, id });
  tradeIds.add(id);
  while (trades.length > MAX_TRADES) tradeIds.delete(trades.pop().id);
  if (!tradesDirty) {
    tradesDirty = true;
    requestAnimationFrame(drawTrades);
  }
}

// marketSubscribed notes the server's confirmations of the trade and
// quote subscriptions: how many, and the pair of the latest.
function marketSubscribed(m) {
  if (!m.channels || !m.channels.includes('trade')) return;
  marketCounters.subscribed++;
  marketCounters.following = (m.exchanges || []).join(',') + ':' + (m.symbols || []).join(',');
}

function onTrade(t) {
  marketCounters.trades++;
  if (!t || !market || t.exchange + ':' + t.symbol !== market.key) {
    marketCounters.otherTrades++; // sent before an unsubscribe took effect
    return;
  }
  addTrade(t);
}

async function loadTrades() {
  const seq = marketSeq;
  const path = `${enc(market.exchange)}/${enc(market.symbol)}`;
  const [recent, stored] = await Promise.allSettled([
    apiData(`/api/v1/trades/${path}?limit=${MAX_TRADES}`),
    apiData(`/api/v1/trades/${path}/history?limit=${MAX_TRADES}`),
  ]);
  if (seq !== marketSeq) return;
  const got = [];
  const from = [];
  if (recent.status === 'fulfilled') {
    got.push(...recent.value);
    from.push('recent');
  }
  if (stored.status === 'fulfilled') {
    got.push(...stored.value.trades);
    from.push('store');
  }
  // Oldest first, so that a later REST answer or push of the same time sorts above.
  got.sort((a, b) => tradeBefore(b, a));
  for (const t of got) addTrade(t);
  $('trades-note').textContent = from.length ? 'history: ' + from.join(' + ') : 'no history: ' + recent.reason.message;
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function drawTrades() {
  tradesDirty = false;
  const out = trades.map((t) => {
    const tr = document.createElement('tr');
    const cells = [
      ['time', fmtTime(t.timestamp), ''],
      ['side', t.side, t.side === 'buy' || t.side === 'sell' ? t.side : ''],
      ['price', t.price, 'num ' + t.side],
      ['size', t.size, 'num'],
      ['id', t.trade_id, 'num id'],
    ];
    for (const [col, text, cls] of cells) {
      const td = document.createElement('td');
      td.dataset.col = col;
      td.className = cls;
      td.textContent = text;
      if (col === 'id') td.title = text;
      tr.append(td);
    }
    return tr;
  });
  document.querySelector('#trades tbody').replaceChildren(...out);
  $('no-trades').hidden = trades.length > 0;
}

// ---- best bid/ask

async function loadQuote() {
  const seq = marketSeq;
  try {
    const list = await apiData(`/api/v1/quotes/${enc(market.exchange)}/${enc(market.symbol)}?limit=1`);
    if (seq === marketSeq && list.length) takeQuote(list[0]);
  } catch (e) {
    // No quote feed here, or none of this pair yet: the tick's bid/ask stand in.
  }
}

function onQuote(q) {
  marketCounters.quotes++;
  if (!q || !market || q.exchange + ':' + q.symbol !== market.key) return;
  takeQuote(q);
}

function takeQuote(q) {
  if (quote && q.timestamp < quote.timestamp) return;
  quote = q;
  drawQuote();
}

function span(cls, text) {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  return s;
}

function drawQuote() {
  const el = $('quote');
  const row = market && rows.get(market.key);
  if (quote) {
    el.replaceChildren(span('bid', `${quote.bid_size} @ ${quote.bid}`), ' / ', span('ask', `${quote.ask} @ ${quote.ask_size}`));
    $('quote-source').textContent = 'best bid/ask · ' + fmtTime(quote.timestamp);
  } else if (row && row.tick) {
    el.replaceChildren(span('bid', row.tick.bid), ' / ', span('ask', row.tick.ask));
    $('quote-source').textContent = "bid/ask from the ticker (no quotes from this exchange)";
  } else {
    el.replaceChildren();
    $('quote-source').textContent = '';
  }
}

// ---- across exchanges

function instrumentOf(t) {
  return t && t.base && t.quote ? t.base + '-' + t.quote : null;
}

function setInstrument(inst) {
  if (inst === crossInstrument) return;
  crossInstrument = inst;
  cross = new Map();
  crossNote = inst ? '' : 'the symbol names no known instrument';
  $('cross-instrument').textContent = inst || '';
  drawCross();
  if (inst) loadCross();
}

// mergeCross keeps each exchange's newest tick of the instrument.
function mergeCross(t) {
  const old = cross.get(t.exchange);
  if (old && old.timestamp > t.timestamp) return false;
  cross.set(t.exchange, t);
  return true;
}

async function loadCross() {
  const inst = crossInstrument;
  if (!inst) return;
  try {
    const d = await apiData(`/api/v1/instruments/${enc(inst)}/ticks`);
    if (inst !== crossInstrument) return;
    for (const t of d.ticks) mergeCross(t);
    crossNote = d.partial ? 'partial: ' + d.unavailable.map((u) => u.error).join('; ') : '';
  } catch (e) {
    if (inst !== crossInstrument) return;
    crossNote = e.message;
  }
  drawCross();
}

// marketTick is every pushed tick: the selected pair's stands in for a
// missing quote, and those of its instrument move the exchanges' table on.
function marketTick(t) {
  if (!market) return;
  const key = t.exchange + ':' + t.symbol;
  if (key === market.key) {
    if (!quote) drawQuote();
    if (!crossInstrument) setInstrument(instrumentOf(t));
  }
  if (crossInstrument && instrumentOf(t) === crossInstrument && mergeCross(t)) drawCross();
}

function drawCross() {
  const sel = market && [...cross.values()].find((t) => t.exchange + ':' + t.symbol === market.key);
  const out = [...cross.values()].sort((a, b) => (a.exchange < b.exchange ? -1 : a.exchange > b.exchange ? 1 : 0)).map((t) => {
    const key = t.exchange + ':' + t.symbol;
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    tr.classList.toggle('current', market !== null && key === market.key);
    // Display only, like the 24h %: the prices themselves stay strings.
    let vs = '—';
    if (sel && key !== market.key && Number(sel.price)) {
      const bp = ((Number(t.price) - Number(sel.price)) / Number(sel.price)) * 1e4;
      vs = (bp >= 0 ? '+' : '') + bp.toFixed(1) + ' bp';
    }
    const age = Date.now() - t.timestamp;
    for (const [col, text] of [['exchange', t.exchange], ['symbol', t.symbol], ['price', t.price], ['bid', t.bid], ['ask', t.ask], ['vs', vs], ['age', fmtAge(age)]]) {
      const td = document.createElement('td');
      td.dataset.col = col;
      if (!['exchange', 'symbol'].includes(col)) td.className = 'num';
      if (col === 'age' && age > STALE_AFTER_MS) td.classList.add('stale');
      td.textContent = text;
      tr.append(td);
    }
    tr.addEventListener('click', () => rows.has(key) && select(key));
    return tr;
  });
  document.querySelector('#cross tbody').replaceChildren(...out);
  $('cross-note').textContent = crossNote || (crossInstrument && !cross.size ? 'no exchange has ticks of it yet' : '');
  $('cross-note').hidden = !$('cross-note').textContent;
}

setInterval(drawCross, 1000); // the ages
setInterval(loadCross, CROSS_EVERY_MS);

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
    marketResubscribe();
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
        marketSubscribed(m);
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
      case 'trade':
        onTrade(m.data);
        break;
      case 'quote':
        onQuote(m.data);
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

// The market panel as shown: the trades' and exchanges' rows as text.
const shown = (sel) => [...document.querySelectorAll(sel + ' tbody tr')].map((tr) => {
  const o = { cls: tr.className };
  for (const td of tr.children) o[td.dataset.col] = td.textContent;
  if (sel === '#trades') o.sideClass = tr.children[1].className;
  return o;
});
Object.assign(window.tickflow, {
  trades: () => shown('#trades'),
  quote: () => ({ text: $('quote').textContent, source: $('quote-source').textContent }),
  cross: () => shown('#cross'),
  instrument: () => crossInstrument,
  refreshCross: loadCross,
  marketCounters,
});

connect();
refreshGaps();
setInterval(refreshGaps, GAPS_EVERY_MS);
