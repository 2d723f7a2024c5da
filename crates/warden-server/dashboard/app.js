// Warden dashboard: hand-written modern JS, no framework, no build step.
//
// Every piece of data comes from Warden's authenticated REST API (the session cookie set at
// sign-in authenticates it; changes carry the X-Warden-Csrf header). Live updates arrive as
// server-sent events from /warden/events; a `resync` event means some were missed, and the
// current view refetches.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Creates an element: h('a', {href: '#'}, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children, skipping null, undefined and false. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

const fmtNumber = (n) => (typeof n === 'number' ? n.toLocaleString('en-US', { maximumFractionDigits: 2 }) : '–');

function fmtTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return '–';
  return new Date(epochSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtAgo(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A metric value as rules write it: 35000, {22, 443}, {10.0.0.0/8}. */
function fmtValue(v) {
  if (!v || typeof v !== 'object') return '–';
  const parts = [];
  if (v.count !== undefined) parts.push(String(v.count));
  if (v.number !== undefined) parts.push(String(v.number));
  for (const k of ['numbers', 'strings', 'ports', 'cidrs']) {
    if (Array.isArray(v[k])) parts.push(`{${v[k].join(', ')}}`);
  }
  return parts.length ? parts.join(' ') : '{}';
}

function fmtDuration(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** A behavior in Warden's rule language (the same text `warden profiles show` prints). */
function ruleText(b) {
  const c = b.criteria || {};
  const metric = b.metric;
  if (!metric) return `${b.name}: <no metric>`;
  if (c.statisticalThreshold || c.mlDetectionConfig) return `${b.name}: <not expressible as a rule>`;
  const invert = { 'less-than': '>=', 'less-than-equals': '>', 'greater-than': '<=', 'greater-than-equals': '<' };
  const op = c.comparisonOperator || '';
  let text = `${b.name}: alarm when ${metric} `;
  if (invert[op]) text += `${invert[op]} ${fmtValue(c.value)}`;
  else if (op.startsWith('not-in-')) text += `in ${fmtValue(c.value)}`;
  else if (op.startsWith('in-')) text += `not in ${fmtValue(c.value)}`;
  else return `${b.name}: <unknown operator ${op}>`;
  if (c.durationSeconds) text += ` over ${fmtDuration(c.durationSeconds)}`;
  const dp = (n) => (n === 1 ? 'datapoint' : 'datapoints');
  if (c.consecutiveDatapointsToAlarm) text += ` for ${c.consecutiveDatapointsToAlarm} ${dp(c.consecutiveDatapointsToAlarm)}`;
  if (c.consecutiveDatapointsToClear) text += ` clear after ${c.consecutiveDatapointsToClear} ${dp(c.consecutiveDatapointsToClear)}`;
  if (b.metricDimension) text += ` on dimension ${b.metricDimension.dimensionName}${b.metricDimension.operator === 'NOT_IN' ? ' not' : ''}`;
  if (b.suppressAlerts) text += ' quietly';
  if (b.exportMetric) text += ' exported';
  return text;
}

const thingLink = (name) => h('a', { href: `#/things/${encodeURIComponent(name)}` }, name);
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// The session's requests: aborted at sign-out, so none reaches the server after its session ended.
let sessionRequests = new AbortController();

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { 'x-warden-csrf': '1' } };
  if (!path.startsWith('/dashboard/session')) init.signal = sessionRequests.signal;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { message: text }; }
  if (!response.ok) {
    const code = response.headers.get('x-amzn-errortype');
    const err = new ApiError(response.status, code, data.message);
    if (code === 'UnrecognizedClientException' || code === 'MissingAuthenticationTokenException') signedOut();
    throw err;
  }
  return data;
}

/**
 * Every item of a paged list, following nextToken, at most `maxPages` pages (`truncated` on the
 * result says the cap was hit); `onPage` sees each page whole.
 */
async function allPages(path, key, maxPages = 40, onPage = () => {}) {
  const items = [];
  let token = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', token ? `${path}${sep}nextToken=${enc(token)}` : path);
    onPage(page);
    items.push(...(page[key] || []));
    token = page.nextToken;
    if (!token) break;
  }
  items.truncated = Boolean(token);
  return items;
}

const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

// ---------------------------------------------------------------------------------------------
// Confirmation dialog

function confirmAction(title, text, okLabel) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Sign-in, live events, routing

let current = null; // the view shown: { onEvent(ev), refresh(), dispose() }
let events = null;

function signedOut() {
  sessionRequests.abort();
  sessionRequests = new AbortController();
  if (events) { events.close(); events = null; }
  if (current && current.dispose) current.dispose();
  current = null;
  fill($('#view'));
  $('#nav').hidden = true;
  $('#sign-out').hidden = true;
  $('#live').hidden = true;
  $('#sign-in').hidden = false;
  $('#token').focus();
}

async function signIn(token) {
  await api('POST', '/dashboard/session', { token });
  startSession();
}

function startSession() {
  $('#sign-in').hidden = true;
  $('#nav').hidden = false;
  $('#sign-out').hidden = false;
  connectEvents();
  route();
}

function connectEvents() {
  if (events) events.close();
  const live = $('#live');
  live.hidden = false;
  live.textContent = 'Connecting…';
  live.classList.remove('on');
  // A lagging tab may be told to resync several times a second: one refetch at a time, at
  // most one more queued, half a second apart.
  let resyncTimer = null;
  let resyncing = false;
  let resyncQueued = false;
  const resyncSoon = () => {
    if (resyncing) { resyncQueued = true; return; }
    clearTimeout(resyncTimer);
    resyncTimer = setTimeout(async () => {
      resyncing = true;
      try { if (current) await current.refresh(); } finally {
        resyncing = false;
        if (resyncQueued) { resyncQueued = false; resyncSoon(); }
      }
    }, 500);
  };
  events = new EventSource('/warden/events');
  events.onmessage = (message) => {
    let ev;
    try { ev = JSON.parse(message.data); } catch { return; }
    if (ev.type === 'hello') {
      live.textContent = 'Live';
      live.classList.add('on');
      // Whatever happened while disconnected: refetch.
      if (current && current.connectedOnce) current.refresh();
      if (current) current.connectedOnce = true;
      return;
    }
    if (!current) return;
    if (ev.type === 'resync') resyncSoon();
    else if (current.onEvent) current.onEvent(ev);
  };
  events.onerror = () => {
    live.textContent = 'Reconnecting…';
    live.classList.remove('on');
    if (events && events.readyState === EventSource.CLOSED) {
      // Refused (a signed-out session) or the server is gone: check, then try again.
      setTimeout(async () => {
        try {
          const s = await api('GET', '/dashboard/session');
          if (s.signedIn) connectEvents(); else signedOut();
        } catch { setTimeout(connectEvents, 3000); }
      }, 2000);
    }
  };
}

function route() {
  if (current && current.dispose) current.dispose();
  const hash = location.hash || '#/fleet';
  let view;
  let name = 'fleet';
  let m;
  if ((m = hash.match(/^#\/things\/(.+)$/))) view = deviceView(decodeURIComponent(m[1]));
  else if (hash.startsWith('#/violations')) { view = violationsView(); name = 'violations'; }
  else if (hash.startsWith('#/profiles')) { view = profilesView(); name = 'profiles'; }
  else view = fleetView();
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name && !hash.startsWith('#/things/')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  current = view;
  current.connectedOnce = events && events.readyState === EventSource.OPEN;
  fill($('#view'), view.el);
  view.refresh();
}

// ---------------------------------------------------------------------------------------------
// Fleet view

function fleetView() {
  const rows = new Map(); // thing name -> row
  let quarantineGroups = [];
  let sort = { key: 'thingName', dir: 1 };
  const search = h('input', { type: 'search', id: 'fleet-search', placeholder: 'thing or group', 'aria-label': 'Search things' });
  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const columns = [
    ['thingName', 'Thing'], ['groups', 'Groups'], ['connected', 'Connection'],
    ['lastReportTime', 'Last report'], ['inAlarm', 'In alarm'],
  ];
  const headRow = h('tr', {}, columns.map(([key, label]) => h('th', { scope: 'col', dataset: { key } },
    h('button', { type: 'button', onclick: () => { sort = { key, dir: sort.key === key ? -sort.dir : 1 }; render(); } }, label))));
  const status = h('p', { class: 'status muted' });
  const el = h('section', { 'aria-labelledby': 'fleet-title' },
    h('h1', { id: 'fleet-title' }, 'Fleet'),
    summary,
    h('div', { class: 'toolbar' }, h('label', {}, 'Search', search)),
    h('div', { class: 'table-wrap' }, h('table', { id: 'fleet-table' }, h('thead', {}, headRow), tbody)),
    status);
  search.addEventListener('input', () => render());

  let pending = false;
  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }
  function draw() {
    const q = search.value.trim().toLowerCase();
    const all = [...rows.values()];
    const shown = all.filter((r) => !q || r.thingName.toLowerCase().includes(q) || r.groups.some((g) => g.toLowerCase().includes(q)));
    const value = (r) => {
      const v = r[sort.key];
      if (Array.isArray(v)) return v.join(',');
      if (typeof v === 'boolean') return v ? 1 : 0;
      return v === null || v === undefined ? -1 : v;
    };
    shown.sort((a, b) => {
      // Quarantined and alarmed things first, whatever the sort, so they stand out.
      const pa = (a.quarantined ? 2 : 0) + (a.inAlarm > 0 ? 1 : 0);
      const pb = (b.quarantined ? 2 : 0) + (b.inAlarm > 0 ? 1 : 0);
      if (pa !== pb) return pb - pa;
      const va = value(a); const vb = value(b);
      return (va < vb ? -1 : va > vb ? 1 : 0) * sort.dir;
    });
    for (const th of headRow.children) {
      th.setAttribute('aria-sort', th.dataset.key === sort.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    fill(tbody, ...shown.map((r) => h('tr', { class: r.quarantined ? 'quarantined' : '', dataset: { thing: r.thingName } },
      h('td', {}, thingLink(r.thingName), ' ', r.quarantined ? h('span', { class: 'badge bad' }, 'Quarantined') : null),
      h('td', {}, r.groups.map((g) => h('span', { class: 'chip' }, g))),
      h('td', {}, r.connected ? h('span', { class: 'badge ok' }, 'Connected') : h('span', { class: 'badge off' }, 'Offline')),
      h('td', { title: fmtTime(r.lastReportTime) }, fmtAgo(r.lastReportTime)),
      h('td', { class: 'num' }, r.inAlarm > 0 ? h('span', { class: 'badge bad' }, String(r.inAlarm)) : '0'))));
    if (!shown.length) tbody.append(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, all.length ? 'No thing matches.' : 'No things registered yet.')));
    const count = (f) => all.filter(f).length;
    fill(summary,
      h('div', { class: 'stat' }, h('b', {}, String(all.length)), 'things'),
      h('div', { class: 'stat' }, h('b', {}, String(count((r) => r.connected))), 'connected'),
      h('div', { class: `stat${count((r) => r.inAlarm > 0) ? ' bad' : ''}`, id: 'stat-alarm' }, h('b', {}, String(count((r) => r.inAlarm > 0))), 'in alarm'),
      h('div', { class: `stat${count((r) => r.quarantined) ? ' bad' : ''}`, id: 'stat-quarantined' }, h('b', {}, String(count((r) => r.quarantined))), 'quarantined'));
  }
  async function refresh() {
    try {
      const things = await allPages('/warden/fleet?maxResults=250', 'things', 40, (page) => {
        quarantineGroups = page.quarantineGroups;
      });
      rows.clear();
      for (const t of things) rows.set(t.thingName, t);
      status.textContent = things.truncated ? 'Showing the first 10,000 things.' : '';
      render();
    } catch (e) { status.textContent = `Cannot load the fleet: ${e.message}`; }
  }
  async function refreshOne(thing) {
    try {
      const page = await api('GET', `/warden/fleet?thingName=${enc(thing)}`);
      for (const t of page.things) rows.set(t.thingName, t);
      render();
    } catch (e) { if (e.status === 404) { rows.delete(thing); render(); } }
  }
  // Things whose rows to refetch, gathered for a moment: an alarm storm costs one refetch of
  // the fleet, not one request per event.
  let stale = new Set();
  let staleTimer = null;
  function refetchSoon(thing) {
    stale.add(thing);
    clearTimeout(staleTimer);
    staleTimer = setTimeout(() => {
      const things = [...stale];
      stale = new Set();
      if (things.includes(null) || things.length > 20) refresh();
      else things.forEach(refreshOne);
    }, 250);
  }
  function onEvent(ev) {
    const row = ev.thing && rows.get(ev.thing);
    if (ev.type === 'report' && row) { row.lastReportTime = ev.timestamp; render(); }
    // A thing may hold several sessions (its agent and its application), so one ending does
    // not make it offline: the server says what is left. A thing not listed yet (registered
    // since the page loaded) shows up when it connects.
    else if (ev.type === 'session' && (row || ev.connected)) refetchSoon(ev.thing);
    else if (ev.type === 'violation' || ev.type === 'groups') refetchSoon(ev.thing ?? null);
  }
  const ticker = setInterval(render, 5000); // relative times ("12 s ago") only, no fetch
  return { el, refresh, onEvent, dispose: () => { clearInterval(ticker); clearTimeout(staleTimer); }, quarantineGroups: () => quarantineGroups };
}

// ---------------------------------------------------------------------------------------------
// Device view

const DEVICE_METRICS = [
  ['aws:all-bytes-out', 'Bytes out'], ['aws:all-bytes-in', 'Bytes in'],
  ['aws:all-packets-out', 'Packets out'], ['aws:all-packets-in', 'Packets in'],
  ['aws:num-listening-tcp-ports', 'Listening TCP ports'], ['aws:num-listening-udp-ports', 'Listening UDP ports'],
  ['aws:num-established-tcp-connections', 'Established TCP connections'],
];
const CLOUD_METRICS = [
  ['aws:num-messages-sent', 'Messages sent'], ['aws:num-messages-received', 'Messages received'],
  ['aws:message-byte-size', 'Message size (bytes)'], ['aws:num-authorization-failures', 'Authorization failures'],
  ['aws:num-connection-attempts', 'Connection attempts'], ['aws:num-disconnects', 'Disconnects'],
];
const SET_METRICS = [
  ['aws:listening-tcp-ports', 'Listening TCP ports'], ['aws:listening-udp-ports', 'Listening UDP ports'],
  ['aws:destination-ip-addresses', 'Remote endpoints'],
];
const WINDOWS = [['600', 'Last 10 minutes'], ['3600', 'Last hour'], ['21600', 'Last 6 hours'], ['86400', 'Last 24 hours']];

const numeric = (v) => (v ? (v.count ?? v.number ?? null) : null);

/** One uPlot chart of one metric, with threshold lines and shaded violation periods. */
class MetricChart {
  constructor(metric, label) {
    this.metric = metric;
    this.xs = [];
    this.ys = [];
    this.thresholds = []; // { value, label }
    this.periods = []; // [startSeconds, endSeconds|null]
    this.legend = h('div', { class: 'legend' });
    this.plotEl = h('div', { class: 'plot' });
    this.el = h('figure', { class: 'chart', dataset: { metric }, style: 'margin:0' },
      h('h3', {}, h('span', {}, label), h('span', { class: 'mono' }, metric)),
      this.plotEl, this.legend);
    this.plot = null;
  }
  mount() {
    const self = this;
    const width = Math.max(260, this.plotEl.clientWidth || 400);
    this.plot = new uPlot({
      width, height: 170,
      legend: { show: false },
      cursor: { y: false },
      scales: {
        x: { time: true },
        y: {
          range: (u, min, max) => {
            const top = Math.max(max ?? 0, ...self.thresholds.map((t) => t.value * 1.15), 1);
            return [Math.min(0, min ?? 0), top];
          },
        },
      },
      axes: [{ stroke: '#5b6470', grid: { stroke: '#eceef2' } },
        { stroke: '#5b6470', size: 64, grid: { stroke: '#eceef2' }, values: (u, ticks) => ticks.map(shortNumber) }],
      series: [{}, { label: this.metric, stroke: '#1d5fd1', width: 1.5, fill: 'rgba(29,95,209,0.08)', points: { show: false } }],
      hooks: {
        drawClear: [(u) => self.drawPeriods(u)],
        draw: [(u) => self.drawThresholds(u)],
      },
    }, [this.xs, this.ys], this.plotEl);
    this.resize = new ResizeObserver(() => {
      const w = this.plotEl.clientWidth;
      if (w && this.plot && Math.abs(w - this.plot.width) > 2) this.plot.setSize({ width: w, height: 170 });
    });
    this.resize.observe(this.plotEl);
  }
  drawPeriods(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.fillStyle = 'rgba(194,29,29,0.16)';
    for (const [start, end] of this.periods) {
      const x0 = Math.max(left, u.valToPos(start, 'x', true));
      const x1 = Math.min(left + width, u.valToPos(end ?? Date.now() / 1000, 'x', true));
      if (x1 > x0) ctx.fillRect(x0, top, x1 - x0, height);
    }
    ctx.restore();
  }
  drawThresholds(u) {
    const ctx = u.ctx;
    const { left, width } = u.bbox;
    ctx.save();
    ctx.strokeStyle = '#c21d1d';
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    for (const t of this.thresholds) {
      const y = u.valToPos(t.value, 'y', true);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
    }
    ctx.restore();
  }
  setData(points, windowSeconds) {
    this.window = windowSeconds;
    this.xs = points.map((p) => p[0]);
    this.ys = points.map((p) => p[1]);
    this.redraw();
  }
  append(ts, value) {
    if (value === null || value === undefined) return;
    this.xs.push(ts);
    this.ys.push(value);
    const from = Date.now() / 1000 - (this.window || 600);
    while (this.xs.length && this.xs[0] < from) { this.xs.shift(); this.ys.shift(); }
    this.redraw();
  }
  redraw() {
    const last = this.ys.length ? this.ys[this.ys.length - 1] : null;
    fill(this.legend,
      h('span', {}, `latest ${last === null ? '–' : fmtNumber(last)}`),
      ...this.thresholds.map((t) => h('span', { class: 'thr' }, ` · alarm ${t.label}`)),
      ...(this.periods.length ? [h('span', { class: 'thr' }, ` · ${this.periods.length} violation period${this.periods.length > 1 ? 's' : ''}`)] : []));
    if (!this.plot) return;
    // The window, or less when the data is younger than it (a fleet that just started), so
    // that a few minutes of points are not squeezed against the right edge.
    const now = Date.now() / 1000;
    const first = this.xs.length ? this.xs[0] : now;
    const periodStart = this.periods.length ? Math.min(...this.periods.map((p) => p[0])) : now;
    const min = Math.max(now - (this.window || 600), Math.min(first, periodStart, now - 60) - 5);
    this.plot.batch(() => {
      this.plot.setData([this.xs, this.ys], false);
      this.plot.setScale('x', { min, max: now });
    });
  }
  dispose() {
    if (this.resize) this.resize.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

function shortNumber(n) {
  if (n === null || n === undefined) return '';
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(2));
}

function deviceView(thing) {
  let windowSeconds = 600;
  let overview = null;
  let behaviors = []; // { profile, behavior }
  let violationsActive = [];
  let history = [];
  const charts = new Map();
  for (const [metric, label] of [...DEVICE_METRICS, ...CLOUD_METRICS]) charts.set(metric, new MetricChart(metric, label));

  const title = h('h1', { id: 'device-title' }, thing);
  const banner = h('div', { id: 'alarm-banner', 'aria-live': 'assertive' });
  const actions = h('div', { class: 'actions' });
  const info = h('div', { class: 'card', id: 'device-info' });
  const sets = h('div', { class: 'card', id: 'device-sets' });
  const violationsBox = h('div', { id: 'device-violations' });
  const status = h('p', { class: 'status', role: 'status' });
  const density = h('p', { class: 'status muted', id: 'density', hidden: true });
  const windowSelect = h('select', { id: 'window', 'aria-label': 'Time window' },
    WINDOWS.map(([v, label]) => h('option', { value: v, selected: v === String(windowSeconds) }, label)));
  windowSelect.addEventListener('change', () => { windowSeconds = Number(windowSelect.value); loadMetrics(); });
  const el = h('section', { 'aria-labelledby': 'device-title' },
    h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')),
    title, banner, actions, status,
    h('div', { class: 'cards' }, info, sets),
    h('h2', {}, 'Violations'), violationsBox,
    h('div', { class: 'toolbar' }, h('h2', { style: 'margin:0' }, 'Device-side metrics'), windowSelect),
    density,
    h('div', { class: 'charts', id: 'device-charts' }, DEVICE_METRICS.map(([m]) => charts.get(m).el)),
    h('h2', {}, 'Cloud-side metrics'),
    h('div', { class: 'charts', id: 'cloud-charts' }, CLOUD_METRICS.map(([m]) => charts.get(m).el)));
  let mounted = false;

  function renderOverview() {
    if (!overview) return;
    const o = overview;
    const quarantinedIn = o.groups.filter((g) => o.quarantineGroups.includes(g));
    fill(title, thing, ' ',
      o.connected ? h('span', { class: 'badge ok', id: 'badge-connection' }, 'Connected') : h('span', { class: 'badge off', id: 'badge-connection' }, 'Offline'),
      o.quarantined ? h('span', { class: 'badge bad', id: 'badge-quarantined' }, 'Quarantined') : null,
      o.inAlarm > 0 ? h('span', { class: 'badge bad', id: 'badge-alarm' }, `${o.inAlarm} in alarm`) : h('span', { class: 'badge ok', id: 'badge-alarm' }, 'No alarm'));
    fill(actions,
      o.quarantined ? h('button', { type: 'button', id: 'release', class: 'danger', onclick: () => release(quarantinedIn) }, 'Release from quarantine') : null,
      ...o.certificates.filter((c) => c.status === 'ACTIVE').map((c) =>
        h('button', { type: 'button', class: 'danger deactivate', onclick: () => deactivate(c.certificateId) }, `Deactivate certificate ${c.certificateId.slice(0, 10)}…`)));
    fill(info, h('h3', {}, 'Device'), h('dl', {},
      h('dt', {}, 'Groups'), h('dd', {}, o.groups.length ? o.groups.map((g) => h('span', { class: 'chip' }, g)) : '–'),
      h('dt', {}, 'Last report'), h('dd', { title: fmtTime(o.lastReportTime) }, fmtAgo(o.lastReportTime)),
      h('dt', {}, 'Sessions'), h('dd', {}, o.sessions.length ? o.sessions.map((s) => h('div', { class: 'mono' }, `${s.clientId} from ${s.remoteAddr}`)) : 'none'),
      h('dt', {}, 'Certificates'), h('dd', {}, o.certificates.length ? o.certificates.map((c) => h('div', {}, h('span', { class: 'mono', title: c.certificateId }, `${c.certificateId.slice(0, 12)}…`), ' ',
        h('span', { class: `badge ${c.status === 'ACTIVE' ? 'ok' : 'warn'}` }, c.status))) : 'none'),
      h('dt', {}, 'Profiles'), h('dd', {}, o.securityProfiles.length ? o.securityProfiles.map((p) => h('span', { class: 'chip' }, p)) : 'none')));
  }

  function renderViolations() {
    fill(banner, ...violationsActive.map((v) =>
      h('div', { class: 'alarm-banner' }, `In alarm: ${v.behavior.name} (${v.securityProfileName}), last value ${fmtValue(v.lastViolationValue)}, since ${fmtTime(v.violationStartTime)}`)));
    const table = (rows, head, cells) => (rows.length
      ? h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows.map((r) => h('tr', {}, cells(r).map((c) => h('td', {}, c)))))))
      : h('p', { class: 'muted' }, 'None.'));
    fill(violationsBox,
      h('h3', {}, 'Active'),
      table(violationsActive, ['Profile', 'Behavior', 'Last value', 'Since', 'Verification'],
        (v) => [v.securityProfileName, v.behavior.name, fmtValue(v.lastViolationValue), fmtTime(v.violationStartTime), v.verificationState]),
      h('h3', { style: 'margin-top:12px' }, 'History (last 24 hours)'),
      table(history.slice(-50).reverse(), ['Time', 'Event', 'Profile', 'Behavior', 'Value'],
        (e) => [fmtTime(e.violationEventTime), e.violationEventType, e.securityProfileName, e.behavior.name, fmtValue(e.metricValue)]));
    // Shaded periods: from each in-alarm to its clear or invalidation (or now).
    const periods = new Map(); // violationId -> {metric, start, end}
    for (const e of history) {
      const p = periods.get(e.violationId) || { metric: e.behavior.metric, start: null, end: null };
      if (e.violationEventType === 'in-alarm') p.start = e.violationEventTime;
      else p.end = e.violationEventTime;
      periods.set(e.violationId, p);
    }
    for (const v of violationsActive) {
      const p = periods.get(v.violationId) || { metric: v.behavior.metric, start: v.violationStartTime, end: null };
      p.start = p.start ?? v.violationStartTime;
      p.end = null;
      periods.set(v.violationId, p);
    }
    for (const chart of charts.values()) {
      chart.periods = [...periods.values()].filter((p) => p.metric === chart.metric && p.start !== null).map((p) => [p.start, p.end]);
      chart.redraw();
    }
  }

  function renderThresholds() {
    for (const chart of charts.values()) {
      chart.thresholds = behaviors
        .filter((b) => b.behavior.metric === chart.metric && b.behavior.criteria && numeric(b.behavior.criteria.value) !== null)
        .map((b) => ({ value: numeric(b.behavior.criteria.value), label: ruleText(b.behavior).split(': ').slice(1).join(': ').replace(`alarm when ${chart.metric} `, '') }));
      chart.redraw();
    }
  }

  async function loadOverview() {
    overview = await api('GET', `/warden/things/${enc(thing)}/overview`);
    renderOverview();
  }
  async function loadProfiles() {
    const described = await Promise.all(overview.securityProfiles.map((p) => api('GET', `/security-profiles/${enc(p)}`)));
    behaviors = described.flatMap((d) => (d.behaviors || []).map((b) => ({ profile: d.securityProfileName, behavior: b })));
    renderThresholds();
  }
  async function loadViolations() {
    const now = Date.now();
    const [active, events] = await Promise.all([
      allPages(`/active-violations?thingName=${enc(thing)}&maxResults=250`, 'activeViolations', 4),
      allPages(`/violation-events?thingName=${enc(thing)}&startTime=${iso(now - 86400000)}&endTime=${iso(now + 60000)}&maxResults=250`, 'violationEvents', 8),
    ]);
    violationsActive = active;
    history = events.sort((a, b) => a.violationEventTime - b.violationEventTime);
    renderViolations();
  }
  /** The metric's points over the last `seconds`, oldest first (`truncated`: more than 10,000). */
  async function metricPoints(metric, seconds = windowSeconds) {
    const now = Date.now();
    const list = await allPages(`/metric-values?thingName=${enc(thing)}&metricName=${enc(metric)}&startTime=${iso(now - seconds * 1000)}&endTime=${iso(now + 60000)}&maxResults=250`, 'metricDatumList', 40);
    const points = list.map((d) => [d.timestamp, d.value]).sort((a, b) => a[0] - b[0]);
    points.truncated = list.truncated;
    return points;
  }
  async function loadMetrics(which = [...DEVICE_METRICS, ...CLOUD_METRICS]) {
    const truncated = await Promise.all(which.map(async ([metric]) => {
      const points = await metricPoints(metric);
      charts.get(metric).setData(points.map(([t, v]) => [t, numeric(v)]).filter((p) => p[1] !== null), windowSeconds);
      return points.truncated;
    }));
    density.hidden = !truncated.some(Boolean);
    density.textContent = 'This window holds more than 10,000 points per metric: the graphs show its oldest 10,000. Choose a shorter window.';
    if (which.length > CLOUD_METRICS.length) await loadSets();
  }
  async function loadSets() {
    // The last report is recent: an hour at most, however wide the graphs' window.
    const latest = await Promise.all(SET_METRICS.map(async ([metric]) => {
      const points = await metricPoints(metric, Math.min(windowSeconds, 3600));
      return points.length ? points[points.length - 1][1] : null;
    }));
    renderSets(latest);
  }
  function renderSets(latest) {
    fill(sets, h('h3', {}, 'Now'), h('dl', {}, SET_METRICS.flatMap(([metric, label], i) => {
      const v = latest[i];
      const items = v ? (v.ports || v.cidrs || []) : null;
      return [h('dt', {}, label), h('dd', { dataset: { metric } }, items === null ? 'no data' : items.length ? items.map((x) => h('span', { class: 'chip mono' }, String(x))) : 'none')];
    })));
    lastSets = latest;
  }
  let lastSets = SET_METRICS.map(() => null);

  async function release(groups) {
    const ok = await confirmAction('Release from quarantine', `Remove ${thing} from ${groups.join(', ')}? Its quarantine policy stops applying at once.`, 'Release');
    if (!ok) return;
    try {
      for (const g of groups) await api('PUT', '/thing-groups/removeThingFromThingGroup', { thingGroupName: g, thingName: thing });
      status.textContent = `${thing} released from ${groups.join(', ')}.`;
      await loadOverview();
    } catch (e) { status.textContent = `Cannot release: ${e.message}`; }
  }
  async function deactivate(id) {
    const ok = await confirmAction('Deactivate certificate', `Deactivate certificate ${id}? ${thing}'s sessions with it end at once and it cannot connect with it again until it is activated.`, 'Deactivate');
    if (!ok) return;
    try {
      await api('PUT', `/certificates/${enc(id)}?newStatus=INACTIVE`);
      status.textContent = `Certificate ${id.slice(0, 12)}… deactivated.`;
      await loadOverview();
    } catch (e) { status.textContent = `Cannot deactivate: ${e.message}`; }
  }

  async function refresh() {
    try {
      await loadOverview();
      if (!mounted) {
        mounted = true;
        for (const c of charts.values()) c.mount();
      }
      await Promise.all([loadProfiles(), loadViolations(), loadMetrics()]);
      el.dataset.loaded = 'true';
    } catch (e) {
      status.textContent = e.status === 404 ? `No thing named ${thing}.` : `Cannot load ${thing}: ${e.message}`;
    }
  }
  let reloadTimer = null;
  const soon = (f) => { clearTimeout(reloadTimer); reloadTimer = setTimeout(f, 150); };
  let overviewTimer = null;
  function onEvent(ev) {
    if (ev.type === 'report' && ev.thing === thing) {
      for (const [metric, value] of Object.entries(ev.metrics)) {
        const chart = charts.get(metric);
        if (chart) chart.append(ev.timestamp, numeric(value));
      }
      const latest = SET_METRICS.map(([m], i) => ev.metrics[m] ?? lastSets[i]);
      renderSets(latest);
      if (overview) { overview.lastReportTime = ev.timestamp; renderOverview(); }
    } else if (ev.type === 'cloud-metrics') {
      loadMetrics(CLOUD_METRICS).catch(() => {});
    } else if (ev.type === 'violation' && ev.thing === thing) {
      soon(() => Promise.all([loadViolations(), loadOverview()]).catch(() => {}));
    } else if ((ev.type === 'groups' && (ev.thing === thing || ev.thing === null)) || ev.type === 'certificate'
        || (ev.type === 'session' && ev.thing === thing && overview)) {
      // Certificate events name no thing: any of them may be this one's. Bursts load once.
      clearTimeout(overviewTimer);
      overviewTimer = setTimeout(() => loadOverview().catch(() => {}), 150);
    }
  }
  const dispose = () => {
    clearTimeout(reloadTimer);
    clearTimeout(overviewTimer);
    for (const c of charts.values()) c.dispose();
  };
  return { el, refresh, onEvent, dispose };
}

// ---------------------------------------------------------------------------------------------
// Violations view

const VERIFICATION_STATES = ['UNKNOWN', 'TRUE_POSITIVE', 'BENIGN_POSITIVE', 'FALSE_POSITIVE'];
const RANGES = [['3600', 'Last hour'], ['86400', 'Last 24 hours'], ['604800', 'Last 7 days'], ['2592000', 'Last 30 days']];

function violationsView() {
  const thingInput = h('input', { type: 'search', id: 'filter-thing', placeholder: 'thing name' });
  const profileInput = h('input', { type: 'search', id: 'filter-profile', placeholder: 'profile name' });
  const stateSelect = h('select', { id: 'filter-state' }, h('option', { value: '' }, 'any'), VERIFICATION_STATES.map((s) => h('option', { value: s }, s)));
  const rangeSelect = h('select', { id: 'filter-range' }, RANGES.map(([v, l]) => h('option', { value: v, selected: v === '86400' }, l)));
  const activeBox = h('div', { id: 'active-violations' });
  const historyBox = h('div', { id: 'violation-history' });
  const status = h('p', { class: 'status', role: 'status' });
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); refresh(); } },
    h('label', {}, 'Thing', thingInput), h('label', {}, 'Profile', profileInput),
    h('label', {}, 'Verification', stateSelect), h('label', {}, 'History', rangeSelect),
    h('button', { type: 'submit' }, 'Apply'));
  for (const c of [stateSelect, rangeSelect]) c.addEventListener('change', () => refresh());
  const el = h('section', { 'aria-labelledby': 'violations-title' },
    h('h1', { id: 'violations-title' }, 'Violations'), form, status,
    h('h2', {}, 'Active'), activeBox, h('h2', {}, 'History'), historyBox);

  function filters() {
    let q = '';
    if (thingInput.value.trim()) q += `&thingName=${enc(thingInput.value.trim())}`;
    if (profileInput.value.trim()) q += `&securityProfileName=${enc(profileInput.value.trim())}`;
    if (stateSelect.value) q += `&verificationState=${stateSelect.value}`;
    return q;
  }
  function stateControl(v) {
    const select = h('select', { 'aria-label': `Verification state of ${v.violationId}` },
      VERIFICATION_STATES.map((s) => h('option', { value: s, selected: s === v.verificationState }, s)));
    const button = h('button', { type: 'button', class: 'quiet set-state', onclick: async () => {
      button.disabled = true;
      try {
        await api('POST', `/violations/verification-state/${enc(v.violationId)}`, { verificationState: select.value });
        status.textContent = `Violation ${v.violationId.slice(0, 8)}… marked ${select.value}.`;
        refresh();
      } catch (e) { status.textContent = `Cannot set the state: ${e.message}`; button.disabled = false; }
    } }, 'Set');
    return h('span', { class: 'inline' }, select, button);
  }
  const table = (rows, head, cells, id) => (rows.length
    ? h('div', { class: 'table-wrap' }, h('table', { id }, h('thead', {}, h('tr', {}, head.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', { dataset: { violation: r.violationId } }, cells(r).map((c) => h('td', {}, c)))))))
    : h('p', { class: 'muted' }, 'None.'));
  async function refresh() {
    try {
      const now = Date.now();
      const since = now - Number(rangeSelect.value) * 1000;
      const [active, events] = await Promise.all([
        allPages(`/active-violations?maxResults=250${filters()}`, 'activeViolations', 8),
        allPages(`/violation-events?startTime=${iso(since)}&endTime=${iso(now + 60000)}&maxResults=250${filters()}`, 'violationEvents', 8),
      ]);
      fill(activeBox, table(active, ['Thing', 'Profile', 'Behavior', 'Last value', 'Since', 'Verification'],
        (v) => [thingLink(v.thingName), v.securityProfileName, h('span', { class: 'mono' }, ruleText(v.behavior)), fmtValue(v.lastViolationValue), fmtTime(v.violationStartTime), stateControl(v)], 'active-table'));
      events.sort((a, b) => b.violationEventTime - a.violationEventTime);
      fill(historyBox, table(events.slice(0, 500), ['Time', 'Event', 'Thing', 'Profile', 'Behavior', 'Value', 'Verification'],
        (e) => [fmtTime(e.violationEventTime), e.violationEventType === 'in-alarm' ? h('span', { class: 'badge bad' }, e.violationEventType) : h('span', { class: 'badge off' }, e.violationEventType),
          thingLink(e.thingName), e.securityProfileName, e.behavior.name, fmtValue(e.metricValue), stateControl(e)], 'history-table'));
    } catch (e) { status.textContent = `Cannot load violations: ${e.message}`; }
  }
  let timer = null;
  function onEvent(ev) {
    if (ev.type === 'violation') { clearTimeout(timer); timer = setTimeout(refresh, 200); }
  }
  return { el, refresh, onEvent, dispose: () => clearTimeout(timer) };
}

// ---------------------------------------------------------------------------------------------
// Security profiles view

function targetText(arn) {
  const m = arn.match(/:(all\/[a-z-]+|thinggroup\/.+)$/);
  if (!m) return arn;
  if (m[1] === 'all/things') return 'all things';
  if (m[1] === 'all/registered-things') return 'all registered things';
  if (m[1] === 'all/unregistered-things') return 'all unregistered things';
  return `group ${m[1].slice('thinggroup/'.length)}`;
}

function profilesView() {
  const list = h('div', { class: 'cards', id: 'profiles' });
  const topicsBox = h('div', { id: 'alert-topics' });
  const status = h('p', { class: 'status', role: 'status' });
  const el = h('section', { 'aria-labelledby': 'profiles-title' },
    h('h1', { id: 'profiles-title' }, 'Security profiles'), status, list,
    h('h2', {}, 'Alert topics'), topicsBox);
  async function refresh() {
    try {
      const names = await allPages('/security-profiles?maxResults=250', 'securityProfileIdentifiers', 8);
      const profiles = await Promise.all(names.map(async (p) => {
        const [described, targets] = await Promise.all([
          api('GET', `/security-profiles/${enc(p.name)}`),
          allPages(`/security-profiles/${enc(p.name)}/targets?maxResults=250`, 'securityProfileTargets', 8),
        ]);
        return { described, targets };
      }));
      fill(list, ...profiles.map(({ described: d, targets }) => h('article', { class: 'card', dataset: { profile: d.securityProfileName } },
        h('h2', { style: 'margin-top:0' }, d.securityProfileName),
        d.securityProfileDescription ? h('p', { class: 'muted' }, d.securityProfileDescription) : null,
        h('h3', {}, 'Behaviors'),
        (d.behaviors || []).length ? h('ul', { class: 'rules' }, d.behaviors.map((b) => h('li', { class: 'mono' }, ruleText(b)))) : h('p', { class: 'muted' }, 'None.'),
        h('h3', {}, 'Targets'),
        targets.length ? h('p', {}, targets.map((t) => h('span', { class: 'chip' }, targetText(t.arn)))) : h('p', { class: 'muted' }, 'Not attached.'),
        h('h3', {}, 'Alerts'),
        h('p', {}, Object.values(d.alertTargets || {}).map((t) => h('span', { class: 'chip' }, t.alertTargetArn.split(':').pop())), Object.keys(d.alertTargets || {}).length ? null : 'none'),
        h('h3', {}, 'Automatic mitigation'),
        h('p', {}, (d.automaticMitigationActions || []).length ? d.automaticMitigationActions.map((a) => h('span', { class: 'chip' }, a)) : 'none'))));
      if (!profiles.length) fill(list, h('p', { class: 'muted' }, 'No security profiles yet.'));
      const topics = await allPages('/warden/alert-topics?maxResults=250', 'topics', 8);
      const subs = await Promise.all(topics.map((t) => allPages(`/warden/alert-topics/${enc(t.topicName)}/subscriptions?maxResults=250`, 'subscriptions', 4)));
      fill(topicsBox, topics.length
        ? h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Topic', 'Subscriptions', 'Delivered'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, topics.map((t, i) => h('tr', {}, h('td', {}, t.topicName),
            h('td', {}, subs[i].length ? subs[i].map((s) => h('div', { class: 'mono' }, `${s.protocol} ${s.endpoint}`)) : 'none'),
            h('td', { class: 'num' }, String(subs[i].reduce((n, s) => n + (s.delivered || 0), 0))))))))
        : h('p', { class: 'muted' }, 'No alert topics.'));
    } catch (e) { status.textContent = `Cannot load profiles: ${e.message}`; }
  }
  return { el, refresh, onEvent: () => {} };
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  $('#sign-in-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('#sign-in-error').textContent = '';
    try {
      await signIn($('#token').value);
      $('#token').value = '';
    } catch (err) {
      $('#sign-in-error').textContent = err.status === 403 ? 'That is not the API token.' : `Cannot sign in: ${err.message}`;
    }
  });
  $('#sign-out').addEventListener('click', async () => {
    // The live view stops first: an event arriving meanwhile would fetch with the ending session.
    signedOut();
    try { await api('DELETE', '/dashboard/session'); } catch { /* the server is gone: so is the session */ }
  });
  window.addEventListener('hashchange', () => { if (!$('#nav').hidden) route(); });

  // A sign-in link carries the token in the fragment, which browsers never send to a server.
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    history.replaceState(null, '', `${location.pathname}${location.search}#/fleet`);
    try {
      await signIn(decodeURIComponent(m[1]));
      return;
    } catch (err) {
      signedOut();
      $('#sign-in-error').textContent = 'The sign-in link is not valid (the token may have changed).';
      return;
    }
  }
  const session = await api('GET', '/dashboard/session');
  if (session.signedIn) startSession(); else signedOut();
}

start();
