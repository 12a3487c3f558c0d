// The jobpipe console: plain DOM, no framework, no build step. Every value from the API reaches the page as
// text (textContent, text nodes, attribute values), never as markup: a job's metadata and result are the
// tenant's own data and may hold any. The API key lives in this tab's sessionStorage and goes only into the
// x-api-key header of calls to this same API (the page's own origin; its CSP allows no other).
'use strict';

(() => {
  const API = document.documentElement.dataset.api || '';
  const KEY_SLOT = 'jobpipe.apiKey';
  const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'expired', 'timed_out']);
  const CANCELLABLE = new Set(['queued', 'running']);
  const STATUSES = ['queued', 'running', 'canceling', 'succeeded', 'failed', 'canceled', 'expired', 'timed_out'];
  const PAGE_SIZE = 20;
  const LIVE_MS = 2000;      // while something shown is unfinished
  const IDLE_MS = 10000;     // otherwise: new jobs still appear without a reload
  const USAGE_PAGES = 5;     // without GET /v1/usage, the usage page sums at most this many pages of 100 jobs
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const announcer = document.getElementById('announce');

  let generation = 0;        // bumped on every navigation: late answers for a page left are dropped
  let timer = null;
  let jobsState = { status: '', cursors: [null], index: 0 };

  // --- DOM ---------------------------------------------------------------------------------------------

  function h(tag, props, ...children) {
    const node = tag.startsWith('svg:') ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
      : document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    return append(node, ...children);
  }

  function append(node, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replace(node, ...children) {
    node.replaceChildren();
    return append(node, ...children);
  }

  function announce(text) {
    announcer.textContent = '';
    announcer.textContent = text;
  }

  // A link only to http(s): a presigned URL the API gave; never a javascript: or data: one.
  function safeUrl(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  // --- formatting --------------------------------------------------------------------------------------

  function when(iso) {
    if (!iso) return h('span', { class: 'muted', text: '—' });
    const date = new Date(iso);
    return h('time', { datetime: iso, title: iso, text: isNaN(date) ? iso : date.toLocaleString() });
  }

  function duration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function between(from, to) {
    return from && to ? Date.parse(to) - Date.parse(from) : null;
  }

  function usd(value) {
    if (typeof value !== 'number') return '—';
    if (value === 0) return '$0';
    return '$' + (value >= 1 ? value.toFixed(2) : value.toPrecision(2));
  }

  function jobCost(job) {
    const cost = job.cost || {};
    if (cost.actual) return { total: cost.actual.total, estimated: false };
    if (cost.estimate) return { total: cost.estimate.total, estimated: true };
    return null;
  }

  function tokens(usage) {
    if (!usage) return 0;
    return (usage.input_tokens || 0) + (usage.output_tokens || 0) + (usage.cache_creation_input_tokens || 0)
      + (usage.cache_read_input_tokens || 0);
  }

  function statusBadge(status) {
    return h('span', { class: `status status-${status}`, text: status });
  }

  function json(value) {
    return h('pre', { tabindex: 0, text: JSON.stringify(value, null, 2) });
  }

  function facts(rows) {
    return h('dl', { class: 'facts' }, rows.filter(Boolean).map(([name, value]) => [h('dt', { text: name }), h('dd', {}, value)]));
  }

  // Any JSON value as readable HTML: objects as facts, lists of objects as tables, the rest as text.
  function render(value) {
    if (value === null || value === undefined) return h('span', { class: 'muted', text: '—' });
    if (Array.isArray(value)) {
      if (value.length && value.every((v) => v && typeof v === 'object' && !Array.isArray(v))) {
        return table(null, [...new Set(value.flatMap(Object.keys))].map((k) => [k, (row) => render(row[k])]), value);
      }
      return h('ul', {}, value.map((v) => h('li', {}, render(v))));
    }
    if (typeof value === 'object') return facts(Object.entries(value).map(([k, v]) => [k, render(v)]));
    return String(value);
  }

  function table(caption, columns, rows) {
    return h('div', { class: 'scroll' }, h('table', {},
      caption ? h('caption', { text: caption }) : null,
      h('thead', {}, h('tr', {}, columns.map(([name, , cls]) => h('th', { scope: 'col', class: cls, text: name })))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell, cls]) => h('td', { class: cls }, cell(row))))))));
  }

  // --- the API -----------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, type, message, field) {
      super(message);
      this.status = status;
      this.type = type;
      this.field = field;
    }
  }

  function key() {
    return sessionStorage.getItem(KEY_SLOT);
  }

  async function api(method, path, body, apiKey) {
    const headers = { 'x-api-key': apiKey || key() || '' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(API + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit',
      });
    } catch (error) {
      throw new ApiError(0, 'network', `the API did not answer (${error.message})`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.type || `http_${response.status}`,
        error.message || text || response.statusText, error.field);
    }
    return { status: response.status, data };
  }

  // An error as the API worded it, with its type and the field it names.
  function errorBox(error) {
    const detail = [error.type, error.field ? `field ${error.field}` : null, error.status ? `HTTP ${error.status}` : null]
      .filter(Boolean).join(', ');
    return h('div', { class: 'alert', role: 'alert' }, h('strong', { text: error.message }), detail ? ` (${detail})` : null);
  }

  // --- navigation --------------------------------------------------------------------------------------

  function stopRefresh() {
    clearTimeout(timer);
    timer = null;
  }

  function later(mine, ms, fn) {
    stopRefresh();
    timer = setTimeout(() => { if (mine === generation) fn(); }, ms);
  }

  function parseHash() {
    const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : 'jobs';
    const [path, query] = hash.split('?');
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
  }

  function route() {
    if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor (the skip link)
    stopRefresh();
    const mine = ++generation;
    if (!key()) {
      nav.hidden = true;
      signIn();
      return;
    }
    nav.hidden = false;
    const { parts, query } = parseHash();
    const page = parts[0] || 'jobs';
    for (const link of nav.querySelectorAll('a[data-page]')) {
      if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    main.replaceChildren();
    if (page === 'jobs' && parts.length === 1) jobsPage(mine, query.get('status') || '');
    else if (page === 'jobs' && parts.length === 2) jobPage(mine, parts[1]);
    else if (page === 'jobs' && parts[2] === 'deliveries') deliveriesPage(mine, parts[1]);
    else if (page === 'usage') usagePage(mine, query);
    else if (page === 'tasks' && parts.length === 1) tasksPage(mine);
    else if (page === 'tasks' && parts[2] === 'submit') submitPage(mine, parts[1]);
    else if (page === 'capacity') capacityPage(mine);
    else append(main, h('h1', { text: 'Not found' }), h('p', {}, 'No such page. ', h('a', { href: '#/jobs', text: 'See the jobs.' })));
  }

  function title(text) {
    document.title = `${text} · jobpipe console`;
    const heading = h('h1', { text });
    main.append(heading);
    return heading;
  }

  // --- sign in -----------------------------------------------------------------------------------------

  function signIn() {
    title('Sign in');
    const input = h('input', { id: 'api-key', type: 'password', name: 'api-key', autocomplete: 'off', required: true,
      spellcheck: 'false', 'aria-describedby': 'api-key-hint' });
    const problem = h('div');
    const form = h('form', { class: 'signin', method: 'post', action: '#' },
      h('div', { class: 'field' },
        h('label', { for: 'api-key', text: 'API key' }), input,
        h('span', { class: 'hint', id: 'api-key-hint',
          text: 'Kept in this tab only (session storage) and sent to this API alone, in the x-api-key header.' })),
      problem,
      h('button', { type: 'submit', class: 'primary', text: 'Open the console' }));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const candidate = input.value.trim();
      if (!candidate) return;
      try {
        await api('GET', '/v1/jobs?limit=1', undefined, candidate);
      } catch (error) {
        replace(problem, errorBox(error));
        return;
      }
      sessionStorage.setItem(KEY_SLOT, candidate);
      probeCapacity();
      if (!location.hash.startsWith('#/')) location.hash = '#/jobs';
      route();
    });
    main.append(form);
    input.focus();
  }

  function signOut() {
    sessionStorage.removeItem(KEY_SLOT);
    jobsState = { status: '', cursors: [null], index: 0 };
    document.getElementById('nav-capacity').hidden = true;
    location.hash = '#/jobs';
    route();
  }

  // The capacity page is offered wherever the API has the route (an older API answers 404); another error is
  // the page's to show, as the API words it.
  async function probeCapacity() {
    const link = document.getElementById('nav-capacity');
    try {
      await api('GET', '/v1/capacity');
      link.hidden = false;
    } catch (error) {
      link.hidden = error.status === 404;
    }
  }

  // --- jobs --------------------------------------------------------------------------------------------

  function jobsPage(mine, status) {
    if (status !== jobsState.status) jobsState = { status, cursors: [null], index: 0 };
    title('Jobs');
    const filter = h('select', { id: 'status-filter' }, h('option', { value: '', text: 'any' }),
      STATUSES.map((s) => h('option', { value: s, text: s, selected: s === status })));
    filter.addEventListener('change', () => { location.hash = filter.value ? `#/jobs?status=${filter.value}` : '#/jobs'; });
    const list = h('div', { id: 'jobs-list', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    const pageLabel = h('span', { class: 'muted', id: 'page-label' });
    const previous = h('button', { type: 'button', id: 'previous-page', text: 'Previous page', disabled: true });
    const next = h('button', { type: 'button', id: 'next-page', text: 'Next page', disabled: true });
    const updated = h('p', { class: 'muted', id: 'jobs-updated' });
    let shown = null;
    previous.addEventListener('click', () => { jobsState.index -= 1; shown = null; load(); });
    next.addEventListener('click', () => { jobsState.index += 1; shown = null; load(); });
    append(main,
      h('div', { class: 'toolbar' }, h('div', {}, h('label', { for: 'status-filter', text: 'Status ' }), filter),
        h('a', { href: '#/tasks', text: 'Submit a job…' })),
      list, h('div', { class: 'pager' }, previous, pageLabel, next), updated);

    async function load() {
      const cursor = jobsState.cursors[jobsState.index];
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (status) query.set('status', status);
      if (cursor) query.set('cursor', cursor);
      let page;
      try {
        page = (await api('GET', `/v1/jobs?${query}`)).data;
      } catch (error) {
        if (mine !== generation) return;
        replace(list, errorBox(error));
        list.setAttribute('aria-busy', 'false');
        later(mine, IDLE_MS, load);
        return;
      }
      if (mine !== generation) return;
      jobsState.cursors[jobsState.index + 1] = page.next_cursor || null;
      const text = JSON.stringify(page.jobs);
      if (text !== shown) {
        shown = text;
        replace(list, page.jobs.length ? jobsTable(page.jobs)
          : h('p', { id: 'no-jobs', text: status ? `No ${status} jobs.` : 'No jobs yet.' }));
      }
      list.setAttribute('aria-busy', 'false');
      previous.disabled = jobsState.index === 0;
      next.disabled = !page.next_cursor;
      pageLabel.textContent = `Page ${jobsState.index + 1}`;
      const unfinished = page.jobs.filter((job) => !TERMINAL.has(job.status)).length;
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}` + (unfinished ? `; ${unfinished} unfinished, refreshing live.` : '.');
      later(mine, unfinished ? LIVE_MS : IDLE_MS, load);
    }
    load();
  }

  function jobsTable(jobs) {
    return table(`${jobs.length} jobs, newest first`, [
      ['Job', (job) => h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'mono', text: job.id })],
      ['Task', (job) => job.task],
      ['Status', (job) => [statusBadge(job.status), job.waiting ? h('div', { class: 'muted', text: job.waiting }) : null]],
      ['Route', (job) => (job.route && job.route.lane) || '—', 'wide-only'],
      ['Created', (job) => when(job.created_at), 'wide-only'],
      ['Took', (job) => duration(between(job.created_at, job.finished_at)), 'num'],
      ['Cost', (job) => { const c = jobCost(job); return c ? usd(c.total) + (c.estimated ? ' est.' : '') : '—'; }, 'num'],
    ], jobs);
  }

  // --- a job -------------------------------------------------------------------------------------------

  function jobPage(mine, id) {
    title(`Job ${id}`);
    const actions = h('div', { class: 'toolbar' });
    const problem = h('div');
    const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    append(main, actions, problem, body);
    let shown = null;

    async function load() {
      let job;
      try {
        job = (await api('GET', `/v1/jobs/${encodeURIComponent(id)}`)).data;
      } catch (error) {
        if (mine === generation) replace(body, errorBox(error));
        return;
      }
      if (mine !== generation) return;
      const text = JSON.stringify(job);
      if (text !== shown) {
        shown = text;
        replace(actions, jobActions(job, problem, load));
        replace(body, jobDetails(job));
        body.setAttribute('aria-busy', 'false');
      }
      if (!TERMINAL.has(job.status)) later(mine, LIVE_MS, load);
    }
    load();
  }

  function jobActions(job, problem, reload) {
    const items = [statusBadge(job.status)];
    if (CANCELLABLE.has(job.status)) {
      const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-job', text: 'Cancel job' });
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        try {
          const { data } = await api('POST', `/v1/jobs/${encodeURIComponent(job.id)}/cancel`);
          problem.replaceChildren();
          announce(`Job ${data.status}.`);
        } catch (error) {
          replace(problem, errorBox(error));
          cancel.disabled = false;
        }
        reload();
      });
      items.push(cancel);
    }
    if (job.webhook) items.push(h('a', { href: `#/jobs/${encodeURIComponent(job.id)}/deliveries`, text: 'Webhook deliveries' }));
    items.push(h('a', { href: '#/jobs', text: 'All jobs' }));
    return items;
  }

  function jobDetails(job) {
    const parts = [
      waitingNote(job),
      job.error ? h('div', { class: 'alert', role: 'status' }, h('strong', { text: job.error.message || '' }),
        job.error.type ? ` (${job.error.type})` : null) : null,
      h('h2', { text: 'Timeline' }), timeline(job),
      h('h2', { text: 'Route' }),
      facts([['lane', (job.route && job.route.lane) || '—'], ['reason', (job.route && job.route.reason) || '—'],
        ['mode', job.mode], ['task', job.task], job.batch_id ? ['batch', job.batch_id] : null,
        job.source ? ['source', render(job.source)] : null]),
      h('h2', { text: 'Attempts' }),
      h('p', { text: `${job.attempts || 0} attempt${job.attempts === 1 ? '' : 's'}` }),
      job.attempt_errors ? render(job.attempt_errors) : null,
      h('h2', { text: 'Usage and cost' }), usageAndCost(job),
      h('h2', { text: 'Result' }), result(job),
      h('h2', { text: 'Metadata' }),
      h('div', { id: 'metadata' }, job.metadata && Object.keys(job.metadata).length ? render(job.metadata)
        : h('p', { class: 'muted', text: 'None.' })),
    ];
    if (job.webhook) {
      parts.push(h('h2', { text: 'Webhook' }), facts([['url', job.webhook.url], ['events', (job.webhook.events || []).join(', ')],
        ['delivery', job.webhook.delivery]]));
    }
    return parts;
  }

  function waitingNote(job) {
    if (job.status !== 'queued') return null;
    const lines = [];
    if (job.waiting) lines.push(h('p', {}, h('strong', { text: 'Waiting: ' }), job.waiting));
    else lines.push(h('p', { text: `Waiting for a worker of the ${(job.route && job.route.lane) || '—'} lane.` }));
    if (job.queue_deadline_at) lines.push(h('p', {}, 'Expires unless started by ', when(job.queue_deadline_at), '.'));
    return h('div', { class: 'waiting', id: 'waiting' }, lines);
  }

  function timeline(job) {
    const queued = job.route && job.route.lane && job.route.lane !== 'inline';
    const ended = TERMINAL.has(job.status);
    const steps = [['created', job.created_at, null]];
    if (queued) steps.push(['queued', job.created_at, null]);
    steps.push(['started', job.started_at, job.started_at ? `after ${duration(between(job.created_at, job.started_at))} waiting` : null]);
    steps.push([ended ? job.status : 'finished', job.finished_at,
      job.finished_at ? `after ${duration(job.started_at ? between(job.started_at, job.finished_at) : between(job.created_at, job.finished_at))}` +
        (job.started_at ? ' running' : '') : null]);
    return h('ol', { class: 'timeline' }, steps.map(([name, at, note]) => h('li', { class: at ? null : 'pending' },
      h('strong', { text: name }), ' ', at ? when(at) : h('span', { class: 'muted', text: 'not yet' }),
      note ? h('span', { class: 'muted', text: ` · ${note}` }) : null)));
  }

  function usageAndCost(job) {
    const cost = job.cost || {};
    const rows = [];
    for (const [name, part] of [['actual', cost.actual], ['estimate', cost.estimate]]) {
      if (!part) continue;
      rows.push({ name, total: part.total, breakdown: part.breakdown || {}, basis: part.basis });
    }
    return [
      job.usage ? facts(Object.entries(job.usage).map(([k, v]) => [k.replaceAll('_', ' '), String(v)])) : null,
      rows.length ? table('Cost (USD)', [
        ['', (r) => r.name],
        ['total', (r) => usd(r.total), 'num'],
        ['breakdown', (r) => Object.entries(r.breakdown).map(([k, v]) => `${k} ${usd(v)}`).join(', ')],
        ['basis', (r) => h('span', { class: 'muted', text: r.basis || '' }), 'wide-only'],
      ], rows) : null,
    ];
  }

  function result(job) {
    const out = [];
    if (job.result_status === 'expired') out.push(h('p', { class: 'notice', text: 'The result has expired (past its retention).' }));
    if (job.result !== undefined && job.result !== null) out.push(json(job.result));
    const link = job.result_url ? safeUrl(job.result_url) : null;
    if (link) out.push(h('p', {}, h('a', { href: link, rel: 'noopener noreferrer', text: 'Download the result' })));
    if (job.files) {
      out.push(h('ul', {}, Object.entries(job.files).map(([name, file]) => {
        const href = file.url ? safeUrl(file.url) : null;
        const label = `${name}${file.bytes ? ` (${file.bytes} bytes)` : ''}`;
        return h('li', {}, href ? h('a', { href, rel: 'noopener noreferrer', text: label }) : label);
      })));
    }
    if (job.result_expires_at) out.push(h('p', { class: 'muted' }, 'Kept until ', when(job.result_expires_at), '.'));
    return out.length ? out : h('p', { class: 'muted', text: TERMINAL.has(job.status) ? 'No result.' : 'Not yet.' });
  }

  // --- deliveries --------------------------------------------------------------------------------------

  function deliveriesPage(mine, id) {
    title(`Deliveries of job ${id}`);
    const problem = h('div');
    const redeliver = h('button', { type: 'button', id: 'redeliver', text: 'Redeliver the event' });
    const body = h('div', { id: 'deliveries', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    append(main, h('div', { class: 'toolbar' }, redeliver, h('a', { href: `#/jobs/${encodeURIComponent(id)}`, text: 'The job' })),
      problem, body);
    let shown = null;
    const path = `/v1/jobs/${encodeURIComponent(id)}/deliveries`;

    function show(log) {
      const text = JSON.stringify(log);
      if (text === shown) return;
      shown = text;
      replace(body, log.deliveries.length ? log.deliveries.map(delivery)
        : h('p', { text: 'No delivery yet: the event is sent when the job finishes.' }));
      body.setAttribute('aria-busy', 'false');
    }

    async function load() {
      try {
        const log = (await api('GET', path)).data;
        if (mine !== generation) return;
        show(log);
        if (!log.deliveries.length || log.deliveries.some((d) => d.state === 'pending')) later(mine, LIVE_MS, load);
      } catch (error) {
        if (mine === generation) replace(body, errorBox(error));
      }
    }

    redeliver.addEventListener('click', async () => {
      redeliver.disabled = true;
      try {
        const log = (await api('POST', path)).data;
        problem.replaceChildren();
        announce('Sent again: a new series of attempts.');
        show(log);
        later(mine, LIVE_MS, load);
      } catch (error) {
        replace(problem, errorBox(error));
      }
      redeliver.disabled = false;
    });
    load();
  }

  function delivery(d) {
    return h('section', { class: 'card' },
      h('h2', {}, `${d.type} → `, h('span', { class: 'mono', text: d.url })),
      facts([['state', statusBadge(d.state)], ['summary', d.summary], ['event id', h('span', { class: 'mono', text: d.event_id })],
        ['series', String(d.series)], d.next_attempt_at ? ['next attempt', when(d.next_attempt_at)] : null,
        d.reason ? ['reason', d.reason] : null]),
      table('Attempts', [
        ['#', (a) => String(a.attempt), 'num'], ['series', (a) => String(a.series ?? ''), 'num'], ['at', (a) => when(a.at)],
        ['HTTP', (a) => (a.status === undefined ? '—' : String(a.status)), 'num'], ['took', (a) => duration(a.duration_ms), 'num'],
        ['error', (a) => [a.error || '', a.detail ? h('div', { class: 'muted', text: a.detail }) : null]],
      ], d.attempts));
  }

  // --- usage -------------------------------------------------------------------------------------------

  // From the API's usage counters (GET /v1/usage), by day and by task over the same days; an API without the
  // endpoint (404) gets the old estimate, summed from the tenant's latest jobs.
  async function usagePage(mine, query) {
    title('Usage');
    const from = h('input', { id: 'usage-from', name: 'from', type: 'date', value: query.get('from') || '' });
    const to = h('input', { id: 'usage-to', name: 'to', type: 'date', value: query.get('to') || '' });
    const form = h('form', { class: 'toolbar', method: 'get', action: '#' },
      h('div', {}, h('label', { for: 'usage-from', text: 'From ' }), from),
      h('div', {}, h('label', { for: 'usage-to', text: 'To ' }), to),
      h('button', { type: 'submit', text: 'Show' }),
      h('span', { class: 'muted', text: 'Days in UTC; empty: this month so far.' }));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const range = new URLSearchParams();
      if (from.value) range.set('from', from.value);
      if (to.value) range.set('to', to.value);
      location.hash = range.toString() ? `#/usage?${range}` : '#/usage';
    });
    const body = h('div', { id: 'usage', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    append(main, form, body);
    const range = new URLSearchParams();
    for (const name of ['from', 'to']) if (query.get(name)) range.set(name, query.get(name));
    const ask = (group) => api('GET', `/v1/usage?${new URLSearchParams([...range, ['group_by', group]])}`);
    let byDay;
    let byTask;
    try {
      [byDay, byTask] = (await Promise.all([ask('day'), ask('task')])).map((answer) => answer.data);
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 404) {
        form.hidden = true;
        usageFromJobs(mine, body);
      } else {
        replace(body, errorBox(error));
        body.setAttribute('aria-busy', 'false');
      }
      return;
    }
    if (mine !== generation) return;
    if (!from.value) from.value = byDay.from;
    if (!to.value) to.value = byDay.to;
    const days = byDay.groups.map((g) => usageGroup(g.day, g));
    const perTask = byTask.groups.map((g) => usageGroup(g.task, g));
    body.setAttribute('aria-busy', 'false');
    replace(body,
      h('p', { class: 'notice', text: `From ${byDay.from} to ${byDay.to} (UTC), as the API counts it: each job as it finishes, `
        + 'on the day it finished, with its actual cost and tokens (input, output, cache reads and writes).' }),
      byDay.budget ? usageBudget(byDay.budget) : null,
      h('h2', { text: 'Total' }), usageTotal(byDay.total),
      days.length ? [
        h('h2', { text: 'Cost per day' }), chart(days, 'cost', usd, 'Cost per day'),
        h('h2', { text: 'Tokens per day' }), chart(days, 'tokens', String, 'Tokens per day'),
        h('h2', { text: 'Per task' }), chart(perTask, 'cost', usd, 'Cost per task'),
        usageTable('Per day', 'day', days), usageTable('Per task', 'task', perTask),
      ] : h('p', { id: 'no-usage', text: 'No job finished on these days.' }));
  }

  // A row of GET /v1/usage as the charts and tables take it.
  function usageGroup(name, row) {
    const t = row.tokens || {};
    return { name: name || '—', jobs: (row.jobs && row.jobs.total) || 0, cost: row.cost_usd || 0,
      tokens: (t.input || 0) + (t.output || 0) + (t.cache_read || 0) + (t.cache_write || 0),
      calls: row.model_calls || 0, compute: row.compute_s || 0 };
  }

  function usageTotal(total) {
    const g = usageGroup('total', total);
    const outcomes = Object.entries(total.jobs || {}).filter(([name]) => name !== 'total').map(([name, n]) => `${n} ${name}`);
    const t = total.tokens || {};
    return h('dl', { class: 'facts', id: 'usage-total' },
      h('dt', { text: 'jobs' }), h('dd', { id: 'total-jobs', text: `${g.jobs}${outcomes.length ? ` (${outcomes.join(', ')})` : ''}` }),
      h('dt', { text: 'cost' }), h('dd', { id: 'total-cost', text: `$${g.cost.toFixed(6)}` }),
      h('dt', { text: 'tokens' }), h('dd', {}, h('span', { id: 'total-tokens', text: String(g.tokens) }),
        h('span', { class: 'muted', text: ` (input ${t.input || 0}, output ${t.output || 0}, cache reads ${t.cache_read || 0}, `
          + `cache writes ${t.cache_write || 0})` })),
      h('dt', { text: 'model calls' }), h('dd', { id: 'total-calls', text: String(g.calls) }),
      h('dt', { text: 'compute' }), h('dd', { text: duration(g.compute * 1000) }));
  }

  function usageBudget(budget) {
    return h('section', { class: 'card', id: 'usage-budget', 'aria-labelledby': 'budget-heading' },
      h('h2', { id: 'budget-heading', text: 'Monthly budget' }),
      h('meter', { min: 0, max: budget.monthly_usd || 1, value: budget.month_spent_usd, 'aria-labelledby': 'budget-heading' }),
      h('p', { text: `$${budget.month_spent_usd.toFixed(6)} of $${budget.monthly_usd} spent this month (UTC); `
        + `$${budget.remaining_usd.toFixed(6)} left. A job whose estimate exceeds what is left is refused.` }));
  }

  async function usageFromJobs(mine, body) {
    const jobs = [];
    let cursor = null;
    let more = false;
    try {
      for (let page = 0; page < USAGE_PAGES; page++) {
        const query = new URLSearchParams({ limit: '100' });
        if (cursor) query.set('cursor', cursor);
        const data = (await api('GET', `/v1/jobs?${query}`)).data;
        jobs.push(...data.jobs);
        cursor = data.next_cursor;
        more = Boolean(cursor);
        if (!cursor) break;
      }
    } catch (error) {
      if (mine === generation) replace(body, errorBox(error));
      return;
    }
    if (mine !== generation) return;
    const byDay = sum(jobs, (job) => (job.created_at || '').slice(0, 10));
    const byTask = sum(jobs, (job) => job.task);
    body.setAttribute('aria-busy', 'false');
    replace(body,
      h('p', { class: 'notice', text: `This API has no usage endpoint: from your ${jobs.length} most recent jobs`
        + `${more ? ' (older ones are not counted)' : ''}, the actual cost of finished jobs, and their tokens `
        + '(input, output and cached prefix), per day (UTC) and per task.' }),
      jobs.length ? [
        h('h2', { text: 'Cost per day' }), chart(byDay, 'cost', usd, 'Cost per day'),
        h('h2', { text: 'Tokens per day' }), chart(byDay, 'tokens', String, 'Tokens per day'),
        h('h2', { text: 'Per task' }), chart(byTask, 'cost', usd, 'Cost per task'),
        usageTable('Per day', 'day', byDay), usageTable('Per task', 'task', byTask),
      ] : h('p', { text: 'No jobs yet.' }));
  }

  function sum(jobs, keyOf) {
    const groups = new Map();
    for (const job of jobs) {
      const name = keyOf(job) || '—';
      const group = groups.get(name) || { name, jobs: 0, cost: 0, tokens: 0 };
      group.jobs += 1;
      group.cost += (job.cost && job.cost.actual && job.cost.actual.total) || 0;
      group.tokens += tokens(job.usage);
      groups.set(name, group);
    }
    return [...groups.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  function usageTable(caption, label, groups) {
    const counted = groups.length && groups[0].calls !== undefined; // the API's rows also count calls and compute
    return table(caption, [
      [label, (g) => g.name], ['jobs', (g) => String(g.jobs), 'num'], ['cost', (g) => usd(g.cost), 'num'],
      ['tokens', (g) => String(g.tokens), 'num'],
      counted ? ['model calls', (g) => String(g.calls), 'num wide-only'] : null,
      counted ? ['compute', (g) => duration(g.compute * 1000), 'num wide-only'] : null,
    ].filter(Boolean), groups);
  }

  // Horizontal bars as SVG built node by node (no markup strings); the table beside it holds the same numbers.
  function chart(groups, field, format, label) {
    const row = 24;
    const width = 640;
    const labelWidth = 170;
    const barSpace = width - labelWidth - 90;
    const top = Math.max(...groups.map((g) => g[field]), 0) || 1;
    const svg = h('svg:svg', { class: 'chart', viewBox: `0 0 ${width} ${groups.length * row + 8}`, role: 'img',
      'aria-label': `${label}: ${groups.map((g) => `${g.name} ${format(g[field])}`).join('; ')}` });
    groups.forEach((g, i) => {
      const y = i * row + 4;
      const length = Math.max(1, Math.round((g[field] / top) * barSpace));
      svg.append(
        h('svg:text', { x: labelWidth - 8, y: y + 15, 'text-anchor': 'end', text: g.name.length > 26 ? g.name.slice(0, 25) + '…' : g.name }),
        h('svg:rect', { class: 'bar', x: labelWidth, y: y + 3, width: length, height: row - 8, rx: 2 }),
        h('svg:text', { x: labelWidth + length + 6, y: y + 15, text: format(g[field]) }));
    });
    svg.append(h('svg:line', { class: 'axis', x1: labelWidth, x2: labelWidth, y1: 0, y2: groups.length * row + 8 }));
    return svg;
  }

  // --- tasks and the submit form -----------------------------------------------------------------------

  let taskCatalogue = null;

  async function tasks() {
    if (!taskCatalogue) taskCatalogue = (await api('GET', '/v1/tasks')).data.tasks;
    return taskCatalogue;
  }

  async function tasksPage(mine) {
    title('Tasks');
    const body = h('div', { class: 'cards', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    main.append(body);
    let catalogue;
    try {
      catalogue = await tasks();
    } catch (error) {
      if (mine === generation) replace(body, errorBox(error));
      return;
    }
    if (mine !== generation) return;
    body.setAttribute('aria-busy', 'false');
    replace(body, catalogue.map((task) => h('section', { class: 'card', 'aria-labelledby': `task-${task.name}` },
      h('h2', { id: `task-${task.name}`, class: 'mono', text: task.name }),
      h('p', { text: task.description || '' }),
      facts([
        ['routes to', (task.route && task.route.lane) || 'nowhere here'],
        ['why', (task.route && task.route.reason) || '—'],
        ['expected', duration(task.profile && task.profile.expected_duration_s * 1000)],
        task.typical_cost ? ['typical cost', usd(task.typical_cost.total)] : null,
      ]),
      h('details', {}, h('summary', { text: 'Input schema' }), json(task.input_schema)),
      task.route && task.route.lane ? h('p', {}, h('a', { href: `#/tasks/${encodeURIComponent(task.name)}/submit`,
        text: `Submit a ${task.name} job` })) : null)));
  }

  async function submitPage(mine, name) {
    title(`Submit a ${name} job`);
    let task;
    try {
      task = (await tasks()).find((t) => t.name === name);
    } catch (error) {
      if (mine === generation) main.append(errorBox(error));
      return;
    }
    if (mine !== generation) return;
    if (!task) {
      main.append(h('p', {}, 'No such task. ', h('a', { href: '#/tasks', text: 'See the tasks.' })));
      return;
    }
    const schema = task.input_schema || {};
    const required = new Set(schema.required || []);
    const fields = Object.entries(schema.properties || {}).map(([prop, spec]) => inputField(prop, spec || {}, required.has(prop)));
    const mode = h('select', { id: 'job-mode', name: 'mode' }, ['auto', 'sync', 'async'].map((m) => h('option', { value: m, text: m })));
    const metadata = h('textarea', { id: 'job-metadata', name: 'metadata', rows: 2, placeholder: '{"customer": "acme"}' });
    const webhook = h('input', { id: 'job-webhook', name: 'webhook', type: 'url', placeholder: 'https://example.com/hooks', size: 40 });
    const problem = h('div');
    const form = h('form', { method: 'post', action: '#', novalidate: true },
      h('p', { class: 'muted', text: schema.description || task.description || '' }),
      h('fieldset', {}, h('legend', { text: 'Input' }), fields.map((f) => f.node)),
      h('fieldset', {}, h('legend', { text: 'Job' }),
        field('job-mode', 'Mode', mode, 'auto: the router decides; sync: run now or fail; async: queue it.'),
        field('job-metadata', 'Metadata (JSON object of strings, optional)', metadata),
        field('job-webhook', 'Webhook URL (optional)', webhook)),
      problem,
      h('button', { type: 'submit', class: 'primary', id: 'submit-job', text: 'Submit' }));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = { task: name, input: {}, mode: mode.value };
      try {
        for (const f of fields) {
          const value = f.value();
          if (value !== undefined) body.input[f.name] = value;
        }
        if (metadata.value.trim()) body.metadata = parseJson('metadata', metadata.value);
      } catch (error) {
        replace(problem, errorBox(error));
        return;
      }
      if (webhook.value.trim()) body.webhook = { url: webhook.value.trim() };
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const { data } = await api('POST', '/v1/jobs', body);
        location.hash = `#/jobs/${encodeURIComponent(data.id)}`;
      } catch (error) {
        replace(problem, errorBox(error));
        button.disabled = false;
      }
    });
    main.append(form);
  }

  function field(id, label, control, hint) {
    if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
    return h('div', { class: 'field' }, h('label', { for: id, text: label }), control,
      hint ? h('span', { class: 'hint', id: `${id}-hint`, text: hint }) : null);
  }

  function parseJson(name, text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ApiError(0, 'invalid_json', `${name} is not valid JSON: ${error.message}`, name);
    }
  }

  // One control per top-level property of the input schema: text, number, a choice, or JSON for the rest.
  function inputField(name, spec, isRequired) {
    const id = `input-${name}`;
    const label = `${name}${isRequired ? ' (required)' : ''}`;
    const hint = [spec.description, spec.default !== undefined ? `default: ${JSON.stringify(spec.default)}` : null]
      .filter(Boolean).join('; ');
    const type = Array.isArray(spec.type) ? spec.type[0] : spec.type;
    let control;
    let value;
    if (Array.isArray(spec.enum) || type === 'boolean') {
      const choices = Array.isArray(spec.enum) ? spec.enum : [true, false];
      control = h('select', { id, name }, h('option', { value: '', text: isRequired ? 'choose…' : '(default)' }),
        choices.map((c, i) => h('option', { value: String(i), text: JSON.stringify(c) })));
      value = () => (control.value === '' ? undefined : choices[Number(control.value)]);
    } else if (type === 'integer' || type === 'number') {
      control = h('input', { id, name, type: 'number', step: type === 'integer' ? 1 : 'any', min: spec.minimum, max: spec.maximum });
      value = () => (control.value === '' ? undefined : Number(control.value));
    } else if (type === 'string') {
      control = !spec.maxLength || spec.maxLength > 200 ? h('textarea', { id, name, rows: 3 }) : h('input', { id, name, type: 'text', size: 40 });
      value = () => (control.value === '' ? undefined : control.value);
    } else {
      control = h('textarea', { id, name, rows: 4, placeholder: 'JSON' });
      value = () => (control.value.trim() === '' ? undefined : parseJson(name, control.value));
    }
    if (isRequired) control.setAttribute('aria-required', 'true');
    return { name, value, node: field(id, type && !['string', 'integer', 'number', 'boolean'].includes(type) && !spec.enum ? `${label} (JSON)` : label, control, hint) };
  }

  // --- capacity ----------------------------------------------------------------------------------------

  // GET /v1/capacity: each model family's budget (per minute: the limits, what is left now, the share in use) and
  // the caller's own jobs waiting for a grant; refreshed while shown.
  async function capacityPage(mine) {
    title('Capacity');
    const body = h('div', { id: 'capacity', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading…' }));
    const updated = h('p', { class: 'muted', id: 'capacity-updated' });
    append(main, body, updated);
    let shown = null;
    async function load() {
      let data;
      try {
        data = (await api('GET', '/v1/capacity')).data;
      } catch (error) {
        if (mine !== generation) return;
        replace(body, errorBox(error));
        body.setAttribute('aria-busy', 'false');
        shown = null;
        later(mine, IDLE_MS, load);
        return;
      }
      if (mine !== generation) return;
      const text = JSON.stringify(data);
      if (text !== shown) {
        shown = text;
        replace(body, capacityView(data));
      }
      body.setAttribute('aria-busy', 'false');
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
      later(mine, data.waiting && data.waiting.jobs ? LIVE_MS : IDLE_MS, load);
    }
    load();
  }

  function capacityView(data) {
    if (data.admission !== 'on') {
      return h('p', { class: 'notice', id: 'admission', text: 'Admission is off in this deployment: model calls are not paced '
        + 'by a shared budget, so no job waits for one (a call the model refuses for its rate limit is retried).' });
    }
    const waiting = data.waiting || { jobs: 0, of_queued_jobs_seen: 0, waited_ms: 0 };
    return [
      h('p', { class: 'notice', id: 'admission', text: 'Admission is on: every model call first takes a grant from its model '
        + "family's budget per minute (requests, input tokens, output tokens), shared by every tenant; a job whose call "
        + 'finds the budget spent waits in the queue for its grant instead of being refused.' }),
      h('h2', { text: 'Your jobs waiting for capacity' }),
      h('div', { class: waiting.jobs ? 'waiting' : null, id: 'capacity-waiting' }, facts([
        ['waiting', `${waiting.jobs} of the ${waiting.of_queued_jobs_seen} queued jobs seen`],
        waiting.jobs ? ['next grant expected', when(waiting.next_grant_expected_at)] : null,
        waiting.jobs ? ['waited so far', duration(waiting.waited_ms)] : null,
      ])),
      h('h2', { text: 'Budgets' }),
      data.budgets.length ? h('div', { class: 'budgets' }, data.budgets.map(budgetCard))
        : h('p', { text: 'No model budget is configured.' }),
    ];
  }

  function budgetCard(budget) {
    const dimensions = [['requests', 'rpm', 'requests'], ['input tokens', 'itpm', 'input_tokens'], ['output tokens', 'otpm', 'output_tokens']];
    const limits = budget.limits || {};
    const configured = budget.configured || {};
    const share = (value) => (typeof value === 'number' ? `${Math.round(value * 1000) / 10} %` : '—');
    const count = (value) => (typeof value === 'number' ? String(Math.floor(value)) : '—');
    const id = `budget-${budget.family}`;
    return h('section', { class: 'card', 'aria-labelledby': id },
      h('h2', { id, class: 'mono', text: budget.family }),
      table(`The ${budget.family} budget`, [
        ['per minute', ([name]) => name],
        ['limit', ([, key]) => count(limits[key]) + (configured[key] !== undefined && configured[key] !== limits[key]
          ? ` (configured ${configured[key]})` : ''), 'num'],
        ['left now', ([, , key]) => count((budget.available || {})[key]), 'num'],
        ['in use', ([, , key]) => share((budget.in_use || {})[key]), 'num'],
      ], dimensions),
      facts([
        ['your recent share', share(budget.your_recent_share)],
        ['blocked until', budget.blocked_until ? when(budget.blocked_until) : 'not blocked'],
      ]));
  }

  // --- start -------------------------------------------------------------------------------------------

  document.getElementById('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  if (key()) probeCapacity();
  route();
})();
