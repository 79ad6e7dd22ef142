// Small DOM helpers and formatters shared by the pages.

// h('a.btn', {href: '/x', onclick}, 'text', child, [more]) builds an element.
// Attributes starting with "on" become listeners; `class`, `dataset`, boolean props work too.
export function h(tag, attrs, ...children) {
  return make(false, tag, attrs, children);
}

// The same for SVG elements.
export function svg(tag, attrs, ...children) {
  return make(true, tag, attrs, children);
}

function make(isSvg, tag, attrs, children) {
  const [name, ...classes] = tag.split('.');
  const el = isSvg
    ? document.createElementNS('http://www.w3.org/2000/svg', name)
    : document.createElement(name || 'div');
  if (classes.length) el.setAttribute('class', classes.join(' '));
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', [el.getAttribute('class'), v].filter(Boolean).join(' '));
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idSeq = 0;
export const uid = (prefix = 'f') => `${prefix}-${++idSeq}`;

// States every page uses.
export const loading = (what = 'Loading…') => h('p.loading', { role: 'status' }, what);
export const empty = (...msg) => h('div.empty', ...msg);

// An error, with a retry button only where trying again can help (offline, the server's own
// failures); a missing rule or segment links back to its list instead.
export function errorBox(err, retry) {
  const again = retry && (!err.status || err.status >= 500 || err.status === 408 || err.status === 429);
  return h('div.alert.error', { role: 'alert' },
    h('strong', errorTitle(err)), ' ', err.message || String(err),
    again ? h('button.small', { type: 'button', onclick: retry }, 'Try again') : null,
    err.status === 404 ? [' ', backLink()] : null);
}

function backLink() {
  const path = location.pathname;
  if (path.startsWith('/segments')) return h('a', { href: '/segments' }, 'All segments');
  if (path.startsWith('/rules')) return h('a', { href: '/rules' }, 'All rules');
  return h('a', { href: '/' }, 'Go to the dashboard');
}

function errorTitle(err) {
  switch (err.status) {
    case 0: return 'Offline.';
    case 401: return 'Not authorised.';
    case 404: return 'Not found.';
    case 409: return 'Conflict.';
    case 422: return 'Invalid.';
    default: return 'Something went wrong.';
  }
}

// Formatters.
const nf = new Intl.NumberFormat();
export const num = (n) => (n === null || n === undefined ? '—' : nf.format(n));
export const money = (n) => (n === null || n === undefined ? '—'
  : new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n));

// A number too long for a summary card, written compactly ("2.51B") with the exact value
// (`exact`, already formatted) on hover and for screen readers.
const compactNf = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 2 });
export const fitted = (exact, n) => (exact.length <= 10 || typeof n !== 'number' ? exact
  : h('span', { title: exact, 'aria-label': exact, 'data-exact': exact }, compactNf.format(n)));

// The API's timestamps are UTC ("2025-01-02 03:04:05" or RFC 3339).
export function parseTime(s) {
  if (!s) return null;
  let t = String(s);
  if (/^\d{4}-\d{2}-\d{2} \d/.test(t)) t = t.replace(' ', 'T');
  if (/T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(t)) t += 'Z';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function when(s) {
  const d = parseTime(s);
  if (!d) return s ? String(s) : '—';
  return h('time', { datetime: d.toISOString(), title: d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC' },
    relative(d));
}

export function relative(d) {
  const sec = Math.round((d.getTime() - Date.now()) / 1000);
  const abs = Math.abs(sec);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  if (abs < 45) return 'just now';
  if (abs < 3600) return rtf.format(Math.round(sec / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(sec / 3600), 'hour');
  if (abs < 86400 * 30) return rtf.format(Math.round(sec / 86400), 'day');
  return d.toLocaleDateString();
}

export function statusBadge(status) {
  if (!status) return h('span.badge', 'never run');
  return h(`span.badge.${status}`, status);
}

// "+12 / −3" membership change at the last refresh.
export function change(entered, left) {
  if ((entered ?? null) === null && (left ?? null) === null) return '—';
  return h('span.change', h('span.up', `+${num(entered ?? 0)}`), ' / ', h('span.down', `−${num(left ?? 0)}`));
}

// Pagination controls driven by the `page` query parameter.
export function pager(base, r) {
  if (!r || r.pages <= 1) return null;
  const link = (p, label, rel) => h('a.btn.small', { href: `${base}?page=${p}`, rel }, label);
  return h('nav.pager', { 'aria-label': 'Pagination' },
    r.page > 1 ? link(r.page - 1, '← Previous', 'prev') : h('span.btn.small.disabled', { 'aria-disabled': 'true' }, '← Previous'),
    h('span', `Page ${r.page} of ${r.pages} · ${num(r.total)} in all`),
    r.page < r.pages ? link(r.page + 1, 'Next →', 'next') : h('span.btn.small.disabled', { 'aria-disabled': 'true' }, 'Next →'));
}

export function debounce(fn, ms) {
  let t;
  const d = (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

// One-shot message carried to the next page (e.g. "Rule created").
let flashMsg = null;
export function flash(msg) { flashMsg = msg; }
export function takeFlash() {
  const m = flashMsg;
  flashMsg = null;
  return m ? h('div.alert.success', { role: 'status' }, m) : null;
}

// Confirmation dialog; resolves true when confirmed.
export function confirmDialog({ title, body, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const dlg = h('dialog.confirm', { 'aria-labelledby': 'confirm-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', body),
        h('div.actions',
          h(`button.${danger ? 'danger' : 'primary'}`, { type: 'submit', value: 'yes' }, confirm),
          h('button', { type: 'submit', value: 'no', autofocus: true }, 'Cancel'))));
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'yes'); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

// A table that turns into labelled cards on narrow screens.
// columns: [{ label, cell: (row) => node, num: bool }]
export function table(columns, rows, caption) {
  return h('div.table-wrap',
    h('table.responsive',
      caption ? h('caption.sr-only', caption) : null,
      h('thead', h('tr', columns.map((c) => h(c.num ? 'th.num' : 'th', { scope: 'col' }, c.label)))),
      h('tbody', rows.map((r) => h('tr', columns.map((c) =>
        h(c.num ? 'td.num' : 'td', { 'data-label': c.label }, h('div.cell', c.cell(r)))))))));
}

// "2030-01-01 00:00 UTC" for an API timestamp.
export function utc(s) {
  const d = parseTime(s);
  return d ? `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC` : String(s ?? '—');
}
