// The main journey through the UI against a real server: create a nested rule through the
// form with a live preview, save, trigger and watch it succeed, open the segment and check
// its member count against the API, follow the lineage to a parent, export the CSV; then
// the validation-error path and a refused delete. Screenshots go to docs/screenshots/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { apiClient, launch, openPage, shot, startServer, waitRun } from './helpers.mjs';

const PARENT = 'E2E active customers';
const CHILD = 'E2E big spenders outside tier 3';
const LOYAL = 'E2E loyal customers';

describe('web UI', () => {
  let server, api, browser, page, parent, previewSize, child, segment;

  before(async () => {
    server = await startServer();
    api = apiClient(server.base, server.token);
    const created = await api('POST', '/rules', {
      rule_name: PARENT,
      description: 'Users with at least three transactions',
      conditions: [{ field: 'transaction_count', operator: '>=', value: 3 }],
      schedule: '@daily',
    });
    // A dependency needs a segment before a rule built on it can be previewed.
    const { run_id: runId } = await api('POST', `/rules/${created.rule_id}/trigger`);
    assert.equal((await waitRun(api, runId)).status, 'succeeded');
    parent = await api('GET', `/rules/${created.rule_id}`);
    // A stricter bound on the parent's aggregate: the planner answers it from the parent.
    const loyal = await api('POST', '/rules', {
      rule_name: LOYAL,
      description: 'Users with at least twenty transactions',
      conditions: [{ field: 'transaction_count', operator: '>=', value: 20 }],
    });
    const { run_id: loyalRun } = await api('POST', `/rules/${loyal.rule_id}/trigger`);
    assert.equal((await waitRun(api, loyalRun)).status, 'succeeded');
    browser = await launch();
    page = await openPage(browser, { acceptDownloads: true });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const expectNoConsoleErrors = () => assert.deepEqual(page.consoleErrors.splice(0), [], 'console errors');
  const go = async (path) => { await page.goto(server.base + path); };

  it('shows the dashboard', async () => {
    await go('/');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    const summary = await api('GET', '/analytics/summary');
    const users = page.locator('.card', { hasText: 'Users' }).locator('.value');
    await page.waitForFunction(() => !document.querySelector('main .loading'));
    assert.equal((await users.textContent()).replace(/\D/g, ''), String(summary.total_users));
    // Every figure fits its card; one too long for it is written compactly, exact on hover.
    for (const value of await page.locator('.card .value').all()) {
      assert.ok(await value.evaluate((el) => el.scrollWidth <= el.clientWidth + 1), await value.textContent());
    }
    const big = await page.evaluate(async () => {
      const { fitted } = await import('/assets/dom.js');
      const el = fitted('2,508,435,544.47', 2508435544.47);
      return [el.textContent, el.title];
    });
    assert.deepEqual(big, ['2.51B', '2,508,435,544.47']);
    expectNoConsoleErrors();
  });

  it('creates a nested rule through the form, with a live preview', async () => {
    await go('/rules/new');
    await page.getByLabel('Name', { exact: true }).fill(CHILD);
    await page.getByLabel('Description', { exact: true }).fill('Active customers with a large spend or many large purchases, not in tier 3');
    await page.getByLabel('Run', { exact: true }).selectOption('0 0 * * *');
    await page.locator('.help strong').first().waitFor(); // the schedule in words
    await page.getByLabel('Last N days').check();
    await page.getByLabel('Number of days').fill('36500');

    const root = page.getByRole('group', { name: 'Conditions', exact: true });
    const inGroup = (label) => page.getByRole('group', { name: label, exact: true });
    const field = (label, name) => page.getByLabel(`${label}: field`, { exact: true }).selectOption(name);
    const op = (label, o) => page.getByLabel(`${label}: operator`, { exact: true }).selectOption(o);
    const value = (label, v) => page.getByLabel(`${label}: value`, { exact: true }).fill(String(v));

    await page.getByLabel('Conditions › 1: remove', { exact: true }).click();
    await root.getByRole('button', { name: '+ Group' }).last().click(); // 1: ANY
    const g1 = inGroup('Conditions › 1');
    assert.equal(await page.getByLabel('Conditions › 1: combine with').inputValue(), 'any');
    await g1.getByRole('button', { name: '+ Condition' }).last().click(); // 1.1
    await field('Conditions › 1 › 1', 'total_spend');
    await op('Conditions › 1 › 1', '>=');
    await value('Conditions › 1 › 1', 60000);
    await g1.getByRole('button', { name: '+ Group' }).last().click(); // 1.2: ALL
    const g12 = inGroup('Conditions › 1 › 2');
    await g12.getByRole('button', { name: '+ Condition' }).last().click(); // 1.2.1
    await field('Conditions › 1 › 2 › 1', 'transaction_count');
    await op('Conditions › 1 › 2 › 1', '>=');
    await value('Conditions › 1 › 2 › 1', 3);
    await g12.getByRole('button', { name: '+ Transaction filter (where)' }).click();
    await field('Conditions › 1 › 2 › 1 › where › 1', 'amount');
    await op('Conditions › 1 › 2 › 1 › where › 1', '>=');
    await value('Conditions › 1 › 2 › 1 › where › 1', 5000);
    await g12.getByRole('button', { name: '+ Condition' }).last().click(); // 1.2.2
    await field('Conditions › 1 › 2 › 2', 'city_tier');
    await op('Conditions › 1 › 2 › 2', 'in');
    await page.getByLabel('Conditions › 1 › 2 › 2: value 1', { exact: true }).fill('1');
    await g12.getByRole('button', { name: '+ value' }).click();
    await page.getByLabel('Conditions › 1 › 2 › 2: value 2', { exact: true }).fill('2');
    await root.getByRole('button', { name: '+ Condition' }).last().click(); // 2
    await field('Conditions › 2', 'city_tier');
    await op('Conditions › 2', '=');
    await page.getByLabel('Conditions › 2: negate (NOT)', { exact: true }).check();

    await page.getByLabel('Rule to add as a dependency').selectOption({ label: PARENT });
    await page.getByRole('button', { name: 'Add dependency' }).click();
    // The last input; the preview follows (debounced) with the whole rule.
    const final = page.waitForResponse((r) => r.url().endsWith('/api/rules/preview') && r.status() === 200
      && JSON.parse(r.request().postData()).conditions?.[1]?.not?.value === 3);
    await value('Conditions › 2', 3);
    const body = await (await final).json();
    const size = page.getByTestId('audience-size');
    await page.waitForFunction((n) => document.querySelector('[data-testid="audience-size"]')?.textContent.replace(/\D/g, '') === String(n), body.audience_size);
    previewSize = body.audience_size;
    assert.equal((await size.textContent()).replace(/\D/g, ''), String(previewSize));
    await page.getByRole('heading', { name: 'Plan' }).waitFor();
    await shot(page, 'rule-form');

    await page.getByRole('button', { name: 'Create rule' }).click();
    await page.waitForURL(`${server.base}/rules`);
    await page.getByText(`Created “${CHILD}”`).waitFor();
    const list = await api('GET', '/rules?per_page=100');
    child = list.items.find((r) => r.rule_name === CHILD);
    assert.ok(child, 'the rule was saved');
    assert.deepEqual(child.depends_on, [parent.id]);
    const saved = JSON.stringify(child.conditions);
    assert.match(saved, /"any"/);
    assert.match(saved, /"not"/);
    assert.match(saved, /"where"/);
    assert.match(saved, /"last_days":36500/);
    expectNoConsoleErrors();
  });

  it('triggers the rule and shows the run succeed without a reload', async () => {
    const marker = await page.evaluate(() => { window.__noReload = true; return true; });
    assert.ok(marker);
    await page.getByRole('button', { name: `Trigger ${CHILD}` }).click();
    const row = page.locator('tr', { has: page.getByRole('button', { name: `Trigger ${CHILD}` }) });
    await row.locator('.run-progress', { hasText: 'succeeded' }).waitFor({ timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.__noReload), true, 'no page reload');
    await shot(page, 'rules');
    expectNoConsoleErrors();
  });

  it('opens the segment and shows the member count the API reports', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Segments' }).click();
    await page.getByRole('heading', { name: 'Segments' }).waitFor();
    const link = page.locator('a[href^="/segments/"]', { hasText: CHILD });
    await link.waitFor();
    await shot(page, 'segments');
    await link.click();
    await page.getByRole('heading', { name: CHILD, level: 1 }).waitFor();
    child = await api('GET', `/rules/${child.id}`);
    segment = await api('GET', `/segments/${child.segment_id}`);
    const shown = (await page.getByTestId('row-count').textContent()).replace(/\D/g, '');
    assert.equal(shown, String(segment.row_count));
    assert.equal(segment.row_count, previewSize, 'the preview promised the same audience');
    await page.locator('.lineage svg').waitFor();
    await page.getByRole('heading', { name: 'Run history' }).waitFor();
    await page.waitForFunction(() => !document.querySelector('main .loading'));
    await shot(page, 'segment-detail');
    expectNoConsoleErrors();
  });

  it('exports the segment as CSV', async () => {
    const download = page.waitForEvent('download');
    await page.getByRole('link', { name: 'Export CSV' }).click();
    const file = await (await download).path();
    const lines = fs.readFileSync(file, 'utf8').trim().split(/\r?\n/);
    assert.equal(lines[0], 'user_id,name,email');
    assert.equal(lines.length - 1, segment.row_count);
    expectNoConsoleErrors();
  });

  it('follows the lineage graph to a parent segment', async () => {
    const parentNow = await api('GET', `/rules/${parent.id}`);
    await page.locator(`.lineage a[aria-label="Open segment ${PARENT}"]`).click();
    await page.waitForURL(`${server.base}/segments/${parentNow.segment_id}`);
    await page.getByRole('heading', { name: PARENT, level: 1 }).waitFor();
    expectNoConsoleErrors();
  });

  it('shows the reuse the planner found, in the list and in the lineage', async () => {
    const loyal = (await api('GET', '/rules?per_page=100')).items.find((r) => r.rule_name === LOYAL);
    assert.equal(loyal.reuses[0]?.parents[0]?.id, parent.id);
    await go(`/segments/${loyal.segment_id}`);
    await page.getByRole('heading', { name: LOYAL, level: 1 }).waitFor();
    await page.locator('.lineage path.edge.reuse').waitFor({ state: 'attached' });
    // What the last refresh read: the parent only if it held at most an eighth of the users
    // (otherwise the rule's own condition is cheaper); the page says the same as the API.
    const built = await api('GET', `/segments/${loyal.segment_id}`);
    const expected = built.reuses.map((r) => r.rule_name).join(', ') || 'none';
    assert.equal((await page.getByTestId('reused-from').textContent()).trim(), expected);
    expectNoConsoleErrors();
  });

  it('previews an edited rule in place of its saved version', async () => {
    const loyal = (await api('GET', '/rules?per_page=100')).items.find((r) => r.rule_name === LOYAL);
    const preview = page.waitForResponse((r) => r.url().includes('/api/rules/preview?') && r.status() === 200);
    await go(`/rules/edit/${loyal.id}`);
    const response = await preview;
    assert.equal(new URL(response.url()).searchParams.get('rule_id'), String(loyal.id));
    const body = await response.json();
    // Its own saved version is not offered; the parent it narrows still is.
    const parents = body.reuses.flatMap((x) => x.parents.map((p) => p.id));
    assert.deepEqual(parents, [parent.id]);
    assert.ok(body.plan.nodes.some((n) => n.rule_id === loyal.id), 'planned under its own id');
    await page.locator('.preview li', { hasText: PARENT }).waitFor();
    assert.equal(await page.locator('.preview li').count(), 1, 'one reuse: the parent');
    expectNoConsoleErrors();
  });

  it('builds a location condition from a radius and a point, previews its size and flags a bad latitude', async () => {
    page.allowStatus = new Set([422]);
    await go('/rules/new');
    await page.getByLabel('Name', { exact: true }).fill('E2E near Bengaluru');
    await page.getByLabel('Conditions › 1: field', { exact: true }).selectOption('location');
    assert.equal(await page.getByLabel('Conditions › 1: operator', { exact: true }).inputValue(), 'within_km');
    const part = (what) => page.getByLabel(`Conditions › 1: ${what}`, { exact: true });
    await part('radius in km').fill('25');
    await part('latitude').fill('12.9716');
    const previewed = page.waitForResponse((r) => r.url().endsWith('/api/rules/preview') && r.status() === 200
      && JSON.parse(r.request().postData()).conditions?.[0]?.value?.lon === 77.5946);
    await part('longitude').fill('77.5946');
    const response = await previewed;
    assert.deepEqual(JSON.parse(response.request().postData()).conditions[0],
      { field: 'location', operator: 'within_km', value: { lat: 12.9716, lon: 77.5946, km: 25 } });
    const body = await response.json();
    assert.ok(body.audience_size > 0, 'the generated users around Bengaluru are found');
    await page.waitForFunction((n) => document.querySelector('[data-testid="audience-size"]')?.textContent.replace(/\D/g, '') === String(n), body.audience_size);

    const invalid = page.waitForResponse((r) => r.url().endsWith('/api/rules/preview') && r.status() === 422);
    await part('latitude').fill('91');
    const problem = await (await invalid).json();
    assert.ok(JSON.stringify(problem).includes('conditions[0].value.lat'), JSON.stringify(problem));
    await page.waitForFunction(() => document.querySelector('input[aria-label="Conditions › 1: latitude"]')?.getAttribute('aria-invalid') === 'true');
    const predicate = page.getByRole('group', { name: 'Conditions › 1', exact: true });
    assert.match(await predicate.locator('.field-error').first().textContent(), /latitude/);
    expectNoConsoleErrors();
  });

  it('shows server validation errors next to the inputs they concern', async () => {
    page.allowStatus = new Set([409, 422]);
    await go('/rules/new');
    await page.getByLabel('Name', { exact: true }).fill(PARENT); // taken
    const invalid = page.waitForResponse((r) => r.url().endsWith('/api/rules/preview') && r.status() === 422);
    await page.getByLabel('Conditions › 1: value', { exact: true }).fill('');
    await invalid;
    const valueInput = page.getByLabel('Conditions › 1: value', { exact: true });
    await page.waitForFunction(() => document.querySelector('input[aria-label="Conditions › 1: value"]')?.getAttribute('aria-invalid') === 'true');
    const predicate = page.getByRole('group', { name: 'Conditions › 1', exact: true });
    assert.notEqual((await predicate.locator('.field-error').first().textContent()).trim(), '');
    await page.getByText('Not a valid rule yet').waitFor();

    await page.getByLabel('Cron line').fill('every day');
    await page.locator('#f-schedule[aria-invalid="true"]').waitFor();
    await page.getByRole('button', { name: 'Create rule' }).click();
    await page.getByText('Not saved.').waitFor();
    assert.notEqual((await page.locator('#f-schedule-err').textContent()).trim(), '');
    await shot(page, 'rule-form-errors');

    // Fixed, but the name is taken: a 409 next to the name.
    await valueInput.fill('1000');
    await page.getByLabel('Cron line').fill('');
    await page.getByRole('button', { name: 'Create rule' }).click();
    await page.locator('#f-rule_name[aria-invalid="true"]').waitFor();
    assert.notEqual((await page.locator('#f-rule_name-err').textContent()).trim(), '');
    expectNoConsoleErrors();
  });

  it('deletes after confirmation, and explains why a rule others depend on cannot be deleted', async () => {
    page.allowStatus = new Set([409]);
    await go('/rules');
    await page.getByRole('button', { name: `Delete ${PARENT}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete rule' }).click();
    await page.getByText(`Cannot delete “${PARENT}”.`).waitFor();
    assert.ok(await api('GET', `/rules/${parent.id}`), 'still there');
    // A rule nothing depends on goes, after the confirmation.
    await page.getByRole('button', { name: `Delete ${LOYAL}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete rule' }).click();
    await page.getByText(`Deleted “${LOYAL}”.`).waitFor();
    await page.getByRole('button', { name: `Delete ${LOYAL}` }).waitFor({ state: 'detached' });
    expectNoConsoleErrors();
  });

  it('says a missing segment or rule is not found, with the way back and no retry', async () => {
    const other = await openPage(browser);
    other.allowStatus.add(404);
    for (const [path, back, heading] of [
      ['/segments/987654', 'All segments', 'Segments'],
      ['/rules/edit/987654', 'All rules', 'Rules'],
    ]) {
      await other.goto(`${server.base}${path}`);
      const alert = other.getByRole('alert');
      await alert.getByText('Not found.').waitFor();
      assert.equal(await alert.getByRole('button', { name: 'Try again' }).count(), 0);
      await alert.getByRole('link', { name: back }).click();
      await other.getByRole('heading', { name: heading, level: 1 }).waitFor();
    }
    assert.deepEqual(other.consoleErrors, []);
    await other.context().close();
  });

  it('works at phone width', async () => {
    const phone = await openPage(browser, { viewport: { width: 390, height: 844 } });
    await phone.goto(`${server.base}/segments/${segment.id}`);
    await phone.locator('.lineage svg').waitFor();
    await phone.waitForFunction(() => !document.querySelector('main .loading'));
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scroll (${overflow}px)`);
    await shot(phone, 'segment-detail-phone');
    await phone.goto(`${server.base}/`);
    await phone.waitForFunction(() => !document.querySelector('main .loading'));
    await shot(phone, 'dashboard-phone');
    await go('/');
    await page.waitForFunction(() => !document.querySelector('main .loading'));
    await shot(page, 'dashboard');
    assert.deepEqual(phone.consoleErrors, []);
    await phone.context().close();
  });
});
