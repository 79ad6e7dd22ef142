// Segment detail: metadata, the SQL, sample members, CSV export, run history and the
// lineage graph (click a node to open that segment).

import { get, qs, token, download } from '../api.js';
import { h, clear, loading, empty, errorBox, num, when, change, statusBadge, table } from '../dom.js';
import { lineageGraph } from '../lineage.js';

export async function render(view, { params, signal }) {
  const id = Number(params[0]);
  view.append(loading('Loading segment…'));
  const seg = await get(`/segments/${id}`, { signal });
  document.title = `${seg.segment_name} · Audience Manager`;
  const exportPath = `/segments/${id}/export`;
  const exportErr = h('span.field-error', { role: 'status' });
  const exportLink = h('a.btn', { href: `/api${exportPath}`, download: `segment-${id}.csv` }, 'Export CSV');
  exportLink.addEventListener('click', async (e) => {
    if (!token()) return; // a plain link works when no token is needed
    e.preventDefault();
    exportErr.textContent = '';
    try { await download(exportPath, `segment-${id}.csv`); } catch (err) { exportErr.textContent = err.message; }
  });

  const sample = h('div', loading('Loading members…'));
  const runs = h('div', loading('Loading runs…'));
  const lineage = h('div.lineage', loading('Loading lineage…'));
  const copyBtn = h('button.small', { type: 'button', onclick: async () => {
    try { await navigator.clipboard.writeText(seg.sql_query); copyBtn.textContent = 'Copied'; } catch { copyBtn.textContent = 'Select the text to copy'; }
  } }, 'Copy SQL');

  clear(view,
    h('div.page-head',
      h('div', h('h1', seg.segment_name), h('p', seg.description || h('span.muted', 'No description.'))),
      h('div.actions', exportLink, h('a.btn', { href: `/rules/edit/${seg.rule_id}` }, 'Edit rule'), exportErr)),
    h('div.grid',
      h('section.panel', { 'aria-labelledby': 'meta-h' }, h('h2', { id: 'meta-h' }, 'Details'),
        h('dl.meta',
          h('dt', 'Members'), h('dd', { 'data-testid': 'row-count' }, num(seg.row_count)),
          h('dt', 'Last refresh'), h('dd', seg.last_refreshed_at ? when(seg.last_refreshed_at) : 'never'),
          h('dt', 'Change'), h('dd', change(seg.entered, seg.left)),
          h('dt', 'Rule'), h('dd', h('a', { href: `/rules/edit/${seg.rule?.id ?? seg.rule_id}` }, seg.rule?.rule_name ?? `rule ${seg.rule_id}`)),
          h('dt', 'Table'), h('dd', h('code', seg.table_name)),
          h('dt', 'Depends on'), h('dd', names(seg.depends_on)),
          h('dt', 'Reused from'), h('dd', { 'data-testid': 'reused-from' }, names(seg.reuses)))),
      h('section.panel', { 'aria-labelledby': 'lineage-h' }, h('h2', { id: 'lineage-h' }, 'Lineage'),
        h('div.legend', h('span', '— depends on'), h('span', '- - - reused by the planner'), h('span', 'click a segment to open it')),
        lineage)),
    h('section.panel', { 'aria-labelledby': 'sql-h' },
      h('div.page-head', h('h2', { id: 'sql-h' }, 'SQL'), copyBtn),
      seg.sql_query ? h('pre', seg.sql_query) : h('p.muted', 'No SQL yet.')),
    h('section.panel', { 'aria-labelledby': 'sample-h' }, h('h2', { id: 'sample-h' }, 'Sample members'), sample),
    h('section.panel', { 'aria-labelledby': 'runs-h' }, h('h2', { id: 'runs-h' }, 'Run history'), runs));

  await Promise.all([
    section(sample, () => sampleView(id, signal)),
    section(runs, () => runsView(seg.rule_id, signal)),
    section(lineage, async () => lineageGraphOrEmpty(await get(`/segments/${id}/lineage`, { signal }), id)),
  ]);
}

async function section(el, load) {
  try {
    clear(el, await load());
  } catch (err) {
    if (err.name !== 'AbortError') clear(el, errorBox(err, () => { clear(el, loading()); section(el, load); }));
  }
}

function names(list) {
  return list?.length ? list.map((x, i) => [i ? ', ' : '', h('a', { href: `/rules/edit/${x.id}` }, x.rule_name)]) : h('span.muted', 'none');
}

async function sampleView(id, signal) {
  const r = await get(`/segments/${id}/sample_data`, { signal });
  if (!r.data.length) return empty('This segment has no members.');
  const cols = r.columns.map((c, i) => ({ label: c, num: c === 'user_id', cell: (row) => row[i] ?? '—' }));
  const FIRST = 10;
  const box = h('div');
  const show = (n) => {
    const more = r.data.length > n
      ? h('button.small', { type: 'button', onclick: () => show(r.data.length) }, `Show all ${num(r.data.length)} sampled members`)
      : null;
    clear(box, table(cols, r.data.slice(0, n), 'Sample members'),
      h('div.inline', h('p.help', `Showing ${num(Math.min(n, r.data.length))} members; export the CSV for all of them.`), more));
  };
  show(FIRST);
  return box;
}

async function runsView(ruleId, signal) {
  const r = await get('/runs' + qs({ rule_id: ruleId, limit: 20 }), { signal });
  if (!r.items.length) return empty('No runs yet.');
  return table([
    { label: 'Run', cell: (x) => String(x.id) },
    { label: 'Status', cell: (x) => [statusBadge(x.status), x.error ? h('div.field-error', x.error) : null] },
    { label: 'Trigger', cell: (x) => x.trigger || '—' },
    { label: 'Started', cell: (x) => when(x.started_at || x.queued_at) },
    { label: 'Took', cell: (x) => took(x) },
    { label: 'Members', num: true, cell: (x) => num(x.row_count) },
    { label: 'Change', cell: (x) => change(x.entered, x.left) },
  ], r.items, 'Run history');
}

function took(run) {
  const a = Date.parse(normal(run.started_at)), b = Date.parse(normal(run.finished_at));
  if (!Number.isFinite(a) || !Number.isFinite(b)) return '—';
  const ms = b - a;
  return ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function normal(s) {
  if (!s) return s;
  const t = String(s).replace(' ', 'T');
  return /[zZ]|[+-]\d\d:?\d\d$/.test(t) ? t : t + 'Z';
}

function lineageGraphOrEmpty(l, id) {
  if (!l.nodes?.length) return empty('No lineage.');
  if (l.nodes.length === 1) {
    return [lineageGraph(l, id), h('p.help', 'This segment is computed directly from the data: it depends on no other segment.')];
  }
  return lineageGraph(l, id);
}
