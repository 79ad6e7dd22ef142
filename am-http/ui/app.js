// The router: maps the address to a page module, intercepts same-origin links, and gives
// each page a fresh container and a way to clean up (timers, pending requests).

import { h, clear, errorBox } from './dom.js';

const routes = [
  [/^\/$/, () => import('./pages/dashboard.js'), 'Dashboard'],
  [/^\/rules\/?$/, () => import('./pages/rules.js'), 'Rules'],
  [/^\/rules\/new\/?$/, () => import('./pages/rule-form.js'), 'New rule'],
  [/^\/rules\/edit\/(\d+)\/?$/, () => import('./pages/rule-form.js'), 'Edit rule'],
  [/^\/segments\/?$/, () => import('./pages/segments.js'), 'Segments'],
  [/^\/segments\/(\d+)\/?$/, () => import('./pages/segment-detail.js'), 'Segment'],
];

const main = document.getElementById('main');
let cleanup = null;
let seq = 0;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

async function render() {
  const mine = ++seq;
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  const { pathname, searchParams } = new URL(location.href);
  for (const nav of document.querySelectorAll('[data-nav]')) {
    const p = nav.dataset.nav;
    const on = p === '/' ? pathname === '/' : pathname.startsWith(p);
    if (on) nav.setAttribute('aria-current', 'page'); else nav.removeAttribute('aria-current');
  }
  const route = routes.find(([re]) => re.test(pathname));
  const view = h('div.page');
  clear(main, view);
  if (!route) {
    document.title = 'Not found · Audience Manager';
    view.append(h('h1', 'Page not found'), h('p', 'There is no page at ', h('code', pathname), '. ',
      h('a', { href: '/' }, 'Go to the dashboard'), '.'));
    return;
  }
  const [re, load, title] = route;
  const params = pathname.match(re).slice(1);
  document.title = `${title} · Audience Manager`;
  try {
    const mod = await load();
    if (mine !== seq) return;
    const ctl = new AbortController();
    cleanup = () => ctl.abort();
    await mod.render(view, { params, query: searchParams, signal: ctl.signal, navigate });
  } catch (err) {
    if (err.name === 'AbortError' || mine !== seq) return;
    view.append(errorBox(err, render));
  }
}

// Same-origin links go through the router; /api links (CSV export) and new-tab clicks do not.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a');
  if (!a || a.hasAttribute('download') || a.getAttribute('target')) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/') || href.startsWith('/assets/')) return;
  e.preventDefault();
  navigate(href);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

window.addEventListener('popstate', render);
render();
