// Small DOM, number and date helpers shared by the views. No framework: elements are built with
// h() and text is always set as text (never as HTML), so no data can inject markup.

/** h('div', {class: 'x', onclick: f}, child, 'text', [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Replaces `el`'s children (arrays flattened; null, undefined and false left out). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const nf = new Intl.NumberFormat('en-US');
const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export const fmt = {
  int: (n) => (n === null || n === undefined ? '–' : nf.format(n)),
  dec: (n) => (n === null || n === undefined ? '–' : nf1.format(n)),
  pct: (n) => (n === null || n === undefined ? '–' : `${nf2.format(n)} %`),
  secs: (s) => {
    if (s === null || s === undefined) return '–';
    const r = Math.round(s);
    if (s < 60) return `${nf1.format(s)} s`;
    if (r < 3600) return `${Math.floor(r / 60)}m ${String(r % 60).padStart(2, '0')}s`;
    return `${Math.floor(r / 3600)}h ${String(Math.floor((r % 3600) / 60)).padStart(2, '0')}m`;
  },
  ms: (n) => (n === null || n === undefined ? '–' : `${nf.format(Math.round(n))} ms`),
  label: (s) => (s === null || s === undefined ? 'none' : String(s).replaceAll('_', ' ')),
  when: (iso, tz) => {
    if (!iso) return '–';
    const d = new Date(iso);
    return new Intl.DateTimeFormat('en-GB', { timeZone: tz, dateStyle: 'medium', timeStyle: 'short' }).format(d);
  },
};

/** A figure card. `test` names it for the browser tests (data-figure). */
export function card(label, value, sub, test) {
  return h('div', { class: 'card' },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value', dataset: test ? { figure: test } : undefined }, value),
    sub ? h('div', { class: 'sub' }, sub) : null);
}

/** Change against the previous period, coloured (more handoffs is worse: red). */
export function delta(now, before, { higherIsBad = true } = {}) {
  if (before === null || before === undefined) return null;
  if (before === 0) return h('span', { class: 'flat' }, now === 0 ? 'same as previous period' : 'none in previous period');
  const d = ((now - before) / before) * 100;
  const cls = Math.abs(d) < 0.05 ? 'flat' : (d > 0) === higherIsBad ? 'up' : 'down';
  return h('span', { class: cls }, `${d > 0 ? '+' : ''}${nf1.format(d)} % vs previous period`);
}

/** Horizontal bars: rows of {name, value, text}. */
export function bars(rows, { color, test } = {}) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  if (!rows.length) return h('p', { class: 'muted' }, 'Nothing in this period.');
  return h('ul', { class: 'bars', dataset: test ? { list: test } : undefined },
    rows.map((r) => {
      const fill = h('div', { class: 'fill' });
      fill.style.width = `${(100 * r.value) / max}%`;
      if (color) fill.style.background = color;
      return h('li', { dataset: { key: r.key ?? r.name, value: r.value } },
        h('span', { class: 'name', title: r.name }, r.name),
        h('div', { class: 'track', 'aria-hidden': 'true' }, fill),
        h('span', { class: 'num' }, r.text ?? fmt.int(r.value)));
    }));
}

/** A table: columns [{label, value: row => text|Node, num?}]. */
export function table(columns, rows, { test, caption } = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { dataset: test ? { table: test } : undefined },
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.label)))),
      h('tbody', null, rows.map((r) => h('tr', null, columns.map((c) => h('td', { class: [c.num && 'num', c.nowrap && 'nowrap'].filter(Boolean).join(' ') || null }, c.value(r))))))));
}

export function panel(title, ...children) {
  return h('section', { class: 'panel', 'aria-label': title }, h('h2', null, title), ...children);
}

export function notice(text, kind = 'notice') {
  return h('div', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

// ---- dates: local calendar days as 'YYYY-MM-DD' strings ----

export function today(tz) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
}

function toUtc(day) {
  const [y, m, d] = day.split('-').map(Number);
  return Date.UTC(y, m - 1, d);
}

function fromUtc(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function addDays(day, n) {
  return fromUtc(toUtc(day) + n * 86400000);
}

/** Days from `a` to `b`, both included. */
export function daysBetween(a, b) {
  return Math.round((toUtc(b) - toUtc(a)) / 86400000) + 1;
}

/** The range of a preset, in time zone `tz`: [start, end], both days included. */
export function presetRange(preset, tz) {
  const t = today(tz);
  if (preset === 'this-month') return [`${t.slice(0, 7)}-01`, t];
  if (preset === 'last-month') {
    const firstThis = `${t.slice(0, 7)}-01`;
    const lastPrev = addDays(firstThis, -1);
    return [`${lastPrev.slice(0, 7)}-01`, lastPrev];
  }
  const n = Number(preset) || 30;
  return [addDays(t, -(n - 1)), t];
}

/** The period of the same length just before [start, end]. */
export function previousRange(start, end) {
  const n = daysBetween(start, end);
  return [addDays(start, -n), addDays(start, -1)];
}

/** Seconds since the epoch of a day's UTC midnight (uPlot's x for daily series). */
export function dayToX(day) {
  return toUtc(day) / 1000;
}
