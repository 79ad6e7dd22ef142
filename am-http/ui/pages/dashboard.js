// Dashboard: summary metrics, recently refreshed segments, failed runs that need attention.

import { get, qs } from '../api.js';
import { h, clear, loading, empty, errorBox, num, money, when, parseTime, change } from '../dom.js';

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
    section(failed, () => loadFailed(signal)),
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
    card('Users', num(s.total_users)),
    card('Transactions', num(s.total_transactions)),
    card('Total spend', money(s.total_spend)),
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
async function loadFailed(signal) {
  const r = await get('/runs' + qs({ limit: 200 }), { signal });
  const latest = new Map();
  for (const run of r.items) if (!latest.has(run.rule_id)) latest.set(run.rule_id, run);
  const items = [...latest.values()].filter((run) => run.status === 'failed');
  if (!items.length) return empty('No failed runs. Every rule\'s latest run went through.');
  return h('ul.plain', items.map((run) => h('li',
    h('span', h('a', { href: `/rules/edit/${run.rule_id}` }, run.rule_name || `Rule ${run.rule_id}`),
      h('div.field-error', run.error || 'failed')),
    h('span.muted.small-text', 'run ', run.id, ' · ', when(run.finished_at || run.started_at || run.queued_at)))));
}
