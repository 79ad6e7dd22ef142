// Rules: paginated list with schedule in words, next run and last run; trigger with live
// progress; delete with confirmation (and the server's refusal when others depend on it).

import { get, post, del, qs } from '../api.js';
import { h, clear, loading, empty, errorBox, when, statusBadge, num, change, pager, table, takeFlash, confirmDialog } from '../dom.js';

const PER_PAGE = 10;

export async function render(view, { query, signal }) {
  const page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
  const notice = h('div', { 'aria-live': 'polite' }, takeFlash());
  const body = h('div', loading('Loading rules…'));
  view.append(
    h('div.page-head',
      h('div', h('h1', 'Rules'), h('p', 'Each rule defines one segment. Trigger a rule to refresh its segment now.')),
      h('a.btn.primary', { href: '/rules/new' }, '+ New rule')),
    notice, body);

  const load = async () => {
    clear(body, loading('Loading rules…'));
    let r;
    try {
      r = await get('/rules' + qs({ page, per_page: PER_PAGE }), { signal });
    } catch (err) {
      if (err.name !== 'AbortError') clear(body, errorBox(err, load));
      return;
    }
    if (!r.items.length) {
      clear(body, page > 1
        ? empty('No rules on this page. ', h('a', { href: '/rules' }, 'Go to the first page'), '.')
        : empty('No rules yet. ', h('a', { href: '/rules/new' }, 'Create the first rule'), '.'));
      return;
    }
    const columns = [
      { label: 'Name', cell: (x) => [h('a', { href: `/rules/edit/${x.id}` }, x.rule_name),
        x.segment_id ? h('div.small-text', h('a', { href: `/segments/${x.segment_id}` }, 'View segment')) : null] },
      { label: 'Description', cell: (x) => x.description || h('span.muted', '—') },
      { label: 'Schedule', cell: (x) => x.schedule
        ? [x.schedule_description || x.schedule, h('div.muted.small-text', h('code', x.schedule))]
        : h('span.muted', 'manual only') },
      { label: 'Next run', cell: (x) => (x.next_run_at ? when(x.next_run_at) : h('span.muted', '—')) },
      { label: 'Last run', cell: (x) => lastRunCell(x) },
      { label: '', cell: (x) => actions(x, notice, load, signal) },
    ];
    clear(body, table(columns, r.items, 'Rules'), pager('/rules', r));
  };
  await load();
}

function lastRunCell(rule) {
  const cell = h('div.last-run', { id: `last-run-${rule.id}` });
  showRun(cell, rule.last_run);
  return cell;
}

function showRun(cell, run) {
  if (!run) return clear(cell, statusBadge(null));
  const parts = [statusBadge(run.status)];
  if (run.status === 'succeeded') parts.push(' ', h('span.small-text', num(run.row_count), ' members '), change(run.entered, run.left));
  parts.push(h('div.muted.small-text', when(run.finished_at || run.started_at || run.queued_at)));
  if (run.status === 'failed' && run.error) parts.push(h('div.field-error', run.error));
  clear(cell, parts);
}

function actions(rule, notice, reload, signal) {
  const progress = h('div.run-progress', { role: 'status', 'aria-live': 'polite' });
  const trigger = h('button.small.primary', { type: 'button', 'aria-label': `Trigger ${rule.rule_name}` }, 'Trigger');
  trigger.addEventListener('click', async () => {
    trigger.disabled = true;
    clear(progress, h('span.loading', 'queueing…'));
    try {
      const { run_id: runId } = await post(`/rules/${rule.id}/trigger`, {}, { signal });
      await follow(runId, rule, progress, signal);
    } catch (err) {
      if (err.name !== 'AbortError') clear(progress, h('span.field-error', err.message));
    } finally {
      trigger.disabled = false;
    }
  });
  const remove = h('button.small.link-danger', { type: 'button', 'aria-label': `Delete ${rule.rule_name}` }, 'Delete');
  remove.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: `Delete “${rule.rule_name}”?`,
      body: 'The rule, its segment table and its catalog entry are removed. This cannot be undone.',
      confirm: 'Delete rule', danger: true,
    });
    if (!ok) return;
    remove.disabled = true;
    try {
      await del(`/rules/${rule.id}`);
      clear(notice, h('div.alert.success', { role: 'status' }, `Deleted “${rule.rule_name}”.`));
      await reload();
    } catch (err) {
      remove.disabled = false;
      clear(notice, h('div.alert.error', { role: 'alert' },
        h('strong', err.status === 409 ? `Cannot delete “${rule.rule_name}”.` : 'Delete failed.'), ' ', err.message));
      notice.scrollIntoView({ block: 'nearest' });
    }
  });
  return h('div', h('div.actions', trigger, h('a.btn.small', { href: `/rules/edit/${rule.id}` }, 'Edit'), remove), progress);
}

// Polls a run until it finishes, showing its progress; then updates the last-run cell.
async function follow(runId, rule, progress, signal) {
  const started = Date.now();
  for (;;) {
    const run = await get(`/runs/${runId}`, { signal });
    const secs = Math.round((Date.now() - started) / 1000);
    if (run.status === 'succeeded' || run.status === 'failed') {
      const cell = document.getElementById(`last-run-${rule.id}`);
      if (cell) showRun(cell, run);
      clear(progress, run.status === 'succeeded'
        ? h('span', statusBadge('succeeded'), ` run ${run.id}: ${num(run.row_count)} members`)
        : h('span', statusBadge('failed'), ' ', h('span.field-error', run.error || `run ${run.id} failed`)));
      return run;
    }
    clear(progress, h('span.loading', `${run.status} · ${secs}s`));
    await sleep(run.status === 'queued' ? 400 : 700, signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); reject(new DOMException('aborted', 'AbortError')); }, { once: true });
  });
}
