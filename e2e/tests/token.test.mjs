// With `am serve --token`, the UI asks for the token once, keeps it for the session and
// sends it on every call.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { apiClient, launch, openPage, startServer, waitRun } from './helpers.mjs';

const TOKEN = 'e2e-secret-token';

describe('web UI with an API token', { skip: process.env.E2E_BASE_URL ? 'needs its own server' : false }, () => {
  let server, browser;

  before(async () => {
    server = await startServer({ token: TOKEN });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('asks for the token once and keeps it for the session', async () => {
    const page = await openPage(browser, { acceptDownloads: true });
    page.allowStatus = new Set([401]);
    await page.goto(`${server.base}/`);
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Token').fill('wrong');
    await dialog.getByRole('button', { name: 'Use token' }).click();
    await dialog.getByText('That token was not accepted.').waitFor();
    await dialog.getByLabel('Token').fill(TOKEN);
    await dialog.getByRole('button', { name: 'Use token' }).click();
    await page.waitForFunction(() => !document.querySelector('main .loading') && !document.querySelector('dialog'));
    const users = await page.locator('.card', { hasText: 'Users' }).locator('.value').textContent();
    assert.match(users, /\d/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('am-token')), TOKEN);

    // Other pages, same session: no more asking.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Rules' }).click();
    await page.getByRole('heading', { name: 'Rules' }).waitFor();
    await page.reload();
    await page.getByRole('heading', { name: 'Rules' }).waitFor();
    await page.waitForFunction(() => !document.querySelector('main .loading'));
    assert.equal(await page.getByRole('dialog').count(), 0);

    // The CSV export is fetched with the token too.
    const api = apiClient(server.base, TOKEN);
    const { rule_id: id } = await api('POST', '/rules', {
      rule_name: 'Tier 1', conditions: [{ field: 'city_tier', operator: '=', value: 1 }],
    });
    const { run_id: runId } = await api('POST', `/rules/${id}/trigger`);
    assert.equal((await waitRun(api, runId)).status, 'succeeded');
    const { segment_id: segmentId } = await api('GET', `/rules/${id}`);
    const segment = await api('GET', `/segments/${segmentId}`);
    await page.goto(`${server.base}/segments/${segmentId}`);
    const download = page.waitForEvent('download');
    await page.getByRole('link', { name: 'Export CSV' }).click();
    const lines = fs.readFileSync(await (await download).path(), 'utf8').trim().split(/\r?\n/);
    assert.equal(lines[0], 'user_id,name,email');
    assert.equal(lines.length - 1, segment.row_count);
    assert.equal(await page.getByRole('dialog').count(), 0);
    assert.deepEqual(page.consoleErrors, []);
    await page.context().close();
  });
});
