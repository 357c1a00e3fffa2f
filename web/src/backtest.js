// The page of `tickflow backtest -html`: the report is embedded in the
// page as JSON (<script id="report" type="application/json">); this draws,
// for each strategy, its pair's price bars with the trades as markers and
// its equity curve below, plus a summary table. Everything is inlined, so
// the page works from a file with no network.
import { createChart, createSeriesMarkers, CandlestickSeries, LineSeries } from 'lightweight-charts';

const report = JSON.parse(document.getElementById('report').textContent);
const stepMs = parseDuration(report.step);

function parseDuration(s) {
  // Go's time.Duration String(): "1m0s", "10s", "1h0m0s".
  let ms = 0;
  for (const [, n, u] of s.matchAll(/([\d.]+)(h|ms|m|s)/g)) {
    ms += Number(n) * { h: 3600e3, m: 60e3, s: 1e3, ms: 1 }[u];
  }
  return ms || 60e3;
}

const sec = (ms) => Math.floor(ms / 1000);
const iso = (ms) => new Date(ms).toISOString().replace('.000Z', 'Z');

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}

const root = document.getElementById('root');
root.append(
  el('h1', {}, 'tickflow backtest'),
  el('p', { class: 'meta' },
    `${report.ticks} ticks from ${report.source || '?'}, ${report.ticks ? iso(report.first) + ' .. ' + iso(report.last) : 'no ticks'}` +
    `, ${report.applied} applied, steps of ${report.step}`),
);

const cols = ['name', 'pair', 'signals', 'trades', 'win_rate', 'pnl', 'realized_pnl', 'unrealized_pnl', 'max_drawdown', 'exposure', 'position'];
const table = el('table', { id: 'summary' },
  el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', {}, c.replace('_', ' '))))));
const tbody = el('tbody');
table.append(tbody);
root.append(table);

const chartOpts = (height) => ({
  height,
  layout: { background: { color: '#10151c' }, textColor: '#c9d1d9' },
  grid: { vertLines: { color: '#1e2630' }, horzLines: { color: '#1e2630' } },
  timeScale: { timeVisible: true, secondsVisible: stepMs < 60e3 },
  rightPriceScale: { borderColor: '#2a3440' },
});

const rendered = [];
report.strategies.forEach((s, i) => {
  const pairKey = `${s.exchange}:${s.symbol}`;
  tbody.append(el('tr', {}, ...cols.map((c) => {
    const v = c === 'pair' ? pairKey : s[c];
    return el('td', { class: c }, v === null || v === undefined ? '-' : String(v));
  })));

  const pair = report.pairs.find((p) => p.exchange === s.exchange && p.symbol === s.symbol) || { bars: [] };
  const section = el('section', { class: 'strategy', id: `strategy-${i}` },
    el('h2', {}, `${s.name} `, el('span', { class: 'type' }, `${s.type} on ${pairKey}`)),
    el('p', { class: 'meta' }, `pnl ${s.pnl} (realized ${s.realized_pnl}, unrealized ${s.unrealized_pnl}), ` +
      `${s.trades} trades, win rate ${s.win_rate ?? '-'}, max drawdown ${s.max_drawdown}, exposure ${s.exposure}`));
  const priceEl = el('div', { class: 'chart price' });
  const equityEl = el('div', { class: 'chart equity' });
  section.append(priceEl, equityEl);
  root.append(section);

  const price = createChart(priceEl, chartOpts(320));
  const candles = price.addSeries(CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false, wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  candles.setData(pair.bars.map((b) => ({ time: sec(b.t), open: +b.o, high: +b.h, low: +b.l, close: +b.c })));

  // A marker sits on the bar of the step its fill fell in.
  const bar = (t) => sec(t - (t % stepMs));
  const markers = [];
  for (const tr of s.trade_list) {
    const long = tr.side === 'long';
    markers.push({ time: bar(tr.entry_at), position: long ? 'belowBar' : 'aboveBar', color: long ? '#26a69a' : '#ef5350',
      shape: long ? 'arrowUp' : 'arrowDown', text: `${long ? 'buy' : 'short'} ${tr.entry_price}` });
    if (!tr.open) {
      markers.push({ time: bar(tr.exit_at), position: long ? 'aboveBar' : 'belowBar', color: '#e3b341',
        shape: 'circle', text: `exit ${tr.exit_price} (${tr.pnl})` });
    }
  }
  markers.sort((a, b) => a.time - b.time);
  // Past a few dozen, labels hide the chart; the table has the numbers.
  if (markers.length > 40) for (const m of markers) delete m.text;
  createSeriesMarkers(candles, markers);

  const equity = createChart(equityEl, chartOpts(180));
  const line = equity.addSeries(LineSeries, { color: '#4aa3ff', lineWidth: 2 });
  // Several points may share a second: the chart takes the last.
  const pts = [];
  for (const p of s.equity) {
    const t = sec(p.t);
    if (pts.length && pts[pts.length - 1].time === t) pts[pts.length - 1].value = +p.equity;
    else pts.push({ time: t, value: +p.equity });
  }
  line.setData(pts);
  price.timeScale().fitContent();
  equity.timeScale().fitContent();
  rendered.push({ name: s.name, bars: pair.bars.length, markers: markers.length, points: pts.length });
});

// For tests (and the curious): what was drawn.
window.backtestRendered = rendered;
document.body.dataset.ready = 'true';
