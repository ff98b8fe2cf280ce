// Handoffs: /v1/handoffs with its filters and cursor pages, and one handoff
// (/v1/handoffs/{id}) with its state history and its PolyAI data.
import { api } from '../api.js';
import { h, fill, fmt, table, panel, notice } from '../ui.js';

const REASONS = ['ai_implied_handoff', 'based_on_instructions', 'instructions_not_clear', 'insufficient_knowledge',
  'insufficient_tools', 'prohibited_topic', 'user_requested_human_assistance'];

// The list's position survives a visit to one handoff and back.
const list = { key: null, filters: { status: '', reason: '', state: '', session_id: '', limit: '50' }, cursors: [null], page: 0, before: 0 };

export async function render(root, ctx, [id]) {
  if (id) return renderOne(root, ctx, id);
  const p = ctx.params();
  const key = JSON.stringify(p);
  if (key !== list.key) Object.assign(list, { key, cursors: [null], page: 0, before: 0 });
  const f = list.filters;
  const { data } = await api('/v1/handoffs', {
    params: { ...p, status: f.status, reason: f.reason, state: f.state.trim(), session_id: f.session_id.trim(), limit: f.limit, next: list.cursors[list.page] },
  });
  const rows = data.handoffs;
  if (data.next) list.cursors[list.page + 1] = data.next;

  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    select('Status', 'status', ['', 'open', 'completed', 'failed'], f.status),
    select('Reason', 'reason', ['', ...REASONS], f.reason),
    h('label', null, 'State', h('input', { name: 'state', value: f.state, placeholder: 'e.g. customer_refund', size: 16 })),
    h('label', null, 'Session', h('input', { name: 'session_id', value: f.session_id, size: 16 })),
    select('Per page', 'limit', ['25', '50', '100', '500'], f.limit),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    for (const k of Object.keys(f)) f[k] = String(fd.get(k) ?? '');
    Object.assign(list, { cursors: [null], page: 0, before: 0 });
    ctx.rerender();
  });

  const tz = ctx.state.tz;
  const first = list.before + 1;
  const last = list.before + rows.length;
  const go = (page, before) => () => { list.page = page; list.before = before; ctx.rerender(); };
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'secondary', disabled: list.page === 0, onclick: go(0, 0) }, '« First'),
    h('button', { type: 'button', class: 'secondary', disabled: list.page === 0, onclick: go(list.page - 1, Math.max(0, list.before - Number(f.limit))) }, '‹ Previous'),
    h('span', { dataset: { pageRows: rows.length, page: list.page + 1 } },
      rows.length ? `Page ${list.page + 1}: handoffs ${fmt.int(first)}–${fmt.int(last)}` : 'No handoff matches.'),
    h('button', { type: 'button', 'data-action': 'next', disabled: !data.next, onclick: go(list.page + 1, last) }, 'Next ›'));

  fill(root, 
    h('h1', null, 'Handoffs'),
    h('p', { class: 'lede' }, `Handoffs first initiated from ${ctx.state.start} to ${ctx.state.end} (${tz}), newest first.`),
    form,
    h('section', { class: 'panel' },
      table([
        { label: 'Initiated', nowrap: true, value: (r) => fmt.when(r.initiated_at, tz) },
        { label: 'Handoff', value: (r) => h('a', { href: `#/handoffs/${encodeURIComponent(r.handoff_id)}`, class: 'mono' }, r.handoff_id) },
        { label: 'Status', value: (r) => h('span', { class: `pill ${r.status}` }, r.status) },
        { label: 'State', value: (r) => fmt.label(r.state) },
        { label: 'Reasons', value: (r) => r.reasons.map(fmt.label).join(', ') },
        { label: 'Channel', value: (r) => fmt.label(r.session.channel) },
        { label: 'Agent', value: (r) => r.session.agent_name ?? r.session.agent_id ?? '–' },
        { label: 'Attempts', num: true, value: (r) => r.attempts },
        { label: 'Wait', num: true, nowrap: true, value: (r) => (r.completed_at ? fmt.secs((Date.parse(r.completed_at) - Date.parse(r.initiated_at)) / 1000) : '–') },
      ], rows, { test: 'handoffs' }),
      pager),
  );
}

function select(label, name, options, value) {
  return h('label', null, label, h('select', { name },
    options.map((o) => h('option', { value: o, selected: o === value }, o === '' ? 'any' : fmt.label(o)))));
}

async function renderOne(root, ctx, id) {
  const { data: d } = await api(`/v1/handoffs/${encodeURIComponent(id)}`, { params: { organization_id: ctx.state.org } });
  const tz = ctx.state.tz;
  const org = ctx.organization;
  const agent = d.session.agent_id ?? 'default';
  fill(root, 
    h('p', null, h('a', { href: '#/handoffs' }, '‹ Back to the list')),
    h('h1', null, 'Handoff ', h('span', { class: 'mono' }, d.handoff_id)),
    d.summary ? h('p', { class: 'lede' }, d.summary) : null,
    h('div', { class: 'grid' },
      panel('Handoff', h('dl', { class: 'facts', dataset: { handoff: d.handoff_id } },
        fact('Status', h('span', { class: `pill ${d.status}` }, d.status)),
        fact('State', fmt.label(d.state)),
        fact('Reasons', d.reasons.map(fmt.label).join(', ')),
        fact('Sentiment', fmt.label(d.sentiment)),
        fact('Attempts', d.attempts),
        fact('Initiated', fmt.when(d.initiated_at, tz)),
        d.attempts > 1 ? fact('Last initiated', fmt.when(d.last_initiated_at, tz)) : null,
        fact('Completed', fmt.when(d.completed_at, tz)),
        d.failed_at ? fact('Failed', `${fmt.when(d.failed_at, tz)}${d.error ? ` — ${d.error}` : ''}`) : null,
        fact('Destination', d.destination ?? '–'),
        fact('Operator', d.operator_id ?? '–'),
        fact('Shared id', d.shared_id ?? '–'),
        fact('References', d.references.length ? d.references.map((r) => `${fmt.label(r.type)}: ${r.id}`).join(', ') : '–'))),
      panel('Session', h('dl', { class: 'facts' },
        fact('Session', h('span', { class: 'mono' }, d.session.session_id)),
        fact('Channel', fmt.label(d.session.channel)),
        fact('Agent', d.session.agent_name ? `${d.session.agent_name} (${agent})` : agent),
        fact('Started', fmt.when(d.session.started_at, tz)),
        fact('Ended', fmt.when(d.session.ended_at, tz)),
        fact('Sentiment', fmt.label(d.session.sentiment)))),
      h('section', { class: 'panel wide', 'aria-label': 'History' },
        h('h2', null, 'History'),
        table([
          { label: '#', num: true, value: (e) => e.seq },
          { label: 'When', value: (e) => fmt.when(e.occurred_at, tz) },
          { label: 'State', value: (e) => fmt.label(e.state) },
          { label: 'Attempt', num: true, value: (e) => e.attempt },
          { label: 'Event', value: (e) => h('span', { class: 'mono' }, e.event_id) },
        ], d.history, { test: 'history' })),
      h('section', { class: 'panel wide', 'aria-label': 'PolyAI data' },
        h('h2', null, 'PolyAI handoff data'),
        h('p', { class: 'muted' }, 'What PolyAI clients read at ',
          h('code', null, `GET /v1/${org?.slug ?? '{account}'}/${agent}/handoff_state?id=${d.handoff_id}`), '.'),
        Object.keys(d.data).length ? h('pre', { class: 'json', dataset: { json: 'data' } }, JSON.stringify(d.data, null, 2)) : notice('No data was sent with this handoff.'))),
  );
}

function fact(term, value) {
  return [h('dt', null, term), h('dd', null, value)];
}
