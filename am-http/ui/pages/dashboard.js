// Dashboard: summary metrics, recently refreshed segments, failed runs that need attention.

import { get, qs, all } from '../api.js';
import { h, clear, loading, empty, errorBox, num, money, fitted, when, parseTime, change } from '../dom.js';

export async function render(view, { signal }) {
  const metrics = h('section.cards', { 'aria-label': 'Summary' }, loading());
  const recent = h('div', loading());
  const failed = h('div', loading());
  view.append(
    h('div.page-head', h('div', h('h1', 'Dashboard'), h('p', 'The platform at a glance.')),
      h('a.btn.primary', { href: '/rules/new' }, '+ New rule')),
    metrics,
    h('div.grid',
      h('section.panel', { 'aria-labelledby': 'recent-h' }, h('h2', { id: 'recent-h' }, 'Recently refreshed segments'), recent),
      h('section.panel', { 'aria-labelledby': 'failed-h' }, h('h2', { id: 'failed-h' }, 'Failed runs that need attention'), failed)));

  await Promise.all([
    section(metrics, () => loadMetrics(signal)),
    section(recent, () => loadRecent(signal)),
    section(failed, () => loadFailed()),
  ]);
}

// Fills `el` with what `load` builds, or with an error and a retry button.
async function section(el, load) {
  clear(el, loading());
  try {
    clear(el, await load());
  } catch (err) {
    if (err.name === 'AbortError') return;
    clear(el, errorBox(err, () => section(el, load)));
  }
}

async function loadMetrics(signal) {
  const [s, rules, segs] = await Promise.all([
    get('/analytics/summary', { signal }),
    get('/rules' + qs({ page: 1, per_page: 1 }), { signal }),
    get('/segments' + qs({ page: 1, per_page: 1 }), { signal }),
  ]);
  const card = (label, value, href) => h('div.card',
    h('div.label', label), h('div.value', href ? h('a', { href }, value) : value));
  return [
    card('Users', fitted(num(s.total_users), s.total_users)),
    card('Transactions', fitted(num(s.total_transactions), s.total_transactions)),
    card('Total spend', fitted(money(s.total_spend), s.total_spend)),
    card('Rules', num(rules.total), '/rules'),
    card('Segments', num(segs.total), '/segments'),
  ];
}

async function loadRecent(signal) {
  const r = await get('/segments' + qs({ page: 1, per_page: 100 }), { signal });
  const items = r.items.filter((s) => s.last_refreshed_at)
    .sort((a, b) => (parseTime(b.last_refreshed_at) ?? 0) - (parseTime(a.last_refreshed_at) ?? 0))
    .slice(0, 6);
  if (!items.length) {
    return empty('No segment has been refreshed yet. ', h('a', { href: '/rules' }, 'Trigger a rule'), ' to build one.');
  }
  return h('ul.plain', items.map((s) => h('li',
    h('span', h('a', { href: `/segments/${s.id}` }, s.segment_name), ' ',
      h('span.muted.small-text', num(s.row_count), ' members')),
    h('span.muted.small-text', when(s.last_refreshed_at), ' · ', change(s.entered, s.left)))));
}

// A failed run needs attention while it is its rule's latest run.
async function loadFailed() {
  const rules = await all('/rules');
  const failed = rules.filter((r) => r.last_run?.status === 'failed');
  if (!failed.length) return empty('No failed runs. Every rule\'s latest run went through.');
  return h('ul.plain', failed.map((r) => h('li',
    h('span', h('a', { href: `/rules/edit/${r.id}` }, r.rule_name),
      h('div.field-error', r.last_run.error || 'failed')),
    h('span.muted.small-text', 'run ', r.last_run.id, ' · ',
      when(r.last_run.finished_at || r.last_run.started_at || r.last_run.queued_at)))));
}
