/* Strait web UI: Setup, Cluster and Chat views. Talks only to the server
 * that serves it (strait run, or strait chat which proxies to it):
 * POST /v1/chat/completions with stream:true (SSE read through
 * fetch + ReadableStream), GET /v1/models, GET /health, and for the other
 * views GET /cluster/status, its SSE stream GET /cluster/status/stream, and
 * POST /cluster/setup when the scheduler offers it.
 *
 * Safety: model output is never parsed as HTML. renderMarkdown() builds DOM
 * nodes and sets text with textContent only; links are kept only for
 * http(s) URLs. The server's Content-Security-Policy forbids inline script
 * as a second line of defence.
 *
 * State lives in localStorage: "strait.settings" (temperature, max tokens,
 * system prompt, API key) and "strait.chats" (conversations). */
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
};

/* ---- persisted state ------------------------------------------------------ */

const DEFAULTS = { temperature: 0.7, max_tokens: 512, system: '', apiKey: '' };

function load(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v === null ? fallback : v;
  } catch (e) {
    return fallback;
  }
}
function save(key, v) {
  try { localStorage.setItem(key, JSON.stringify(v)); } catch (e) { /* full or disabled: keep in memory */ }
}

let settings = Object.assign({}, DEFAULTS, load('strait.settings', {}));
/* chats: [{id, title, messages: [{role, content, stats?, error?}]}], newest first */
let chats = load('strait.chats', []);
if (!Array.isArray(chats)) chats = [];
let currentId = load('strait.current', null);
let busy = null; /* {controller} while a reply streams */

function current() {
  let c = chats.find((x) => x.id === currentId);
  if (!c) {
    c = { id: String(Date.now()) + Math.random().toString(36).slice(2, 6), title: 'New chat', messages: [] };
    chats.unshift(c);
    currentId = c.id;
  }
  return c;
}
function persist() {
  save('strait.chats', chats);
  save('strait.current', currentId);
}

/* ---- safe markdown ---------------------------------------------------------- */

/* Inline spans: `code`, **bold**, *italic* / _italic_, [text](http://...). */
function renderInline(text, parent) {
  const re = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*([^*\n]+)\*\*|\*([^*\s][^*\n]*)\*|\b_([^_\n]+)_\b|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) parent.appendChild(el('code', null, m[2]));
    else if (m[3] !== undefined) renderInline(m[3], parent.appendChild(el('strong')));
    else if (m[4] !== undefined) renderInline(m[4], parent.appendChild(el('em')));
    else if (m[5] !== undefined) renderInline(m[5], parent.appendChild(el('em')));
    else {
      const a = el('a', null, m[6]);
      a.href = m[7];
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      parent.appendChild(a);
    }
    last = re.lastIndex;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

/* Block structure: fenced code (``` or ~~~, possibly still open while
 * streaming), headings, lists, block quotes, paragraphs. */
function renderBlocks(text, parent) {
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)\s*([\w+#.-]*)/.exec(line);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i++; /* the closing fence, if any */
      const pre = el('pre');
      if (fence[2]) pre.appendChild(el('span', 'lang', fence[2]));
      pre.appendChild(el('code', null, body.join('\n')));
      parent.appendChild(pre);
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) {
      renderInline(h[2], parent.appendChild(el('h' + Math.min(6, h[1].length + 2))));
      i++;
      continue;
    }
    const item = /^\s*([-*+]|\d{1,9}[.)])\s+/;
    if (item.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = parent.appendChild(el(ordered ? 'ol' : 'ul'));
      while (i < lines.length && item.test(lines[i])) {
        renderInline(lines[i].replace(item, ''), list.appendChild(el('li')));
        i++;
      }
      continue;
    }
    if (/^\s*>/.test(line)) {
      const q = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) q.push(lines[i++].replace(/^\s*>\s?/, ''));
      renderBlocks(q.join('\n'), parent.appendChild(el('blockquote')));
      continue;
    }
    if (line.trim() === '') { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() !== '' && !/^\s*(```|~~~|#{1,6}\s|>|[-*+]\s|\d{1,9}[.)]\s)/.test(lines[i]))
      para.push(lines[i++]);
    if (para.length === 0) para.push(lines[i++]); /* a line no rule above took */
    renderInline(para.join('\n'), parent.appendChild(el('p')));
  }
}

/* Markdown with <think>...</think> sections (the closing tag may not have
 * arrived yet) as collapsible <details>. openThinks: which sections were
 * open before a re-render, so streaming does not fold what the user opened. */
function renderMarkdown(text, openThinks) {
  const frag = document.createDocumentFragment();
  const re = /<think>([\s\S]*?)(<\/think>|$)/g;
  let last = 0, m, k = 0;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) renderBlocks(text.slice(last, m.index), frag);
    const d = el('details', 'think');
    const done = m[2] !== '';
    d.appendChild(el('summary', null, done ? 'Thinking' : 'Thinking\u2026'));
    renderBlocks(m[1].trim(), d);
    d.open = openThinks && openThinks[k] !== undefined ? openThinks[k] : !done;
    frag.appendChild(d);
    k++;
    last = re.lastIndex;
    if (m[0].length === 0) break;
  }
  if (last < text.length) renderBlocks(text.slice(last), frag);
  return frag;
}

/* ---- messages view ---------------------------------------------------------- */

function fmtStats(s) {
  if (!s) return '';
  const parts = [];
  if (s.completion_tokens !== undefined) parts.push(s.completion_tokens + ' tokens');
  if (s.prompt_tokens !== undefined) parts.push(s.prompt_tokens + ' prompt');
  if (s.ttft_ms !== undefined) parts.push('TTFT ' + s.ttft_ms.toFixed(0) + ' ms');
  if (s.tok_s !== undefined) parts.push(s.tok_s.toFixed(1) + ' tok/s');
  if (s.finish) parts.push(s.finish);
  return parts.join(' \u00b7 ');
}

function messageNode(msg) {
  const box = el('article', 'msg ' + msg.role + (msg.error ? ' error' : ''));
  box.appendChild(el('div', 'who', msg.role === 'user' ? 'You' : msg.role === 'assistant' ? 'Assistant' : msg.role));
  const body = box.appendChild(el('div', 'body'));
  if (msg.role === 'user') body.appendChild(el('p', null, msg.content));
  else body.appendChild(renderMarkdown(msg.content || ''));
  box.appendChild(el('div', 'stats', fmtStats(msg.stats)));
  return box;
}

function updateMessageNode(box, msg) {
  const body = box.querySelector('.body');
  const opens = Array.from(body.querySelectorAll(':scope > details.think')).map((d) => d.open);
  body.replaceChildren(renderMarkdown(msg.content || '', opens));
  box.querySelector('.stats').textContent = fmtStats(msg.stats);
  box.classList.toggle('error', !!msg.error);
}

function nearBottom(n) { return n.scrollHeight - n.scrollTop - n.clientHeight < 80; }

function renderMessages() {
  const list = $('messages');
  const c = current();
  list.replaceChildren();
  if (c.messages.length === 0) list.appendChild(el('p', 'empty', 'Send a message to start a conversation.'));
  for (const m of c.messages) list.appendChild(messageNode(m));
  list.scrollTop = list.scrollHeight;
}

function renderConversations() {
  const ul = $('conversations');
  ul.replaceChildren();
  for (const c of chats) {
    const li = el('li', c.id === currentId ? 'current' : '');
    const open = li.appendChild(el('button', 'open', c.title || 'New chat'));
    open.type = 'button';
    if (c.id === currentId) open.setAttribute('aria-current', 'true');
    open.addEventListener('click', () => {
      if (busy) return;
      currentId = c.id;
      persist();
      renderAll();
      $('side').classList.remove('open');
      $('input').focus();
    });
    const del = li.appendChild(el('button', 'del', '\u00d7'));
    del.type = 'button';
    del.setAttribute('aria-label', 'Delete conversation ' + (c.title || ''));
    del.addEventListener('click', () => {
      if (busy && c.id === currentId) return;
      chats = chats.filter((x) => x !== c);
      if (currentId === c.id) currentId = chats.length ? chats[0].id : null;
      persist();
      renderAll();
    });
    ul.appendChild(li);
  }
}

function renderAll() { renderConversations(); renderMessages(); }

function setBusy(on) {
  $('send').disabled = on;
  $('stop').hidden = !on;
  $('messages').setAttribute('aria-busy', on ? 'true' : 'false');
  if (!on) busy = null;
}

/* ---- the API ------------------------------------------------------------------ */

function authHeaders() {
  const h = {};
  if (settings.apiKey) h.Authorization = 'Bearer ' + settings.apiKey;
  return h;
}

async function errorText(res) {
  try {
    const j = await res.json();
    if (j && j.error && j.error.message) return 'HTTP ' + res.status + ': ' + j.error.message;
  } catch (e) { /* not JSON */ }
  return 'HTTP ' + res.status;
}

/* Read a text/event-stream response to its end, calling onData(data, event)
 * for each event with its "data:" lines joined by newlines (comments and
 * other fields skipped). onData may throw to stop reading. */
async function readEvents(res, onData) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
        const data = [];
        let event = 'message';
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
          else if (line.startsWith('event:')) event = line.slice(6).trim();
        }
        if (data.length) onData(data.join('\n'), event);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/* Stream one assistant reply into msg (already in the conversation) and
 * its node; resolves when the stream ends, fails or is stopped. */
async function streamReply(conv, msg, box) {
  const controller = new AbortController();
  busy = { controller };
  setBusy(true);
  const history = conv.messages.filter((m) => m !== msg && !m.error).map((m) => ({ role: m.role, content: m.content }));
  if (settings.system.trim()) history.unshift({ role: 'system', content: settings.system });
  const req = { messages: history, stream: true, stream_options: { include_usage: true } };
  const t = Number(settings.temperature), mt = Number(settings.max_tokens);
  if (Number.isFinite(t)) req.temperature = t;
  if (Number.isFinite(mt) && mt > 0) req.max_tokens = Math.floor(mt);

  const t0 = performance.now();
  let tFirst = 0, chunks = 0, usage = null, finish = '';
  let pending = false;
  const list = $('messages');
  const paint = () => {
    pending = false;
    const stick = nearBottom(list);
    updateMessageNode(box, msg);
    if (stick) list.scrollTop = list.scrollHeight;
  };
  const schedule = () => { if (!pending) { pending = true; requestAnimationFrame(paint); } };
  box.classList.add('streaming');
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: Object.assign({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }, authHeaders()),
      body: JSON.stringify(req),
      signal: controller.signal,
    });
    if (!res.ok) throw new Error(await errorText(res));
    await readEvents(res, (data) => {
      if (data === '[DONE]') return;
      let j;
      try { j = JSON.parse(data); } catch (e) { return; }
      if (j.error) throw new Error(j.error.message || 'server error');
      if (j.usage) usage = j.usage;
      const ch = j.choices && j.choices[0];
      if (!ch) return;
      if (ch.finish_reason) finish = ch.finish_reason;
      const piece = ch.delta && ch.delta.content;
      if (piece) {
        if (!tFirst) tFirst = performance.now();
        chunks++;
        msg.content += piece;
        schedule();
      }
    });
  } catch (e) {
    if (e.name === 'AbortError') finish = 'stopped';
    else { msg.error = true; msg.content += (msg.content ? '\n\n' : '') + String(e.message || e); }
  }
  const tEnd = performance.now();
  const n = usage && usage.completion_tokens !== undefined ? usage.completion_tokens : chunks;
  msg.stats = { completion_tokens: n, finish: finish || undefined };
  if (usage && usage.prompt_tokens !== undefined) msg.stats.prompt_tokens = usage.prompt_tokens;
  if (tFirst) {
    msg.stats.ttft_ms = tFirst - t0;
    if (n > 1 && tEnd > tFirst) msg.stats.tok_s = (n - 1) / ((tEnd - tFirst) / 1000);
  }
  box.classList.remove('streaming');
  updateMessageNode(box, msg);
  box.dataset.done = finish || (msg.error ? 'error' : 'done');
  persist();
  setBusy(false);
}

async function send() {
  const input = $('input');
  const text = input.value.trim();
  if (!text || busy) return;
  input.value = '';
  const conv = current();
  if (conv.messages.length === 0) conv.title = text.slice(0, 48);
  conv.messages.push({ role: 'user', content: text });
  const msg = { role: 'assistant', content: '' };
  conv.messages.push(msg);
  persist();
  renderAll();
  const boxes = $('messages').querySelectorAll('.msg');
  await streamReply(conv, msg, boxes[boxes.length - 1]);
  input.focus();
}

async function poll() {
  const h = $('health');
  try {
    const r = await fetch('/health', { cache: 'no-store' });
    h.textContent = r.ok ? 'ready' : (await r.json().catch(() => ({}))).status || 'HTTP ' + r.status;
    h.classList.toggle('bad', !r.ok);
    if (r.ok && !$('model').textContent) {
      const m = await fetch('/v1/models', { headers: authHeaders() });
      if (m.ok) {
        const j = await m.json();
        if (j.data && j.data[0]) $('model').textContent = j.data[0].id;
      } else if (m.status === 401) {
        h.textContent = 'API key needed (Settings)';
        h.classList.add('bad');
      }
    }
  } catch (e) {
    h.textContent = 'server unreachable';
    h.classList.add('bad');
  }
}

/* ---- views -------------------------------------------------------------------- */

const VIEWS = ['setup', 'cluster', 'chat'];
let view = '';

/* Show the view named by the URL fragment (default: chat). The status
 * stream runs only while Setup or Cluster is on screen. */
function showView() {
  const want = location.hash.replace(/^#/, '');
  const next = VIEWS.includes(want) ? want : 'chat';
  if (next === view) return;
  view = next;
  for (const v of VIEWS) {
    $('view-' + v).hidden = v !== view;
    const tab = $('tab-' + v);
    if (v === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  $('toggle-side').hidden = view !== 'chat';
  document.body.dataset.view = view;
  if (view === 'chat') {
    statusWatch(false);
    $('input').focus();
  } else {
    statusWatch(true);
    if (view === 'setup') setupProbe();
  }
}

/* ---- cluster status ------------------------------------------------------------- */

/* The last GET /cluster/status answer (shape: sched/cluster/cluster.h
 * st_cluster_status_json), and how it is being followed. */
let status = null;
const live = { controller: null, timer: 0, mode: '', since: 0, error: '' };

function statusWatch(on) {
  if (live.controller) live.controller.abort();
  live.controller = null;
  clearTimeout(live.timer);
  live.timer = 0;
  live.mode = '';
  if (on) statusStream();
}

/* Follow GET /cluster/status/stream. A browser EventSource cannot send the
 * API key, so the stream is read through fetch like the chat replies. A
 * server without the stream (404) is polled; a broken stream is retried
 * after a second, polling in between, so a server that went away shows as
 * such. */
async function statusStream() {
  const controller = new AbortController();
  live.controller = controller;
  live.mode = 'stream';
  try {
    const res = await fetch('/cluster/status/stream', {
      headers: Object.assign({ Accept: 'text/event-stream' }, authHeaders()),
      cache: 'no-store',
      signal: controller.signal,
    });
    if (res.status === 404 || res.status === 405) { statusPoll(controller); return; }
    if (!res.ok) throw new Error(await errorText(res));
    live.error = '';
    await readEvents(res, (data, event) => {
      let j;
      try { j = JSON.parse(data); } catch (e) { return; }
      /* an API error is {"error":{"message":...}}; a status's own "error" is the plan's (a string) */
      const apiError = j.error && typeof j.error === 'object';
      if (event === 'error' || apiError) { live.error = (apiError && j.error.message) || 'status error'; renderStatus(); return; }
      live.error = '';
      setStatus(j);
    });
    if (controller.signal.aborted) return;
    throw new Error('the status stream ended');
  } catch (e) {
    if (controller.signal.aborted) return;
    live.error = String(e.message || e);
    renderStatus();
    live.timer = setTimeout(() => { if (live.controller === controller) statusStream(); }, 1000);
  }
}

/* Poll GET /cluster/status every 2 s (servers without the stream). */
async function statusPoll(controller) {
  live.mode = 'poll';
  if (controller.signal.aborted) return;
  try {
    const res = await fetch('/cluster/status', { headers: authHeaders(), cache: 'no-store', signal: controller.signal });
    if (res.status === 404) { status = null; live.error = ''; live.mode = 'none'; renderStatus(); return; }
    if (!res.ok) throw new Error(await errorText(res));
    live.error = '';
    setStatus(await res.json());
  } catch (e) {
    if (controller.signal.aborted) return;
    live.error = String(e.message || e);
    renderStatus();
  }
  if (!controller.signal.aborted) live.timer = setTimeout(() => statusPoll(controller), 2000);
}

function setStatus(j) {
  status = j && typeof j === 'object' ? j : null;
  live.since = Date.now();
  renderStatus();
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const GONE = ['failed', 'left'];

function fmtBytes(b) {
  if (num(b) === undefined || b <= 0) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (b >= 100 || i === 0 ? b.toFixed(0) : b.toFixed(1)) + ' ' + u[i];
}

/* Layers of the whole model: the status's n_layers when it gives one,
 * else the highest layer any node holds. */
function modelLayers(s) {
  if (num(s.n_layers) > 0) return s.n_layers;
  let n = 0;
  for (const nd of s.nodes || []) if (Array.isArray(nd.layers) && num(nd.layers[1]) !== undefined) n = Math.max(n, nd.layers[1]);
  return n;
}

function cell(tr, text, cls) {
  const td = tr.appendChild(el('td', cls || null));
  if (text !== undefined) td.textContent = text;
  return td;
}

function layerCell(tr, layers, total) {
  const td = cell(tr);
  const has = Array.isArray(layers) && num(layers[0]) !== undefined && num(layers[1]) !== undefined && layers[1] > layers[0];
  const label = has ? 'layers ' + layers[0] + '\u2013' + layers[1] + (total ? ' of ' + total : '') : 'no layers';
  const bar = td.appendChild(el('div', 'bar'));
  bar.setAttribute('role', 'img');
  bar.setAttribute('aria-label', label);
  if (has && total > 0) {
    const span = bar.appendChild(el('span'));
    /* CSSOM, which the page's style-src 'self' policy allows (inline style attributes it does not) */
    span.style.left = (100 * layers[0] / total) + '%';
    span.style.width = (100 * (layers[1] - layers[0]) / total) + '%';
  }
  td.appendChild(el('span', 'sub', label));
  td.dataset.layers = has ? layers[0] + '-' + layers[1] : '';
}

function stateBadge(tr, state, error) {
  const s = typeof state === 'string' && state ? state : 'unknown';
  const td = cell(tr);
  td.appendChild(el('span', 'state ' + s.replace(/[^a-z]/g, ''), s));
  if (typeof error === 'string' && error) td.appendChild(el('span', 'sub', error));
}

function emptyRow(tbody, cols, text) {
  const tr = tbody.appendChild(el('tr'));
  const td = cell(tr, text, 'empty');
  td.colSpan = cols;
}

function renderStatus() {
  const summary = $('cluster-summary');
  const liveNote = $('cluster-live');
  const nodesBody = $('nodes').tBodies[0];
  const pipesBody = $('pipelines').tBodies[0];
  const s = status;
  nodesBody.replaceChildren();
  pipesBody.replaceChildren();
  if (live.mode === 'none') {
    summary.textContent = 'This server reports no cluster status.';
    summary.classList.remove('bad');
    emptyRow(nodesBody, 6, 'No nodes');
    emptyRow(pipesBody, 7, 'No pipelines');
    liveNote.textContent = '';
    renderJoin();
    return;
  }
  if (s) {
    const nodes = Array.isArray(s.nodes) ? s.nodes : [];
    const pipes = Array.isArray(s.pipelines) ? s.pipelines : [];
    const total = modelLayers(s);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const ready = nodes.filter((n) => n.state === 'ready').length;
    const want = num(s.n_nodes_expected);
    summary.textContent = (s.model ? s.model + ' \u00b7 ' : '') + ready + ' of ' + (want !== undefined ? want : nodes.length) +
      ' node' + ((want !== undefined ? want : nodes.length) === 1 ? '' : 's') + ' ready \u00b7 ' +
      pipes.filter((p) => p.state === 'serving').length + ' of ' + pipes.length + ' pipeline' + (pipes.length === 1 ? '' : 's') +
      ' serving' + (total ? ' \u00b7 ' + total + ' layers' : '') +
      (s.planned === false ? ' \u00b7 waiting for nodes before the first plan' : '') +
      (typeof s.error === 'string' && s.error ? ' \u00b7 ' + s.error : '');
    for (const n of nodes) {
      const tr = nodesBody.appendChild(el('tr', GONE.includes(n.state) ? 'gone' : ''));
      tr.dataset.node = n.name || String(n.id);
      tr.dataset.state = n.state || '';
      const name = cell(tr, n.name || String(n.id !== undefined ? n.id : '?'));
      if (n.pipeline !== undefined && n.pipeline !== null && n.pipeline >= 0) name.appendChild(el('span', 'sub', 'pipeline ' + n.pipeline));
      cell(tr, n.device || '');
      const mem = fmtBytes(n.memory_bytes);
      const use = fmtBytes(n.usable_bytes);
      const mc = cell(tr, mem);
      if (use && use !== mem) mc.appendChild(el('span', 'sub', use + ' usable'));
      layerCell(tr, n.layers, total);
      stateBadge(tr, n.state, n.error);
      const parts = [];
      if (num(n.load) !== undefined) parts.push(n.load > 0 && n.load <= 1 && !Number.isInteger(n.load) ? (100 * n.load).toFixed(0) + '%' : String(n.load));
      const lc = cell(tr, parts.join(''));
      const extra = [];
      if (num(n.rtt_ms) !== undefined) extra.push('rtt ' + n.rtt_ms.toFixed(1) + ' ms');
      if (num(n.last_seen_ms) !== undefined) extra.push('seen ' + (n.last_seen_ms / 1000).toFixed(1) + ' s ago');
      if (extra.length) lc.appendChild(el('span', 'sub', extra.join(' \u00b7 ')));
    }
    if (!nodes.length) emptyRow(nodesBody, 6, 'No nodes yet: run the join command (Setup) on each machine.');
    for (const p of pipes) {
      const tr = pipesBody.appendChild(el('tr', GONE.includes(p.state) ? 'gone' : ''));
      tr.dataset.state = p.state || '';
      cell(tr, String(p.id !== undefined ? p.id : '?'));
      const stages = Array.isArray(p.stages) ? p.stages.map((id) => (byId.get(id) || {}).name || String(id)) : [];
      cell(tr, stages.join(' \u2192 '));
      stateBadge(tr, p.state, p.error);
      cell(tr, num(p.running) !== undefined ? String(p.running) : '');
      cell(tr, num(p.waiting) !== undefined ? String(p.waiting) : '');
      cell(tr, num(p.kv_blocks_free) !== undefined ? String(p.kv_blocks_free) : '');
      cell(tr, num(p.step_ms) !== undefined ? p.step_ms.toFixed(1) + ' ms' : '');
    }
    if (!pipes.length) emptyRow(pipesBody, 7, 'No pipeline yet.');
  } else {
    summary.textContent = 'Waiting for the cluster status\u2026';
    emptyRow(nodesBody, 6, '\u2026');
    emptyRow(pipesBody, 7, '\u2026');
  }
  for (const table of [$('nodes'), $('pipelines')]) { /* column names for the one-column phone layout */
    const names = Array.from(table.tHead.rows[0].cells).map((th) => th.textContent);
    for (const tr of table.tBodies[0].rows) Array.from(tr.cells).forEach((td, i) => { td.dataset.label = names[i] || ''; });
  }
  summary.classList.toggle('bad', !!live.error);
  if (live.error) summary.textContent = 'Cluster status unavailable: ' + live.error + (s ? ' (showing the last one received)' : '');
  const when = live.since ? new Date(live.since).toLocaleTimeString() : '';
  liveNote.textContent = live.mode === 'stream' ? 'Live' + (when ? ', updated ' + when : '') :
    live.mode === 'poll' ? 'Polled every 2 s' + (when ? ', updated ' + when : '') : '';
  renderJoin();
}

/* ---- setup ---------------------------------------------------------------------- */

/* Whether the server offers POST /cluster/setup: probed with a GET, which
 * a registered POST-only route answers 405 and an absent one 404 (so that
 * probing changes nothing). null until known. */
let setupOffered = null;
let modelId = '';

async function setupProbe() {
  try {
    const m = await fetch('/v1/models', { headers: authHeaders(), cache: 'no-store' });
    if (m.ok) {
      const j = await m.json();
      const ids = (j.data || []).map((d) => d.id).filter((x) => typeof x === 'string');
      if (ids[0]) modelId = ids[0];
      const dl = $('setup-models');
      dl.replaceChildren(...ids.map((id) => { const o = el('option'); o.value = id; return o; }));
    }
    const r = await fetch('/cluster/setup', { headers: authHeaders(), cache: 'no-store' });
    setupOffered = r.status !== 404;
  } catch (e) {
    setupOffered = false;
  }
  renderSetup();
}

function renderSetup() {
  const fixed = setupOffered === false;
  const s = status || {};
  const model = s.model || modelId;
  const input = $('setup-model');
  input.hidden = fixed;
  $('setup-model-fixed').hidden = !fixed;
  $('setup-model-fixed').textContent = model ? model + ' (set when this server was started)' : '';
  if (!input.value && model && document.activeElement !== input) input.value = model;
  const nodes = $('setup-nodes');
  if (num(s.n_nodes_expected) > 0 && document.activeElement !== nodes && !nodes.dataset.edited) nodes.value = s.n_nodes_expected;
  nodes.disabled = fixed;
  $('setup-apply').hidden = fixed;
  if (fixed) $('setup-result').textContent = 'This server does not change its model or node count from the page; restart it with -m MODEL -n NODES to do so.';
  $('view-setup').dataset.setup = setupOffered === null ? '' : setupOffered ? 'offered' : 'fixed';
}

function renderJoin() {
  const s = status || {};
  const cmd = typeof s.join_command === 'string' ? s.join_command : '';
  $('join-command').textContent = cmd || (live.mode === 'none' || (status && !cmd)
    ? 'No node needs to join: this server holds every layer itself.' : '\u2026');
  $('join-copy').disabled = !cmd;
  $('join-help').hidden = !cmd;
  const nodes = Array.isArray(s.nodes) ? s.nodes : [];
  const want = num(s.n_nodes_expected);
  $('join-state').textContent = status ? nodes.filter((n) => !GONE.includes(n.state)).length + ' node(s) joined' +
    (want !== undefined ? ' of ' + want + ' expected' : '') : '';
  if (view === 'setup') renderSetup();
}

async function copyJoin() {
  const text = $('join-command').textContent;
  const btn = $('join-copy');
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch (e) {
    /* no clipboard permission (plain http on another host): select it for Ctrl+C */
    const r = document.createRange();
    r.selectNodeContents($('join-command'));
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
  }
  btn.textContent = ok ? 'Copied' : 'Selected: press Ctrl+C';
  setTimeout(() => { btn.textContent = 'Copy'; }, 2000);
}

async function applySetup(e) {
  e.preventDefault();
  const out = $('setup-result');
  const n = parseInt($('setup-nodes').value, 10);
  const model = $('setup-model').value.trim();
  if (!model || !(n >= 1)) { out.textContent = 'Give a model and a node count of at least 1.'; out.classList.add('bad'); return; }
  out.textContent = 'Applying\u2026';
  out.classList.remove('bad');
  try {
    const r = await fetch('/cluster/setup', {
      method: 'POST',
      headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()),
      body: JSON.stringify({ model, n_nodes: n }),
    });
    if (r.status === 404) { setupOffered = false; renderSetup(); return; }
    if (!r.ok) throw new Error(await errorText(r));
    out.textContent = 'Applied: ' + model + ' on ' + n + ' node' + (n === 1 ? '' : 's') + '.';
  } catch (err) {
    out.textContent = String(err.message || err);
    out.classList.add('bad');
  }
}

/* ---- wiring ------------------------------------------------------------------- */

function openSettings() {
  $('s-temperature').value = settings.temperature;
  $('s-max-tokens').value = settings.max_tokens;
  $('s-system').value = settings.system;
  $('s-api-key').value = settings.apiKey;
  $('settings').showModal();
}

function init() {
  $('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $('stop').addEventListener('click', () => { if (busy) busy.controller.abort(); });
  $('new-chat').addEventListener('click', () => {
    if (busy) return;
    currentId = null;
    current();
    persist();
    renderAll();
    $('side').classList.remove('open');
    $('input').focus();
  });
  $('toggle-side').addEventListener('click', () => {
    const open = $('side').classList.toggle('open');
    $('toggle-side').setAttribute('aria-expanded', String(open));
  });
  $('open-settings').addEventListener('click', openSettings);
  $('s-cancel').addEventListener('click', () => $('settings').close());
  $('settings-form').addEventListener('submit', () => {
    settings = {
      temperature: parseFloat($('s-temperature').value),
      max_tokens: parseInt($('s-max-tokens').value, 10),
      system: $('s-system').value,
      apiKey: $('s-api-key').value.trim(),
    };
    if (!Number.isFinite(settings.temperature)) settings.temperature = DEFAULTS.temperature;
    if (!Number.isFinite(settings.max_tokens) || settings.max_tokens < 1) settings.max_tokens = DEFAULTS.max_tokens;
    save('strait.settings', settings);
    $('model').textContent = '';
    poll();
    if (view !== 'chat') { statusWatch(true); if (view === 'setup') setupProbe(); } /* the key may have changed */
  });
  $('join-copy').addEventListener('click', copyJoin);
  $('setup-form').addEventListener('submit', applySetup);
  $('setup-nodes').addEventListener('input', () => { $('setup-nodes').dataset.edited = '1'; });
  window.addEventListener('hashchange', showView);
  current();
  persist();
  renderAll();
  poll();
  setInterval(poll, 5000);
  showView();
}

/* For tests and the console: the renderer, and a way to show a message
 * without the model (it is not saved). */
window.strait = {
  renderMarkdown,
  show(role, content) {
    const list = $('messages');
    const e = list.querySelector('.empty');
    if (e) e.remove();
    const box = messageNode({ role, content });
    list.appendChild(box);
    list.scrollTop = list.scrollHeight;
    return box;
  },
  settings: () => Object.assign({}, settings),
  status: () => status,
  /* render a status object as if the server had sent it (tests, console) */
  showStatus(j) { statusWatch(false); live.mode = 'stream'; live.error = ''; setStatus(j); },
};

document.addEventListener('DOMContentLoaded', init);
