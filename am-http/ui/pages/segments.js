// Segments: paginated list with size, last refresh, the change at the last refresh, the
// rule that makes each and what it depends on or reuses.

import { get, qs } from '../api.js';
import { h, clear, loading, empty, errorBox, num, when, change, pager, table } from '../dom.js';

const PER_PAGE = 20;

export async function render(view, { query, signal }) {
  const page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
  const body = h('div', loading('Loading segments…'));
  view.append(h('div.page-head', h('div', h('h1', 'Segments'),
    h('p', 'The audiences the rules produce. A segment appears once its rule has run.'))), body);

  const load = async () => {
    clear(body, loading('Loading segments…'));
    let r;
    try {
      r = await get('/segments' + qs({ page, per_page: PER_PAGE }), { signal });
    } catch (err) {
      if (err.name !== 'AbortError') clear(body, errorBox(err, load));
      return;
    }
    if (!r.items.length) {
      clear(body, page > 1
        ? empty('No segments on this page. ', h('a', { href: '/segments' }, 'Go to the first page'), '.')
        : empty('No segments yet. ', h('a', { href: '/rules' }, 'Trigger a rule'), ' to build the first one.'));
      return;
    }
    const ruleLinks = (list) => (list?.length
      ? list.map((x, i) => [i ? ', ' : '', h('a', { href: `/rules/edit/${x.id}` }, x.rule_name)])
      : h('span.muted', '—'));
    const columns = [
      { label: 'Segment', cell: (s) => [h('a', { href: `/segments/${s.id}` }, s.segment_name),
        s.description ? h('div.muted.small-text', s.description) : null] },
      { label: 'Size', num: true, cell: (s) => num(s.row_count) },
      { label: 'Last refresh', cell: (s) => (s.last_refreshed_at ? when(s.last_refreshed_at) : h('span.muted', 'never')) },
      { label: 'Change', cell: (s) => change(s.entered, s.left) },
      { label: 'Rule', cell: (s) => h('a', { href: `/rules/edit/${s.rule_id}` }, s.rule?.rule_name ?? s.segment_name) },
      { label: 'Depends on', cell: (s) => ruleLinks(s.depends_on) },
      { label: 'Reused from', cell: (s) => ruleLinks(s.reuses) },
    ];
    clear(body, table(columns, r.items, 'Segments'), pager('/segments', r));
  };
  await load();
}
