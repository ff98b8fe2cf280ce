// Lifecycle: GET /v1/handoff-lifecycle: how handoffs went after the AI asked for a person
// (waits, acceptance, failures, abandonment), by day and by group, inside and outside working
// hours, with the previous period. A server without the endpoint (404 from its fallback) gets a
// sentence, not a broken page.
import { api, ApiError } from '../api.js';
import { chart, cssVar } from '../charts.js';
import { h, fill, fmt, card, delta, table, panel, notice, dayToX } from '../ui.js';

const GROUPS = [['reason', 'Reason'], ['channel', 'Channel'], ['destination', 'Destination'], ['agent', 'Agent']];
let groupBy = 'reason';

export async function render(root, ctx) {
  let d;
  try {
    ({ data: d } = await api('/v1/handoff-lifecycle', { params: { ...ctx.params(), group_by: groupBy, compare: 'previous_period' } }));
  } catch (e) {
    if (e instanceof ApiError && e.noSuchEndpoint) {
      fill(root, h('h1', null, 'Handoff lifecycle'),
        h('div', { class: 'notice', role: 'status', dataset: { missing: 'lifecycle' } },
          'This server has no handoff lifecycle endpoint yet (GET /v1/handoff-lifecycle answered 404). ',
          'Upgrade Baton to see waits, acceptance and abandonment here; the other views work as usual.'));
      return;
    }
    throw e;
  }
  const t = d.totals;
  const p = d.previous;
  const w = d.wait_seconds;
  const inside = Math.max(0, t.initiated - t.outside_working_hours);
  const [c1, c2, c3, c4] = [cssVar('--c1'), cssVar('--c2'), cssVar('--c3'), cssVar('--c4')];
  const x = d.days.map((day) => dayToX(day.date));
  const split = h('div', { class: 'split', role: 'img', 'aria-label': `${inside} inside and ${t.outside_working_hours} outside working hours` });
  for (const [n, color] of [[inside, c1], [t.outside_working_hours, c3]]) {
    const part = h('div');
    part.style.width = `${t.initiated ? (100 * n) / t.initiated : 0}%`;
    part.style.background = color;
    split.append(part);
  }
  const groupSel = h('select', { 'aria-label': 'Group by' }, GROUPS.map(([v, l]) => h('option', { value: v, selected: v === groupBy }, l)));
  groupSel.addEventListener('change', () => { groupBy = groupSel.value; ctx.rerender(); });

  fill(root, 
    h('h1', null, 'Handoff lifecycle'),
    h('p', { class: 'lede' }, 'What happened after the AI asked for a person: how long customers waited for someone to accept, and how many handoffs failed or were abandoned.'),
    h('div', { class: 'cards' },
      card('Initiated', fmt.int(t.initiated), delta(t.initiated, p?.totals?.initiated), 'initiated'),
      card('Accepted', fmt.pct(d.rates.acceptance), `${fmt.int(t.completed)} completed`, 'acceptance'),
      card('Failed', fmt.pct(d.rates.failure), `${fmt.int(t.failed)} handoffs`, 'failure'),
      card('Abandoned', fmt.pct(d.rates.abandonment), `${fmt.int(t.abandoned)} customers left first`, 'abandonment'),
      card('Retried', fmt.pct(d.rates.retry), `${fmt.int(t.retried)} handoffs`, 'retry'),
      card('Still open', fmt.int(t.open), null, 'open'),
      card('Median wait', fmt.secs(w.p50), p?.wait_seconds ? `previous period ${fmt.secs(p.wait_seconds.p50)}` : null, 'wait_p50'),
      card('90th percentile wait', fmt.secs(w.p90), `p95 ${fmt.secs(w.p95)} · max ${fmt.secs(w.max)}`, 'wait_p90'),
    ),
    h('div', { class: 'grid' },
      h('section', { class: 'panel wide', 'aria-label': 'Outcomes per day' },
        h('h2', null, 'Handoffs per day by outcome'),
        chart({
          label: 'Initiated, completed, failed and abandoned handoffs per day',
          x,
          series: [
            { label: 'Initiated', values: d.days.map((v) => v.initiated), color: c1 },
            { label: 'Completed', values: d.days.map((v) => v.completed), color: c2 },
            { label: 'Failed', values: d.days.map((v) => v.failed), color: c4 },
            { label: 'Abandoned', values: d.days.map((v) => v.abandoned), color: c3 },
          ],
        })),
      panel('Median wait per day',
        chart({ label: 'Median wait per day', x, height: 200, yFormat: (v) => fmt.secs(v), series: [{ label: 'Median wait', values: d.days.map((v) => v.wait_p50), color: c2 }] })),
      panel('Inside and outside working hours',
        split,
        h('dl', { class: 'facts' },
          h('dt', null, 'Inside working hours'), h('dd', { dataset: { figure: 'inside_working_hours' } }, fmt.int(inside)),
          h('dt', null, 'Outside working hours'), h('dd', { dataset: { figure: 'outside_working_hours' } }, fmt.int(t.outside_working_hours))),
        h('p', { class: 'muted' }, 'Classified when the handoff was first initiated, against the configuration in force then.')),
      h('section', { class: 'panel wide', 'aria-label': 'By group' },
        h('div', { class: 'filters' }, h('h2', null, 'By '), groupSel),
        table([
          { label: GROUPS.find((g) => g[0] === groupBy)[1], value: (g) => fmt.label(g.key) },
          { label: 'Initiated', num: true, value: (g) => fmt.int(g.totals?.initiated ?? g.initiated) },
          { label: 'Completed', num: true, value: (g) => fmt.int(g.totals?.completed ?? g.completed) },
          { label: 'Failed', num: true, value: (g) => fmt.int(g.totals?.failed ?? g.failed) },
          { label: 'Abandoned', num: true, value: (g) => fmt.int(g.totals?.abandoned ?? g.abandoned) },
          { label: 'Median wait', num: true, value: (g) => fmt.secs((g.wait_seconds ?? g).p50) },
          { label: 'p90 wait', num: true, value: (g) => fmt.secs((g.wait_seconds ?? g).p90) },
        ], d.groups, { test: 'groups' })),
      d.groups.length ? null : notice('No handoff in this period.'),
    ),
  );
}
