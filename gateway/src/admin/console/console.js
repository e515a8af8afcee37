// The admin console: a client of the admin API (/admin/v1) in the browser.
// It holds the admin token in this tab's sessionStorage and sends it as a
// bearer token; the API never reads cookies, so another site cannot make the
// browser act with it (no CSRF). Everything shown is set with textContent or
// attributes, never parsed as HTML.
'use strict';

(() => {
  const API = '/admin/v1';
  const KEY = 'session-gateway-admin-token';
  const REFRESH_MS = 10000;
  const $ = (id) => document.getElementById(id);
  let timer = null;

  const status = (text, isError) => {
    const el = $('status');
    el.textContent = text || '';
    el.classList.toggle('error', Boolean(isError));
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const token = sessionStorage.getItem(KEY);
    const response = await fetch(API + path, {
      ...options,
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiError(response.status, body.detail || response.statusText);
    }
    return body;
  }

  const cell = (text, className) => {
    const td = document.createElement('td');
    td.textContent = text === undefined || text === null ? '' : String(text);
    if (className) td.className = className;
    return td;
  };

  const fill = (tbody, rows) => {
    tbody.replaceChildren(...rows);
  };

  const emptyRow = (columns, text) => {
    const tr = document.createElement('tr');
    const td = cell(text);
    td.colSpan = columns;
    tr.append(td);
    return tr;
  };

  // "3 h 4 min", "12 min", "40 s".
  const span = (ms) => {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  };

  const todayUtc = () => {
    const now = new Date();
    return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())).toISOString();
  };

  const sum = (counts) => Object.values(counts || {}).reduce((a, b) => a + b, 0);

  function setPoolOptions(select, pools, keepAll) {
    const current = select.value;
    const options = pools.map((p) => {
      const o = document.createElement('option');
      o.value = p.pool;
      o.textContent = p.pool;
      return o;
    });
    if (keepAll) {
      const all = document.createElement('option');
      all.value = '';
      all.textContent = 'All pools';
      options.unshift(all);
    }
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  async function loadPools() {
    const licenses = await api('/licenses');
    const rows = await Promise.all(licenses.pools.map(async (p) => {
      const day = await api('/usage?pool=' + encodeURIComponent(p.pool) + '&step=day&from=' + encodeURIComponent(todayUtc()));
      const today = day.intervals[day.intervals.length - 1] || {};
      const tr = document.createElement('tr');
      const name = document.createElement('th');
      name.scope = 'row';
      name.textContent = p.pool;
      tr.append(name, cell(p.limit, 'num'), cell(p.in_use, 'num'), cell(p.free, 'num'),
        cell(today.peak ?? 0, 'num'), cell(sum(today.refused), 'num'));
      return tr;
    }));
    fill($('pools').tBodies[0], rows.length ? rows : [emptyRow(6, 'No pools are configured.')]);
    setPoolOptions($('usage-pool'), licenses.pools, false);
    setPoolOptions($('filter-pool'), licenses.pools, true);
    return licenses.pools;
  }

  const RANGES = {
    day: { step: 'hour', ms: 24 * 3600e3 },
    week: { step: 'hour', ms: 7 * 24 * 3600e3 },
    month: { step: 'day', ms: 30 * 24 * 3600e3 },
  };

  async function loadUsage(pools) {
    const pool = $('usage-pool').value;
    const svg = $('usage-chart');
    if (!pool) {
      svg.replaceChildren();
      return;
    }
    const range = RANGES[$('usage-range').value] || RANGES.day;
    const from = new Date(Date.now() - range.ms).toISOString();
    const report = await api('/usage?pool=' + encodeURIComponent(pool) + '&step=' + range.step + '&from=' + encodeURIComponent(from));
    const limit = (pools.find((p) => p.pool === pool) || {}).limit || 0;
    const peaks = report.intervals.map((i) => i.peak);
    const top = Math.max(limit, ...peaks, 1);
    const ns = 'http://www.w3.org/2000/svg';
    const width = 720, height = 200;
    // Bars sit at their time within the whole range, so a history younger
    // than the range shows where it begins.
    const start = Date.parse(report.from), end = Date.parse(report.to);
    const scale = width / Math.max(end - start, 1);
    const bars = report.intervals.map((interval) => {
      const h = (interval.peak / top) * (height - 10);
      const x = (Date.parse(interval.start) - start) * scale;
      const w = (Date.parse(interval.end) - Date.parse(interval.start)) * scale;
      const rect = document.createElementNS(ns, 'rect');
      rect.setAttribute('class', 'bar');
      rect.setAttribute('x', String(Math.max(x, 0) + 0.5));
      rect.setAttribute('y', String(height - h));
      rect.setAttribute('width', String(Math.max(w - 1, 0.5)));
      rect.setAttribute('height', String(h));
      const title = document.createElementNS(ns, 'title');
      title.textContent = interval.start + ': peak ' + interval.peak + ', ' + interval.seat_hours + ' seat-hours';
      rect.append(title);
      return rect;
    });
    const line = document.createElementNS(ns, 'line');
    const y = String(height - (limit / top) * (height - 10));
    line.setAttribute('class', 'limit');
    line.setAttribute('x1', '0');
    line.setAttribute('x2', String(width));
    line.setAttribute('y1', y);
    line.setAttribute('y2', y);
    svg.replaceChildren(...bars, line);
    const most = peaks.length ? Math.max(...peaks) : 0;
    $('usage-caption').textContent = 'Peak seats per ' + range.step + ' of pool ' + pool + ' since ' + report.from +
      ': at most ' + most + ' of a limit of ' + limit + ' (dashed line), ' + peaks.length + ' intervals.';
  }

  async function loadSessions() {
    const params = new URLSearchParams({ limit: '100' });
    const pool = $('filter-pool').value;
    const subject = $('filter-subject').value.trim();
    if (pool) params.set('pool', pool);
    if (subject) params.set('subject', subject);
    const list = await api('/sessions?' + params.toString());
    const now = Date.now();
    const rows = list.sessions.map((s) => {
      const tr = document.createElement('tr');
      const close = document.createElement('button');
      close.type = 'button';
      close.textContent = 'Close';
      close.setAttribute('aria-label', 'Close the session of ' + s.subject + ' in pool ' + s.pool);
      close.addEventListener('click', () => closeSession(s));
      const action = document.createElement('td');
      action.append(close);
      tr.append(cell(s.subject), cell(s.client || '—'), cell(s.pool),
        cell(span(now - Date.parse(s.created)), 'num'), cell(span(now - Date.parse(s.last_seen)), 'num'), action);
      tr.dataset.sessionId = s.session_id;
      return tr;
    });
    fill($('sessions').tBodies[0], rows.length ? rows : [emptyRow(6, 'No open sessions match.')]);
  }

  async function closeSession(session) {
    if (!window.confirm('Close the session of ' + session.subject + ' in pool ' + session.pool + ' and free its seat?')) {
      return;
    }
    try {
      await api('/sessions/' + encodeURIComponent(session.session_id), { method: 'DELETE' });
      status('Closed the session of ' + session.subject + '.');
    } catch (e) {
      status(e.message, true);
    }
    await refresh();
  }

  async function loadAudit() {
    const trail = await api('/audit?limit=20');
    const rows = trail.events.map((e) => {
      const tr = document.createElement('tr');
      tr.append(cell(e.time), cell(e.event), cell(e.pool), cell(e.subject), cell(e.reason));
      return tr;
    });
    fill($('audit').tBodies[0], rows.length ? rows : [emptyRow(5, 'No events yet.')]);
  }

  async function refresh() {
    try {
      const pools = await loadPools();
      await Promise.all([loadUsage(pools), loadSessions(), loadAudit()]);
      if (!$('status').classList.contains('error')) {
        document.body.dataset.loaded = new Date().toISOString();
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        signOut('The admin token was not accepted.');
        return;
      }
      status(e.message, true);
    }
  }

  function showConsole(signedIn) {
    $('login-section').hidden = signedIn;
    $('console').hidden = !signedIn;
    $('sign-out').hidden = !signedIn;
    clearInterval(timer);
    if (signedIn) {
      timer = setInterval(refresh, REFRESH_MS);
      refresh();
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    delete document.body.dataset.loaded;
    status(message || 'Signed out.', Boolean(message));
    showConsole(false);
    $('token').focus();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login').addEventListener('submit', async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $('token').value.trim());
      $('token').value = '';
      try {
        await api('/licenses');
        status('');
        showConsole(true);
      } catch (e) {
        signOut(e instanceof ApiError && e.status === 401 ? 'The admin token was not accepted.' : e.message);
      }
    });
    $('sign-out').addEventListener('click', () => signOut());
    $('refresh').addEventListener('click', () => { status(''); refresh(); });
    $('sessions-filter').addEventListener('submit', (event) => { event.preventDefault(); loadSessions().catch((e) => status(e.message, true)); });
    $('usage-form').addEventListener('change', () => { loadPools().then(loadUsage).catch((e) => status(e.message, true)); });
    showConsole(Boolean(sessionStorage.getItem(KEY)));
  });
})();
