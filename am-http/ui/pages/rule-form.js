// Rule form (/rules/new, /rules/edit/:id): name, description, schedule with presets and its
// description in words, the window, the condition builder, dependencies, a live preview
// (audience size, plan, reuse) and the server's validation errors next to their inputs.

import { get, post, put, all, qs } from '../api.js';
import { h, clear, loading, errorBox, num, debounce, flash, utc } from '../dom.js';
import { Builder } from '../builder.js';

const PRESETS = [
  ['', 'Manual only (no schedule)'],
  ['@hourly', 'Every hour'],
  ['@daily', 'Every day (@daily)'],
  ['0 0 * * *', 'Every day at midnight'],
  ['0 6 * * 1', 'Every Monday at 06:00'],
  ['@weekly', 'Every week'],
  ['@monthly', 'Every month'],
];
const OPERATIONS = {
  INTERSECTION: 'members of every dependency',
  UNION: 'members of any dependency',
  DIFFERENCE: 'members of the first dependency that are in none of the others',
};

export async function render(view, { params, signal, navigate }) {
  const id = params[0] ? Number(params[0]) : null;
  view.append(loading(id ? 'Loading rule…' : 'Loading the field catalog…'));
  const [fields, rules, rule] = await Promise.all([
    get('/fields', { signal }),
    all('/rules'),
    id ? get(`/rules/${id}`, { signal }) : null,
  ]);
  if (signal.aborted) return;
  clear(view);
  new RuleForm(view, { id, fields, rules: rules.filter((r) => r.id !== id), rule, signal, navigate });
}

class RuleForm {
  constructor(view, { id, fields, rules, rule, signal, navigate }) {
    Object.assign(this, { id, rules, signal, navigate });
    this.deps = [...(rule?.depends_on ?? [])];
    this.slots = {}; // JSON path -> { input, err }
    this.previewSeq = 0;
    this.builder = new Builder(fields, () => this.edited());
    this.build(view, rule);
    this.load(rule);
    signal.addEventListener('abort', () => { this.preview.cancel(); this.describe.cancel(); this.previewCtl?.abort(); });
    this.describe(true);
    this.preview();
  }

  field(key, label, input, help) {
    input.id ||= `f-${key}`;
    const err = h('p.field-error', { id: `${input.id}-err`, 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', `${input.id}-err${help ? ` ${input.id}-help` : ''}`);
    this.slots[key] = { input, err };
    return h('div.field', h('label', { for: input.id }, label), input,
      help ? h('p.help', { id: `${input.id}-help` }, help) : null, err);
  }

  build(view, rule) {
    const title = rule ? `Edit “${rule.rule_name}”` : 'New rule';
    this.alert = h('div', { 'aria-live': 'assertive' });
    this.name = h('input', { type: 'text', required: true, autocomplete: 'off', maxlength: '200' });
    this.description = h('textarea', { rows: '2' });

    // Schedule
    this.preset = h('select', { id: 'f-preset', onchange: () => {
      if (this.preset.value !== 'custom') { this.schedule.value = this.preset.value; }
      else this.schedule.focus();
      this.describe(); this.edited();
    } }, PRESETS.map(([v, t]) => h('option', { value: v }, t)), h('option', { value: 'custom' }, 'Custom cron line…'));
    this.schedule = h('input', { type: 'text', placeholder: 'e.g. 0 0 * * *  or  @daily', autocomplete: 'off', spellcheck: 'false',
      oninput: () => { this.syncPreset(); this.describe(); this.edited(); } });
    this.scheduleWords = h('p.help', { 'aria-live': 'polite' });
    this.describe = debounce((now) => this.describeSchedule(now), 300);

    // Window
    const radio = (value, label) => h('label.radio', h('input', { type: 'radio', name: 'window-mode', value,
      onchange: () => { this.showWindow(); this.edited(); } }), label);
    this.modeRange = radio('range', 'Date range');
    this.modeDays = radio('last_days', 'Last N days');
    this.start = h('input', { type: 'date', oninput: () => this.edited() });
    this.end = h('input', { type: 'date', oninput: () => this.edited() });
    this.days = h('input', { type: 'number', min: '0', step: '1', value: '30', oninput: () => this.edited() });
    this.rangeBox = h('div.inline',
      this.field('start_date', 'From (inclusive)', this.start), this.field('end_date', 'To (inclusive)', this.end));
    this.daysBox = h('div', this.field('window', 'Number of days', this.days,
      'Applied as window: {"last_days": N} to every aggregate condition that has no window of its own, counted back from the run. Conditions with their own window keep it.'));

    // Dependencies
    this.depList = h('ul.plain.deps');
    this.depAdd = h('select', { id: 'f-dep-add', 'aria-label': 'Rule to add as a dependency' });
    this.operation = h('select', { onchange: () => { this.showOperation(); this.edited(); } },
      h('option', { value: '' }, 'Default (INTERSECTION)'),
      Object.keys(OPERATIONS).map((o) => h('option', { value: o }, o)));
    this.operationHelp = h('p.help');

    // Preview
    this.previewBody = h('div', { 'aria-live': 'polite' });
    this.preview = debounce(() => this.runPreview(), 400);
    this.saveBtn = h('button.primary', { type: 'submit' }, rule ? 'Save changes' : 'Create rule');

    const form = h('form', { novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); } },
      h('section.panel', h('h2', 'Rule'),
        this.field('rule_name', 'Name', this.name),
        this.field('description', 'Description', this.description)),
      h('section.panel', h('h2', 'Schedule'),
        h('div.field', h('label', { for: 'f-preset' }, 'Run'), this.preset),
        this.field('schedule', 'Cron line', this.schedule,
          '5 fields (minute hour day month weekday), 6 with seconds, or @hourly, @daily, @weekly, @monthly, @yearly. Empty: manual only.'),
        this.scheduleWords),
      h('section.panel', h('fieldset.bare', h('legend', 'Window of transactions'), this.modeRange, this.modeDays,
        h('p.help', 'Aggregates (total_spend, transaction_count, …) count only transactions inside the window. An empty date is unbounded.'),
        this.rangeBox, this.daysBox)),
      h('section.panel', h('h2', 'Conditions'), this.builder.el, this.slotErr('conditions')),
      h('section.panel', h('h2', 'Dependencies'),
        h('p.help', 'Combine the segments of other rules; the conditions above, if any, then narrow the combination.'),
        this.depList,
        h('div.inline', this.depAdd, h('button.small', { type: 'button', onclick: () => this.addDep() }, 'Add dependency')),
        this.slotErr('depends_on'),
        this.field('operation', 'Operation', this.operation), this.operationHelp),
      h('div.actions', this.saveBtn, h('a.btn', { href: rule ? '/rules' : '/rules' }, 'Cancel')));

    view.append(
      h('div.page-head', h('div', h('h1', title), h('p', h('a', { href: '/rules' }, '← All rules'),
        rule?.segment_id ? [' · ', h('a', { href: `/segments/${rule.segment_id}` }, 'View segment')] : null))),
      this.alert,
      h('div.form-layout', form,
        h('aside.panel.preview', { 'aria-labelledby': 'preview-h' }, h('h2', { id: 'preview-h' }, 'Preview'), this.previewBody)));
  }

  slotErr(key) {
    const err = h('p.field-error', { 'aria-live': 'polite' });
    this.slots[key] = { input: null, err };
    return err;
  }

  load(rule) {
    this.name.value = rule?.rule_name ?? '';
    this.description.value = rule?.description ?? '';
    this.schedule.value = rule?.schedule ?? '';
    this.syncPreset();
    this.origDates = { start: rule?.start_date ?? null, end: rule?.end_date ?? null };
    this.start.value = (rule?.start_date ?? '').slice(0, 10);
    this.end.value = (rule?.end_date ?? '').slice(0, 10);
    this.builder.load(rule ? rule.conditions
      : [{ field: 'total_spend', operator: '>=', value: 1000 }]);
    // A rule whose aggregates all carry the same last_days window (and no dates) is shown as
    // "last N days"; anything else is shown as it is.
    const aggs = this.builder.aggregates();
    const n = aggs[0]?.window?.mode === 'last_days' ? aggs[0].window.n : null;
    const lastDays = rule && !rule.start_date && !rule.end_date && n !== null
      && aggs.every((p) => p.window?.mode === 'last_days' && p.window.n === n);
    if (lastDays) {
      aggs.forEach((p) => { p.window = null; });
      this.days.value = n;
      this.builder.render();
    }
    (lastDays ? this.modeDays : this.modeRange).querySelector('input').checked = true;
    this.showWindow();
    this.operation.value = rule?.operation ?? '';
    this.showOperation();
    this.showDeps();
  }

  syncPreset() {
    const v = this.schedule.value.trim();
    this.preset.value = PRESETS.some(([p]) => p === v) ? v : 'custom';
  }

  showWindow() {
    const days = this.modeDays.querySelector('input').checked;
    this.rangeBox.hidden = days;
    this.daysBox.hidden = !days;
  }

  showOperation() {
    const op = this.operation.value || (this.deps.length ? 'INTERSECTION' : '');
    this.operationHelp.textContent = op ? `${op}: ${OPERATIONS[op]}.` : 'Only used with dependencies.';
  }

  ruleName(id) {
    return this.rules.find((r) => r.id === id)?.rule_name ?? `rule ${id} (unknown)`;
  }

  showDeps() {
    const move = (i, d) => { const [x] = this.deps.splice(i, 1); this.deps.splice(i + d, 0, x); this.showDeps(); this.edited(); };
    clear(this.depList, this.deps.length ? this.deps.map((id, i) => h('li',
      h('span', h('span.muted', `${i + 1}. `), this.ruleName(id)),
      h('span.actions',
        h('button.small', { type: 'button', disabled: i === 0, 'aria-label': `Move ${this.ruleName(id)} up`, onclick: () => move(i, -1) }, '↑'),
        h('button.small', { type: 'button', disabled: i === this.deps.length - 1, 'aria-label': `Move ${this.ruleName(id)} down`, onclick: () => move(i, 1) }, '↓'),
        h('button.small.link-danger', { type: 'button', 'aria-label': `Remove dependency ${this.ruleName(id)}`,
          onclick: () => { this.deps.splice(i, 1); this.showDeps(); this.edited(); } }, 'Remove'))))
      : h('li.muted', 'No dependencies.'));
    const free = this.rules.filter((r) => !this.deps.includes(r.id));
    clear(this.depAdd, free.length ? free.map((r) => h('option', { value: r.id }, r.rule_name)) : h('option', { value: '' }, 'No other rules'));
    this.depAdd.disabled = !free.length;
    this.showOperation();
  }

  addDep() {
    const id = Number(this.depAdd.value);
    if (!id) return;
    this.deps.push(id);
    this.showDeps();
    this.edited();
    this.depAdd.focus();
  }

  // The rule as JSON, from the form.
  spec() {
    const days = this.modeDays.querySelector('input').checked;
    const n = this.days.value.trim();
    const dw = days ? { last_days: n === '' ? null : Number.isFinite(Number(n)) ? Number(n) : n } : null;
    const date = (input, orig) => {
      if (days || !input.value) return null;
      return orig && orig.slice(0, 10) === input.value ? orig : input.value;
    };
    return {
      rule_name: this.name.value.trim(),
      description: this.description.value.trim() || null,
      conditions: this.builder.toJSON(dw),
      schedule: this.schedule.value.trim() || null,
      start_date: date(this.start, this.origDates.start),
      end_date: date(this.end, this.origDates.end),
      depends_on: [...this.deps],
      operation: this.operation.value || null,
    };
  }

  edited() {
    this.preview();
  }

  async describeSchedule() {
    const s = this.schedule.value.trim();
    const err = this.slots.schedule.err;
    if (!s) { this.scheduleWords.textContent = 'Runs only when triggered.'; err.textContent = ''; this.schedule.removeAttribute('aria-invalid'); return; }
    try {
      const r = await get('/schedules/describe' + qs({ schedule: s }), { signal: this.signal });
      if (this.schedule.value.trim() !== s) return;
      err.textContent = '';
      this.schedule.removeAttribute('aria-invalid');
      clear(this.scheduleWords, h('strong', r.description),
        r.next_runs?.length ? [' · next: ', r.next_runs.slice(0, 3).map(utc).join(', ')] : null);
    } catch (e) {
      if (e.name === 'AbortError' || this.schedule.value.trim() !== s) return;
      clear(this.scheduleWords);
      err.textContent = e.message;
      this.schedule.setAttribute('aria-invalid', 'true');
    }
  }

  async runPreview() {
    const mine = ++this.previewSeq;
    this.previewCtl?.abort();
    this.previewCtl = new AbortController();
    const spec = this.spec();
    if (!spec.rule_name) spec.rule_name = `(preview ${Date.now()})`;
    this.previewBody.classList.add('muted');
    if (!this.previewBody.childNodes.length) this.previewBody.append(loading('Computing…'));
    try {
      // When editing, the server plans the candidate in place of the saved rule.
      const r = await post('/rules/preview' + qs({ rule_id: this.id }), spec, { signal: this.previewCtl.signal });
      if (mine !== this.previewSeq) return;
      this.showErrors([], true);
      clear(this.previewBody, ...previewView(r));
    } catch (e) {
      if (e.name === 'AbortError' || mine !== this.previewSeq) return;
      if (e.status === 422) {
        const rest = this.showErrors(e.details, true);
        clear(this.previewBody, h('p.field-error', 'Not a valid rule yet: ', e.message),
          rest.length ? h('ul.small-text', rest.map((d) => h('li', d.path ? h('code', d.path) : null, ' ', d.message))) : null,
          h('p.help', 'The inputs concerned are marked.'));
      } else {
        clear(this.previewBody, errorBox(e, () => this.runPreview()));
      }
    } finally {
      if (mine === this.previewSeq) this.previewBody.classList.remove('muted');
    }
  }

  // Puts each error next to its input; returns those that have no input.
  showErrors(details, fromPreview = false) {
    for (const { input, err } of Object.values(this.slots)) {
      err.textContent = '';
      input?.removeAttribute('aria-invalid');
    }
    const rest = [];
    const inBuilder = [];
    for (const d of details) {
      const path = String(d.path ?? '');
      const key = Object.keys(this.slots).find((k) => path === k || path.startsWith(k + '[') || path.startsWith(k + '.'));
      if (path.startsWith('conditions') && path !== 'conditions') { inBuilder.push(d); continue; }
      if (fromPreview && key === 'rule_name') continue; // the preview is sent with a stand-in name
      if (!key) { rest.push(d); continue; }
      const { input, err } = this.slots[key];
      err.textContent = err.textContent ? `${err.textContent}; ${d.message}` : d.message;
      input?.setAttribute('aria-invalid', 'true');
    }
    rest.push(...this.builder.showErrors(inBuilder));
    return rest;
  }

  async save() {
    this.preview.cancel();
    this.previewSeq++;
    const spec = this.spec();
    clear(this.alert);
    this.saveBtn.disabled = true;
    try {
      if (this.id) {
        await put(`/rules/${this.id}`, spec);
        flash(`Saved “${spec.rule_name}”.`);
      } else {
        const r = await post('/rules', spec);
        flash(`Created “${spec.rule_name}” (rule ${r.rule_id}). Trigger it to build its segment.`);
      }
      this.navigate('/rules');
    } catch (e) {
      this.saveBtn.disabled = false;
      if (e.name === 'AbortError') return;
      let rest = [];
      if (e.status === 422) rest = this.showErrors(e.details || []);
      else if (e.status === 409 && /name/i.test(e.message)) rest = this.showErrors([{ path: 'rule_name', message: e.message }]);
      else rest = null;
      clear(this.alert, h('div.alert.error', { role: 'alert' },
        h('strong', 'Not saved.'), ' ', e.message,
        e.status === 422 && !rest.length ? ' The inputs concerned are marked below.' : null,
        rest?.length ? h('ul', rest.map((d) => h('li', d.path ? [h('code', d.path), ': '] : null, d.message))) : null));
      const first = document.querySelector('main [aria-invalid="true"]');
      (first || this.alert).scrollIntoView({ block: 'center' });
      first?.focus();
    }
  }
}

function previewView(r) {
  const reuses = r.reuses || [];
  return [
    h('div.label.muted', 'Audience size now'),
    h('div.size', { 'data-testid': 'audience-size' }, num(r.audience_size)),
    h('h3', 'Reuse'),
    reuses.length
      ? h('ul.small-text', reuses.map((x) => h('li', h('span.tag', x.kind), ' ',
        (x.parents || []).map((p) => p.rule_name).join(', '), x.reason ? h('div.muted', x.reason) : null)))
      : h('p.muted.small-text', 'Computed directly: no existing segment answers it.'),
    h('h3', 'Plan'),
    planView(r.plan),
    r.sql ? h('details', h('summary', 'SQL'), h('pre', r.sql)) : null,
  ];
}

function planView(plan) {
  if (plan === null || plan === undefined) return h('p.muted.small-text', 'No plan.');
  if (typeof plan === 'string') return h('pre', plan);
  if (typeof plan.text === 'string') return h('pre', plan.text);
  return h('pre', JSON.stringify(plan, null, 2));
}
