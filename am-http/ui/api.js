// The UI's only door to the server: fetch over /api, JSON in and out, errors as ApiError,
// and the bearer token asked for once (on the first 401) and kept for the session.

const TOKEN_KEY = 'am-token';

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

let asking = null;

// Shows the token dialog; resolves with the token, or null when the user cancels.
function askToken(rejected) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dlg = document.createElement('dialog');
    dlg.className = 'token-dialog';
    dlg.innerHTML = `
      <form method="dialog">
        <h2>API token needed</h2>
        <p>This server asks for a token. It is kept for this browser session only.</p>
        ${rejected ? '<p class="field-error" role="alert">That token was not accepted.</p>' : ''}
        <label for="token-input">Token</label>
        <input id="token-input" name="token" type="password" autocomplete="off" required>
        <div class="actions">
          <button type="submit" value="ok" class="primary">Use token</button>
          <button type="button" value="cancel" class="cancel">Cancel</button>
        </div>
      </form>`;
    document.body.append(dlg);
    const input = dlg.querySelector('input');
    dlg.querySelector('.cancel').addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => {
      const value = dlg.returnValue === 'ok' ? input.value.trim() : '';
      dlg.remove();
      asking = null;
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      resolve(value || null);
    });
    dlg.showModal();
    input.focus();
  });
  return asking;
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// Fetches with the token, asking for it when the server answers 401.
async function send(path, init = {}, extraHeaders = {}) {
  for (let attempt = 0; ; attempt++) {
    const sent = token();
    let res;
    try {
      res = await fetch(path, { ...init, headers: headers(extraHeaders) });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'Cannot reach the server. Is `am serve` running?');
    }
    if (res.status !== 401 || attempt > 3) return res;
    if (token() !== sent) continue; // another request already got a new token
    if (sent) sessionStorage.removeItem(TOKEN_KEY);
    const t = await askToken(Boolean(sent));
    if (!t) return res;
  }
}

async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const e = body && body.error;
  if (e) return new ApiError(res.status, e.code, e.message, e.details || []);
  return new ApiError(res.status, 'http_' + res.status, `${res.status} ${res.statusText}`);
}

export async function request(method, path, body, { signal } = {}) {
  const init = { method, signal };
  const extra = {};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    extra['Content-Type'] = 'application/json';
  }
  const res = await send('/api' + path, init, extra);
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body ?? {}, opts);
export const put = (path, body) => request('PUT', path, body);
export const del = (path) => request('DELETE', path);

// Builds a query string from an object, dropping empty values.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? '?' + s : '';
}

// Downloads a file from the API with the token (used when a plain link would lack it).
export async function download(path, filename) {
  const res = await send('/api' + path, { method: 'GET' }, { Accept: '*/*' });
  if (!res.ok) throw await errorFrom(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Fetches every page of a paginated list (for pickers), up to `max` items.
export async function all(path, max = 1000) {
  const items = [];
  for (let page = 1; ; page++) {
    const r = await get(`${path}${qs({ page, per_page: 100 })}`);
    items.push(...r.items);
    if (page >= r.pages || items.length >= max || r.items.length === 0) return items;
  }
}
