// The lineage graph as SVG: a layered layout (parents above children), edges for
// dependencies (solid) and reuse (dashed), each node a link to its segment.

import { svg as h, num } from './dom.js';

const W = 180, H = 54, GX = 36, GY = 70, PAD = 16;

export function lineageGraph(lineage, currentSegmentId) {
  const nodes = new Map(lineage.nodes.map((n) => [n.rule_id, { ...n, layer: 0 }]));
  const edges = lineage.edges.filter((e) => nodes.has(e.from) && nodes.has(e.to));
  // Layer = longest path from a source; bounded so a cycle cannot loop forever.
  for (let i = 0; i < nodes.size; i++) {
    let moved = false;
    for (const e of edges) {
      const a = nodes.get(e.from), b = nodes.get(e.to);
      if (b.layer < a.layer + 1) { b.layer = a.layer + 1; moved = true; }
    }
    if (!moved) break;
  }
  const layers = [];
  for (const n of nodes.values()) (layers[n.layer] ||= []).push(n);
  // Order each layer by the mean position of its parents, to keep edges short.
  layers.forEach((layer, li) => {
    if (li > 0) {
      const bary = (n) => {
        const ps = edges.filter((e) => e.to === n.rule_id).map((e) => nodes.get(e.from)).filter((p) => p.layer === li - 1);
        return ps.length ? ps.reduce((s, p) => s + p.x, 0) / ps.length : 0;
      };
      layer.forEach((n) => { n.bary = bary(n); });
      layer.sort((a, b) => a.bary - b.bary);
    }
    layer.forEach((n, i) => { n.x = i; });
  });
  const widest = Math.max(1, ...layers.map((l) => l?.length ?? 0));
  const width = PAD * 2 + widest * W + (widest - 1) * GX;
  const height = PAD * 2 + layers.length * H + (layers.length - 1) * GY;
  for (const layer of layers) {
    if (!layer) continue;
    const span = layer.length * W + (layer.length - 1) * GX;
    const x0 = (width - span) / 2;
    layer.forEach((n, i) => { n.px = x0 + i * (W + GX); n.py = PAD + n.layer * (H + GY); });
  }

  const edgeEls = edges.map((e) => {
    const a = nodes.get(e.from), b = nodes.get(e.to);
    const x1 = a.px + W / 2, y1 = a.py + H, x2 = b.px + W / 2, y2 = b.py - 3;
    const my = (y1 + y2) / 2;
    const label = e.kind === 'reuse' ? `reuse${e.operation ? ` · ${e.operation}` : ''}` : (e.operation || '').toLowerCase();
    return h('g', { class: 'edge-g' },
      h('path', { class: `edge ${e.kind === 'reuse' ? 'reuse' : 'dep'}`, d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`,
        'marker-end': `url(#arrow-${e.kind === 'reuse' ? 'reuse' : 'dep'})` },
      h('title', `${a.rule_name} → ${b.rule_name} (${e.kind}${e.operation ? `, ${e.operation}` : ''})`)),
      label ? h('text', { class: 'edge-label', x: (x1 + x2) / 2 + 4, y: my - 2 }, label) : null);
  });

  const nodeEls = [...nodes.values()].map((n) => {
    const current = n.segment_id === currentSegmentId || n.role === 'target';
    const body = [
      h('rect', { width: W, height: H, rx: 8 }),
      h('text', { class: 'name', x: 10, y: 22 }, clip(n.rule_name, 24)),
      h('text', { class: 'sub', x: 10, y: 41 },
        n.segment_id ? `${num(n.row_count)} members` : 'no segment yet'),
      h('title', `${n.rule_name}${n.segment_id ? ` · ${num(n.row_count)} members` : ''}${current ? ' (this segment)' : ''}`),
    ];
    const attrs = { class: `node ${current ? 'target' : 'upstream'}`, transform: `translate(${n.px},${n.py})`, 'data-rule-id': n.rule_id };
    if (n.segment_id && !current) {
      return h('a', { ...attrs, href: `/segments/${n.segment_id}`, 'aria-label': `Open segment ${n.rule_name}` }, body);
    }
    return h('g', attrs, body);
  });

  const marker = (id, color) => h('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    h('path', { d: 'M0,0 L10,5 L0,10 z', fill: color }));
  return h('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `Lineage graph with ${nodes.size} segments and ${edges.length} links` },
  h('defs', marker('arrow-dep', '#7d8aa3'), marker('arrow-reuse', '#7b4bd0')),
  edgeEls, nodeEls);
}

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
