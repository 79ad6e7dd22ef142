// The condition builder: nested all/any/not groups of predicates, with field pickers that
// offer only the field's operators, value inputs for the field's type, and per-aggregate
// source, window and `where` filter. It reads and writes contract section 2's JSON, keeps
// the shape it was given (a list stays a list), and maps server error paths back to inputs.

import { h, clear, uid } from './dom.js';

const OP_LABEL = {
  '=': '=', '!=': '≠', '>': '>', '>=': '≥', '<': '<', '<=': '≤',
  in: 'is one of', not_in: 'is none of', between: 'between',
  contains: 'contains', starts_with: 'starts with', is_null: 'is null', is_not_null: 'is not null',
  within_km: 'is within',
};
// The parts of a `within_km` value: key, label, input limits.
const CIRCLE = [['km', 'radius in km', '0', '20000'], ['lat', 'latitude', '-90', '90'], ['lon', 'longitude', '-180', '180']];
const KIND_LABEL = { profile: 'Profile', aggregate: 'Aggregates (per user, over transactions)', transaction: 'Transaction fields' };
const SOURCES = [['all', 'all transactions'], ['credit_card', 'credit card only'], ['upi', 'UPI only']];
const PRED_KEYS = new Set(['field', 'operator', 'value', 'where', 'source', 'window']);

const group = (op = 'all', asList = false) => ({ t: 'group', id: uid('n'), op, asList, not: false, items: [] });

export class Builder {
  // fields: GET /api/fields; onChange: called after every edit.
  constructor(fields, onChange) {
    this.fields = new Map(fields.map((f) => [f.name, f]));
    this.onChange = onChange;
    this.root = group('all', true);
    this.errors = new Map(); // node id -> { slot: message }
    this.paths = new Map(); // JSON path -> node id (from the last toJSON)
    this.el = h('div.builder');
    this.render();
  }

  // --- JSON in -------------------------------------------------------------------------
  load(conditions) {
    this.root = conditions === null || conditions === undefined ? group('all', true) : this.parse(conditions);
    if (this.root.t !== 'group') { const g = group('all', true); g.items.push(this.root); this.root = g; }
    this.render();
  }

  parse(c) {
    if (Array.isArray(c)) { const g = group('all', true); g.items = c.map((x) => this.parse(x)); return g; }
    if (c && typeof c === 'object') {
      const keys = Object.keys(c);
      if (keys.length === 1 && (keys[0] === 'all' || keys[0] === 'any') && Array.isArray(c[keys[0]])) {
        const g = group(keys[0]); g.items = c[keys[0]].map((x) => this.parse(x)); return g;
      }
      if (keys.length === 1 && keys[0] === 'not') {
        let n = this.parse(c.not);
        if (n.not) { const g = group('all'); g.items.push(n); n = g; }
        n.not = true;
        return n;
      }
      if (typeof c.field === 'string' && typeof c.operator === 'string') return this.parsePred(c);
    }
    return { t: 'raw', id: uid('n'), not: false, text: JSON.stringify(c, null, 2) };
  }

  parsePred(c) {
    const p = { t: 'pred', id: uid('n'), not: false, field: c.field, operator: c.operator, v: '', vs: [''], lo: '', hi: '',
      geo: { lat: '', lon: '', km: '' }, source: c.source ?? null, where: null, window: null, extra: {} };
    for (const [k, v] of Object.entries(c)) if (!PRED_KEYS.has(k)) p.extra[k] = v;
    const v = c.value;
    if (c.operator === 'within_km' && v && typeof v === 'object' && !Array.isArray(v)) {
      p.geo = { lat: str(v.lat), lon: str(v.lon), km: str(v.km) };
    } else if (Array.isArray(v)) {
      if (c.operator === 'between') { p.lo = str(v[0]); p.hi = str(v[1]); } else p.vs = v.length ? v.map(str) : [''];
    } else if (v !== undefined && v !== null) p.v = str(v);
    if (c.where !== undefined && c.where !== null) {
      p.where = this.parse(c.where);
      if (p.where.t !== 'group') { const g = group('all', true); g.items.push(p.where); p.where = g; }
    }
    if (c.window && typeof c.window === 'object') {
      p.window = 'last_days' in c.window
        ? { mode: 'last_days', n: str(c.window.last_days) }
        : { mode: 'range', start: str(c.window.start ?? ''), end: str(c.window.end ?? '') };
    }
    return p;
  }

  // --- JSON out ------------------------------------------------------------------------
  // defaultWindow: put on every aggregate predicate without a window of its own.
  toJSON(defaultWindow = null) {
    this.paths = new Map();
    if (this.root.items.length === 0 && !this.root.not) return null;
    return this.ser(this.root, 'conditions', defaultWindow);
  }

  ser(n, path, dw) {
    this.paths.set(path, n.id);
    if (n.not) return { not: this.serInner(n, `${path}.not`, dw) };
    return this.serInner(n, path, dw);
  }

  serInner(n, path, dw) {
    this.paths.set(path, n.id);
    if (n.t === 'raw') { try { return JSON.parse(n.text); } catch { return n.text; } }
    if (n.t === 'group') {
      if (n.op === 'all' && n.asList) return n.items.map((x, i) => this.ser(x, `${path}[${i}]`, dw));
      return { [n.op]: n.items.map((x, i) => this.ser(x, `${path}.${n.op}[${i}]`, dw)) };
    }
    const f = this.fields.get(n.field);
    const out = { field: n.field, operator: n.operator };
    const value = this.value(n, f);
    if (value !== undefined) out.value = value;
    if (n.where) out.where = this.ser(n.where, `${path}.where`, null);
    if (n.source && n.source !== 'all') out.source = n.source;
    if (n.window) {
      out.window = n.window.mode === 'last_days'
        ? { last_days: toNum(n.window.n) }
        : dropEmpty({ start: n.window.start, end: n.window.end });
    } else if (dw && f?.kind === 'aggregate') out.window = dw;
    return { ...out, ...n.extra };
  }

  value(n, f) {
    if (n.operator === 'is_null' || n.operator === 'is_not_null') return undefined;
    if (n.operator === 'within_km') return { lat: toNum(n.geo.lat), lon: toNum(n.geo.lon), km: toNum(n.geo.km) };
    const conv = (s) => (f && (f.type === 'integer' || f.type === 'money') ? toNum(s) : s);
    if (n.operator === 'in' || n.operator === 'not_in') return n.vs.filter((s) => s !== '').map(conv);
    if (n.operator === 'between') return [conv(n.lo), conv(n.hi)];
    return conv(n.v);
  }

  // Aggregate predicates of the main tree (not inside `where`).
  aggregates(n = this.root, out = []) {
    if (n.t === 'group') n.items.forEach((x) => this.aggregates(x, out));
    else if (n.t === 'pred' && this.fields.get(n.field)?.kind === 'aggregate') out.push(n);
    return out;
  }

  // --- Errors --------------------------------------------------------------------------
  // details: [{path, message}] from a 422; returns the ones that are not about conditions
  // (or that match no input), for the caller to show.
  showErrors(details) {
    this.errors = new Map();
    const rest = [];
    const paths = [...this.paths.keys()].sort((a, b) => b.length - a.length);
    for (const d of details) {
      const p = String(d.path ?? '');
      if (!p.startsWith('conditions')) { rest.push(d); continue; }
      const base = paths.find((k) => p === k || p.startsWith(k + '.') || p.startsWith(k + '['));
      if (!base) { rest.push(d); continue; }
      const suffix = p.slice(base.length).replace(/^\./, '');
      const slot = ['field', 'operator', 'value', 'source', 'window'].find((s) => suffix === s || suffix.startsWith(s + '.') || suffix.startsWith(s + '['))
        || 'node';
      const id = this.paths.get(base);
      const e = this.errors.get(id) || {};
      e[slot] = e[slot] ? `${e[slot]}; ${d.message}` : d.message;
      this.errors.set(id, e);
    }
    this.render();
    return rest;
  }

  clearErrors() {
    if (this.errors.size) { this.errors = new Map(); this.render(); }
  }

  // --- Rendering -----------------------------------------------------------------------
  changed(structural) {
    if (structural) this.render();
    this.onChange();
  }

  render() {
    const key = document.activeElement?.dataset?.k;
    clear(this.el, this.groupEl(this.root, null, 'main', 'Conditions'));
    if (key) {
      const next = this.el.querySelector(`[data-k="${CSS.escape(key)}"]`);
      if (next) next.focus();
    }
  }

  groupEl(g, parent, ctx, label) {
    const opSel = h('select', { 'aria-label': `${label}: combine with`, dataset: { k: `${g.id}:op` },
      onchange: (e) => { g.op = e.target.value; this.changed(true); } },
      h('option', { value: 'all', selected: g.op === 'all' }, 'ALL of these hold'),
      h('option', { value: 'any', selected: g.op === 'any' }, 'ANY of these holds'));
    const notBox = check(`${label}: negate (NOT)`, 'NOT', g.not, `${g.id}:not`, (v) => { g.not = v; this.changed(true); });
    const errs = this.errors.get(g.id) || {};
    const listNote = ctx === 'main' && parent === null && g.op === 'all' && g.asList && !g.not
      ? h('p.help', 'Transaction-field conditions in this top-level list filter the transactions of every aggregate in it (e.g. category = Travel and total_spend > 1000 means Travel spend over 1000).')
      : null;
    return h(`div.group.${g.op}${g.not ? '.negated' : ''}`, { role: 'group', 'aria-label': label },
      h('div.group-head', notBox, opSel,
        parent ? h('button.small.link-danger', { type: 'button', dataset: { k: `${g.id}:rm` },
          onclick: () => this.remove(parent, g) }, 'Remove group') : null),
      listNote,
      h('div.group-children',
        g.items.length ? g.items.map((n, i) => this.nodeEl(n, g, ctx, `${label} › ${i + 1}`))
          : h('p.muted.small-text', ctx === 'where' ? 'No filter yet.' : 'No conditions: every user matches (or only the dependencies decide).')),
      h('p.field-error', errs.node || ''),
      h('div.actions',
        h('button.small', { type: 'button', dataset: { k: `${g.id}:addp` }, onclick: () => { g.items.push(this.newPred(ctx, g)); this.changed(true); } }, '+ Condition'),
        h('button.small', { type: 'button', dataset: { k: `${g.id}:addg` }, onclick: () => { g.items.push(group(g.op === 'all' ? 'any' : 'all')); this.changed(true); } }, '+ Group')));
  }

  nodeEl(n, parent, ctx, label) {
    if (n.t === 'group') return this.groupEl(n, parent, ctx, label);
    if (n.t === 'raw') {
      const errs = this.errors.get(n.id) || {};
      return h('div.pred', h('label', { for: n.id }, 'Condition as JSON (not shown in the builder)'),
        h('textarea', { id: n.id, dataset: { k: `${n.id}:raw` }, oninput: (e) => { n.text = e.target.value; this.changed(false); } }, n.text),
        h('p.field-error', errs.node || ''),
        h('button.small.link-danger', { type: 'button', onclick: () => this.remove(parent, n) }, 'Remove'));
    }
    return this.predEl(n, parent, ctx, label);
  }

  fieldsFor(ctx, parent) {
    const all = [...this.fields.values()];
    if (ctx === 'where') return all.filter((f) => f.kind === 'transaction');
    const flat = parent === this.root && parent.op === 'all' && parent.asList && !parent.not;
    return all.filter((f) => f.kind !== 'transaction' || flat);
  }

  newPred(ctx, parent) {
    const fs = this.fieldsFor(ctx, parent);
    const f = fs.find((x) => x.name === (ctx === 'where' ? 'category' : 'total_spend')) || fs[0];
    const p = this.parsePred({ field: f?.name ?? '', operator: '' });
    p.operator = f?.operators.includes('>=') ? '>=' : f?.operators.includes('=') ? '=' : f?.operators[0] ?? '';
    return p;
  }

  remove(parent, n) {
    parent.items = parent.items.filter((x) => x !== n);
    this.changed(true);
    this.el.querySelector(`[data-k="${parent.id}:addp"]`)?.focus();
  }

  predEl(p, parent, ctx, label) {
    const f = this.fields.get(p.field);
    const errs = this.errors.get(p.id) || {};
    const inv = (slot) => (errs[slot] ? 'true' : null);
    const fs = this.fieldsFor(ctx, parent);
    if (f && !fs.includes(f)) fs.push(f); // show what is there even where it does not belong
    const kinds = [...new Set(fs.map((x) => x.kind))];
    const fieldSel = h('select', { 'aria-label': `${label}: field`, 'aria-invalid': inv('field'), dataset: { k: `${p.id}:field` },
      onchange: (e) => this.setField(p, e.target.value) },
      f ? null : h('option', { value: p.field, selected: true }, p.field || '(choose a field)'),
      kinds.map((k) => h('optgroup', { label: KIND_LABEL[k] || k },
        fs.filter((x) => x.kind === k).map((x) => h('option', { value: x.name, selected: x.name === p.field, title: x.doc }, x.name)))));
    const ops = f ? f.operators : [];
    const opSel = h('select', { 'aria-label': `${label}: operator`, 'aria-invalid': inv('operator'), dataset: { k: `${p.id}:operator` },
      onchange: (e) => this.setOperator(p, e.target.value) },
      ops.includes(p.operator) ? null : h('option', { value: p.operator, selected: true }, p.operator || '(operator)'),
      ops.map((o) => h('option', { value: o, selected: o === p.operator }, OP_LABEL[o] || o)));
    const notBox = check(`${label}: negate (NOT)`, 'NOT', p.not, `${p.id}:not`, (v) => { p.not = v; this.changed(true); });
    const msgs = ['field', 'operator', 'value', 'node'].map((s) => errs[s]).filter(Boolean);
    return h(`div.pred${p.not ? '.negated' : ''}`, { role: 'group', 'aria-label': label },
      h('div.pred-row', notBox, fieldSel, opSel, this.valueEl(p, f, label, inv('value')),
        h('button.small.link-danger', { type: 'button', 'aria-label': `${label}: remove`, dataset: { k: `${p.id}:rm` },
          onclick: () => this.remove(parent, p) }, '✕')),
      f?.doc ? h('p.help', f.doc) : null,
      h('p.field-error', { role: msgs.length ? 'alert' : null }, msgs.join('; ')),
      f?.kind === 'aggregate' ? this.scopeEl(p, label, errs) : null);
  }

  setField(p, name) {
    const old = this.fields.get(p.field);
    const f = this.fields.get(name);
    p.field = name;
    if (f && !f.operators.includes(p.operator)) p.operator = f.operators.includes('=') ? '=' : f.operators[0];
    if (old?.type !== f?.type) { p.v = ''; p.vs = ['']; p.lo = ''; p.hi = ''; p.geo = { lat: '', lon: '', km: '' }; }
    if (f?.kind !== 'aggregate') { p.where = null; p.source = null; p.window = null; }
    this.changed(true);
  }

  setOperator(p, op) {
    const wasList = p.operator === 'in' || p.operator === 'not_in';
    if (op === 'between' && p.operator !== 'between') { p.lo = wasList ? p.vs[0] ?? '' : p.v; }
    if ((op === 'in' || op === 'not_in') && !wasList) p.vs = [p.operator === 'between' ? p.lo : p.v];
    if (!(op === 'in' || op === 'not_in' || op === 'between')) {
      if (wasList) p.v = p.vs[0] ?? ''; else if (p.operator === 'between') p.v = p.lo;
    }
    p.operator = op;
    this.changed(true);
  }

  input(f, label, value, k, invalid, set) {
    const type = f?.type === 'integer' || f?.type === 'money' ? 'number' : 'text';
    return h('input', {
      type, value, 'aria-label': label, 'aria-invalid': invalid, dataset: { k },
      step: f?.type === 'money' ? '0.01' : f?.type === 'integer' ? '1' : null,
      placeholder: f?.type === 'timestamp' ? 'YYYY-MM-DD[ HH:MM:SS]' : f?.type === 'text' ? 'text' : 'number',
      oninput: (e) => { set(e.target.value); this.changed(false); },
    });
  }

  valueEl(p, f, label, invalid) {
    if (p.operator === 'is_null' || p.operator === 'is_not_null') return null;
    if (p.operator === 'within_km') {
      const part = ([key, what, min, max]) => h('input', {
        type: 'number', step: 'any', min, max, value: p.geo[key], placeholder: what,
        'aria-label': `${label}: ${what}`, 'aria-invalid': invalid, dataset: { k: `${p.id}:${key}` },
        oninput: (e) => { p.geo[key] = e.target.value; this.changed(false); },
      });
      return h('span.inline.circle', { role: 'group', 'aria-label': `${label}: circle` },
        part(CIRCLE[0]), h('span.muted', 'km of'), part(CIRCLE[1]), h('span.muted', ','), part(CIRCLE[2]));
    }
    if (p.operator === 'between') {
      return h('span.inline',
        this.input(f, `${label}: from`, p.lo, `${p.id}:lo`, invalid, (v) => { p.lo = v; }),
        h('span.muted', 'and'),
        this.input(f, `${label}: to`, p.hi, `${p.id}:hi`, invalid, (v) => { p.hi = v; }));
    }
    if (p.operator === 'in' || p.operator === 'not_in') {
      return h('span.list-values', { role: 'group', 'aria-label': `${label}: values` },
        p.vs.map((v, i) => h('span.item',
          this.input(f, `${label}: value ${i + 1}`, v, `${p.id}:v${i}`, invalid, (x) => { p.vs[i] = x; }),
          p.vs.length > 1 ? h('button.small', { type: 'button', 'aria-label': `${label}: remove value ${i + 1}`,
            onclick: () => { p.vs.splice(i, 1); this.changed(true); } }, '−') : null)),
        h('button.small', { type: 'button', dataset: { k: `${p.id}:addv` },
          onclick: () => { p.vs.push(''); this.changed(true); this.el.querySelector(`[data-k="${p.id}:v${p.vs.length - 1}"]`)?.focus(); } }, '+ value'));
    }
    return this.input(f, `${label}: value`, p.v, `${p.id}:v`, invalid, (v) => { p.v = v; });
  }

  // Per-aggregate scope: source, window, where.
  scopeEl(p, label, errs) {
    const srcSel = h('select', { 'aria-label': `${label}: transactions from`, 'aria-invalid': errs.source ? 'true' : null,
      dataset: { k: `${p.id}:source` }, onchange: (e) => { p.source = e.target.value; this.changed(false); } },
    SOURCES.map(([v, t]) => h('option', { value: v, selected: (p.source || 'all') === v }, t)));
    const w = p.window;
    const winSel = h('select', { 'aria-label': `${label}: window`, 'aria-invalid': errs.window ? 'true' : null, dataset: { k: `${p.id}:window` },
      onchange: (e) => {
        const m = e.target.value;
        p.window = m === 'rule' ? null : m === 'last_days' ? { mode: m, n: '30' } : { mode: m, start: '', end: '' };
        this.changed(true);
      } },
    h('option', { value: 'rule', selected: !w }, "the rule's window"),
    h('option', { value: 'last_days', selected: w?.mode === 'last_days' }, 'the last N days'),
    h('option', { value: 'range', selected: w?.mode === 'range' }, 'its own date range'));
    const winInputs = !w ? null : w.mode === 'last_days'
      ? h('input', { type: 'number', min: '0', step: '1', value: w.n, 'aria-label': `${label}: number of days`, dataset: { k: `${p.id}:days` },
        oninput: (e) => { w.n = e.target.value; this.changed(false); } })
      : [h('input', { type: 'date', value: w.start.slice(0, 10), 'aria-label': `${label}: window start`, dataset: { k: `${p.id}:ws` },
        oninput: (e) => { w.start = e.target.value; this.changed(false); } }),
      h('input', { type: 'date', value: w.end.slice(0, 10), 'aria-label': `${label}: window end`, dataset: { k: `${p.id}:we` },
        oninput: (e) => { w.end = e.target.value; this.changed(false); } })];
    const whereBtn = p.where
      ? h('button.small.link-danger', { type: 'button', dataset: { k: `${p.id}:where` }, onclick: () => { p.where = null; this.changed(true); } }, 'Remove filter')
      : h('button.small', { type: 'button', dataset: { k: `${p.id}:where` }, onclick: () => { p.where = group('all', true); p.where.items.push(this.newPred('where', p.where)); this.changed(true); } }, '+ Transaction filter (where)');
    return h('div.extras',
      h('div.inline.small-text', h('span.muted', 'over'), srcSel, h('span.muted', 'in'), winSel, winInputs, whereBtn),
      errs.source || errs.window ? h('p.field-error', [errs.source, errs.window].filter(Boolean).join('; ')) : null,
      p.where ? h('div.where', this.groupEl(p.where, null, 'where', `${label} › where`)) : null);
  }
}

function check(ariaLabel, text, checked, k, set) {
  const id = uid('c');
  return h('span.inline',
    h('input', { type: 'checkbox', id, checked, 'aria-label': ariaLabel, dataset: { k }, onchange: (e) => set(e.target.checked) }),
    h('label.small-text', { for: id }, text));
}

function str(v) { return v === null || v === undefined ? '' : String(v); }

// A number input's text as a JSON number; text that is not a number is sent as it is, so
// the server's message about it lands next to the input.
function toNum(s) {
  if (typeof s !== 'string') return s;
  if (s.trim() === '') return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : s;
}

function dropEmpty(o) {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '' && v !== null && v !== undefined));
}
