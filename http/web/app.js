/* Strait chat page. Talks only to the OpenAI API of the server that serves
 * it: POST /v1/chat/completions with stream:true (SSE read through
 * fetch + ReadableStream), GET /v1/models, GET /health.
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
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
        for (const line of event.split(/\r?\n/)) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') continue;
          let j;
          try { j = JSON.parse(data); } catch (e) { continue; }
          if (j.error) throw new Error(j.error.message || 'server error');
          if (j.usage) usage = j.usage;
          const ch = j.choices && j.choices[0];
          if (!ch) continue;
          if (ch.finish_reason) finish = ch.finish_reason;
          const piece = ch.delta && ch.delta.content;
          if (piece) {
            if (!tFirst) tFirst = performance.now();
            chunks++;
            msg.content += piece;
            schedule();
          }
        }
      }
    }
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
  });
  current();
  persist();
  renderAll();
  poll();
  setInterval(poll, 5000);
  $('input').focus();
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
};

document.addEventListener('DOMContentLoaded', init);
