// tickflow's live page: a table of every pair, a chart of the selected one
// (history from the REST API, then live ticks), and a panel of alerts and
// signals, all fed by the push sink's WebSocket.
import { createChart, LineSeries } from 'lightweight-charts';

const HISTORY_LIMIT = 500;
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

const chart = createChart($('chart'), {
  autoSize: true,
  layout: { background: { color: 'transparent' }, textColor: '#9aa7b5' },
  grid: { vertLines: { color: '#202833' }, horzLines: { color: '#202833' } },
  timeScale: { timeVisible: true, secondsVisible: true },
  rightPriceScale: { borderColor: '#26303c' },
});
const series = chart.addSeries(LineSeries, { color: '#4aa3ff', lineWidth: 2 });
let chartReady = false; // history loaded for the selected pair
let pending = []; // live ticks that arrived while history was loading
let loadSeq = 0;

// The chart's time axis is in whole seconds; several ticks in one second
// collapse into that second's last price.
const toPoint = (t) => ({ time: Math.floor(t.timestamp / 1000), value: Number(t.price) });

function chartTick(t) {
  $('chart-price').textContent = t.price;
  if (!chartReady) {
    pending.push(t);
    return;
  }
  const p = toPoint(t);
  const data = series.data();
  const last = data.length ? data[data.length - 1].time : -Infinity;
  if (p.time < last) return; // older than the chart's newest point
  series.update(p);
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
  chartReady = false;
  pending = row && row.tick ? [row.tick] : [];
  series.setData([]);
  const seq = ++loadSeq;
  let history = [];
  try {
    const res = await fetch(`/api/v1/ticks/${encodeURIComponent(exchange)}/${encodeURIComponent(symbol)}?limit=${HISTORY_LIMIT}`);
    const body = await res.json();
    if (body.success) {
      history = Array.isArray(body.data) ? body.data : body.data.ticks || [];
      $('chart-note').textContent = body.data.partial ? 'history partial' : '';
    } else {
      $('chart-note').textContent = 'no history: ' + body.error.message;
    }
  } catch (e) {
    $('chart-note').textContent = 'no history: ' + e.message;
  }
  if (seq !== loadSeq) return; // another pair was selected meanwhile
  // History is newest first; the chart wants ascending, unique times.
  const points = new Map();
  for (const t of [...history].reverse().concat(pending)) {
    const p = toPoint(t);
    points.set(p.time, p);
  }
  series.setData([...points.values()].sort((a, b) => a.time - b.time));
  chart.timeScale().fitContent();
  pending = [];
  chartReady = true;
}

// ---- alerts and signals -------------------------------------------------

function onEvent(type, key, data) {
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
  chartPoints: () => series.data().length,
  chartLast: () => {
    const d = series.data();
    return d.length ? d[d.length - 1] : null;
  },
  counters,
  disconnect: () => ws && ws.close(4001, 'test'),
  gaps: () => document.querySelectorAll('#gaps li').length,
  refreshGaps,
};

connect();
refreshGaps();
setInterval(refreshGaps, GAPS_EVERY_MS);
