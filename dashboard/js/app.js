// The dashboard's shell: the token, who it speaks for (/v1/me), the pickers (period, time zone,
// organization) and the hash router that renders one view module at a time. Each view module
// exports render(root, ctx) and calls Baton's public API itself.
import { api, token, setToken, describe, ApiError } from './api.js';
import { h, fill, notice, presetRange } from './ui.js';
import * as overview from './views/overview.js';
import * as lifecycle from './views/lifecycle.js';
import * as handoffs from './views/handoffs.js';
import * as calls from './views/calls.js';
import * as configuration from './views/configuration.js';
import * as webhooks from './views/webhooks.js';

const VIEWS = { overview, lifecycle, handoffs, calls, configuration, webhooks };
/** Views that read a period (the others ignore the period pickers). */
const RANGED = new Set(['overview', 'lifecycle', 'handoffs', 'calls']);
const PREFS = 'baton.prefs';

const $ = (id) => document.getElementById(id);
const state = { me: null, org: null, tz: 'UTC', preset: '30', start: null, end: null };

function savePrefs() {
  const { org, tz, preset, start, end } = state;
  sessionStorage.setItem(PREFS, JSON.stringify({ org, tz, preset, start, end }));
}

function loadPrefs() {
  try { return JSON.parse(sessionStorage.getItem(PREFS)) || {}; } catch { return {}; }
}

/** What every view gets. */
const ctx = {
  state,
  get organization() { return state.me.organizations.find((o) => o.id === state.org); },
  /** Whether this token may write the organization's data, and if not, why. */
  get readOnlyReason() {
    if (state.me.kind === 'reseller') return 'Reseller tokens read their organizations but never write: use a token of the organization with the write_all scope to edit.';
    if (!state.me.scopes.includes('write_all')) return 'This token is read-only (scope read_all): editing needs a token with the write_all scope.';
    return null;
  },
  params() {
    return { start_date: state.start, end_date: state.end, timezone: state.tz, organization_id: state.org };
  },
  rerender: () => route(),
};

function showLogin(message) {
  $('controls').hidden = true;
  $('main').hidden = true;
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token-input').focus();
}

async function start() {
  // `#token=<jwt>`, optionally `&view=<view>[/<id>]`: kept in this tab, then gone from the URL.
  const m = /^#token=([^&]+)(?:&view=([\w/%.-]+))?/.exec(location.hash);
  if (m) {
    setToken(decodeURIComponent(m[1]));
    sessionStorage.removeItem(PREFS);
    history.replaceState(null, '', `${location.pathname}#/${m[2] || 'overview'}`);
  }
  if (!token()) return showLogin();
  try {
    state.me = (await api('/v1/me')).data;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return showLogin(describe(e));
    $('main').replaceChildren(notice(describe(e), 'error'));
    return;
  }
  $('login').hidden = true;
  $('main').hidden = false;
  setupPickers();
  route();
}

function setupPickers() {
  const prefs = loadPrefs();
  const orgs = state.me.organizations;
  state.org = orgs.some((o) => o.id === prefs.org) ? prefs.org : orgs[0]?.id ?? null;
  const orgSel = $('org');
  fill(orgSel, ...orgs.map((o) => h('option', { value: o.id }, `${o.name} (${o.slug})`)));
  orgSel.value = state.org;
  $('org-label').hidden = state.me.kind !== 'reseller';
  orgSel.onchange = () => {
    state.org = orgSel.value;
    state.tz = ctx.organization?.timezone || state.tz;
    $('tz').value = state.tz;
    changed();
  };

  const zones = new Set(typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : []);
  zones.add('UTC');
  for (const o of orgs) zones.add(o.timezone);
  const tzSel = $('tz');
  fill(tzSel, ...[...zones].sort().map((z) => h('option', { value: z }, z)));
  state.tz = prefs.tz && zones.has(prefs.tz) ? prefs.tz : ctx.organization?.timezone || 'UTC';
  tzSel.value = state.tz;
  tzSel.onchange = () => { state.tz = tzSel.value; changed(); };

  state.preset = prefs.preset || '30';
  if (state.preset === 'custom' && prefs.start && prefs.end) [state.start, state.end] = [prefs.start, prefs.end];
  else [state.start, state.end] = presetRange(state.preset === 'custom' ? '30' : state.preset, state.tz);
  const preset = $('preset');
  preset.value = state.preset;
  $('start').value = state.start;
  $('end').value = state.end;
  preset.onchange = () => {
    state.preset = preset.value;
    if (state.preset !== 'custom') {
      [state.start, state.end] = presetRange(state.preset, state.tz);
      $('start').value = state.start;
      $('end').value = state.end;
    }
    changed();
  };
  for (const id of ['start', 'end']) {
    $(id).onchange = () => {
      const [s, e] = [$('start').value, $('end').value];
      if (!s || !e || s > e) return;
      [state.start, state.end] = [s, e];
      state.preset = 'custom';
      preset.value = 'custom';
      changed();
    };
  }
  $('controls').onsubmit = (e) => e.preventDefault();

  const org = ctx.organization;
  const kind = state.me.kind === 'reseller' ? `reseller token, ${orgs.length} organizations` : org ? org.name : 'organization token';
  const scope = state.me.scopes.includes('write_all') && state.me.kind !== 'reseller' ? 'read + write' : 'read only';
  $('who').replaceChildren(kind, h('span', { class: 'badge', dataset: { scope } }, scope));
  $('foot-note').textContent = `Baton dashboard · token ${state.me.token_id}`;
  $('sign-out').hidden = false;
}

function changed() {
  savePrefs();
  route();
}

let generation = 0;

async function route() {
  if (!state.me) return;
  const [name = 'overview', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const view = VIEWS[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  $('controls').hidden = false;
  for (const id of ['preset', 'start', 'end']) $(id).closest('label').hidden = !RANGED.has(view);
  // The configuration carries its own zone; every other view shows times in the picked one.
  $('tz').closest('label').hidden = view === 'configuration';
  $('controls').hidden = view === 'configuration' && state.me.kind !== 'reseller';
  document.title = `${view[0].toUpperCase()}${view.slice(1)} · Baton`;
  const root = h('div', { class: 'view', dataset: { view, state: 'loading' } }, h('p', { class: 'muted' }, 'Loading…'));
  $('main').replaceChildren(root);
  const mine = ++generation;
  try {
    await VIEWS[view].render(root, ctx, rest.map(decodeURIComponent));
    if (mine === generation) root.dataset.state = 'ready';
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof ApiError && e.status === 401) return showLogin(describe(e));
    fill(root, notice(describe(e), 'error'));
    root.dataset.state = 'error';
  }
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('token-input').value);
  sessionStorage.removeItem(PREFS);
  $('token-input').value = '';
  start();
});
$('sign-out').addEventListener('click', () => {
  setToken(null);
  sessionStorage.removeItem(PREFS);
  state.me = null;
  showLogin();
});

window.addEventListener('hashchange', () => (location.hash.startsWith('#token=') ? start() : route()));
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', route);
start();
