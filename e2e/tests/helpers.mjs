// Shared by the end-to-end tests: a real `am serve` on a generated database, headless
// Chromium, and a record of console errors.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHOTS = path.join(ROOT, 'docs', 'screenshots');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

async function waitHealthy(base, child, ms = 60_000, log = null) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) {
      throw new Error(`am serve exited with ${child.exitCode}: ${log ? fs.readFileSync(log, 'utf8').slice(-2000) : ''}`);
    }
    try {
      const r = await fetch(`${base}/api/health`);
      if (r.status === 200 || r.status === 401) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${base}/api/health did not answer within ${ms} ms`);
}

// Builds `am`, generates a database and serves it on a free port. With E2E_BASE_URL set,
// uses that server instead (for running the tests against a server you started yourself).
export async function startServer({ token } = {}) {
  if (process.env.E2E_BASE_URL) {
    const base = process.env.E2E_BASE_URL.replace(/\/$/, '');
    await waitHealthy(base, null, 5_000);
    return { base, token, stop: async () => {} };
  }
  let bin = process.env.AM_BIN;
  if (!bin) {
    execFileSync('cargo', ['build', '-p', 'am-cli'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    bin = path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', 'am');
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-e2e-'));
  const db = path.join(tmp, 'e2e.db');
  const am = (...args) => execFileSync(bin, ['--db', db, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  am('init');
  am('generate', '--users', '2000', '--transactions', '30000', '--seed', '42');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const args = ['--db', db, 'serve', '--addr', `127.0.0.1:${port}`];
  if (token) args.push('--token', token);
  const log = path.join(tmp, 'serve.log');
  const out = fs.openSync(log, 'w');
  const child = spawn(bin, args, { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  await waitHealthy(base, child, 60_000, log);
  return {
    base, token, db,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      if (process.env.E2E_KEEP) console.error(`kept ${tmp}`);
      else fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

// A JSON client for preparing data and checking what the UI shows.
export function apiClient(base, token) {
  return async (method, p, body) => {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(`${base}/api${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    const json = text ? JSON.parse(text) : null;
    if (!r.ok) throw new Error(`${method} ${p} -> ${r.status}: ${text}`);
    return json;
  };
}

export async function waitRun(api, runId, ms = 60_000) {
  const until = Date.now() + ms;
  for (;;) {
    const run = await api('GET', `/runs/${runId}`);
    if (run.status === 'succeeded' || run.status === 'failed') return run;
    if (Date.now() > until) throw new Error(`run ${runId} still ${run.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Opens a page that records console errors and uncaught exceptions. A response with an
// expected error status (say the 422 of the validation test) is logged by Chromium as
// "Failed to load resource"; `allowStatus` lists the statuses that are expected.
export async function openPage(browser, { viewport = { width: 1280, height: 860 }, acceptDownloads = false } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads });
  const page = await context.newPage();
  const errors = [];
  page.allowStatus = new Set();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const st = /status of (\d{3})/.exec(m.text());
    if (st && page.allowStatus.has(Number(st[1]))) return;
    errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  page.consoleErrors = errors;
  return page;
}

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}
