// Overview: OpenCX's /handoff-analytics for the period and for the period of the same length
// just before it (the endpoint has no compare parameter, so it is called twice).
import { api } from '../api.js';
import { chart, cssVar, soft } from '../charts.js';
import { h, fill, fmt, card, delta, bars, table, panel, previousRange, dayToX } from '../ui.js';

export async function render(root, ctx) {
  const p = ctx.params();
  const [ps, pe] = previousRange(p.start_date, p.end_date);
  const [now, before] = await Promise.all([
    api('/handoff-analytics', { params: p }),
    api('/handoff-analytics', { params: { ...p, start_date: ps, end_date: pe } }),
  ]);
  const a = now.data;
  const b = before.data;
  const rate = (x) => (x.total_sessions ? (100 * x.total_handoffs) / x.total_sessions : null);
  const withHandoff = a.reason_combinations.reduce((n, c) => n + c.session_count, 0);

  const c1 = cssVar('--c1');
  const trend = chart({
    label: 'Handoffs per day, this period and the previous one',
    x: a.trends.map((t) => dayToX(t.date)),
    series: [
      { label: 'Handoffs', values: a.trends.map((t) => t.count), color: c1, fill: soft(c1) },
      { label: `Previous period (${ps} – ${pe})`, values: a.trends.map((_, i) => b.trends[i]?.count ?? null), color: cssVar('--prev'), dash: [6, 4] },
    ],
  });

  const refs = [
    ['Knowledge', a.knowledge_references],
    ['Tools', a.tool_references],
    ['Instructions and AI profiles', a.instruction_references],
    ['Prohibited topics', a.prohibited_topic_references],
  ];

  fill(root, 
    h('h1', null, 'Overview'),
    h('p', { class: 'lede', dataset: { figure: 'summary' } }, a.summary),
    h('div', { class: 'cards' },
      card('Handoffs', fmt.int(a.total_handoffs), delta(a.total_handoffs, b.total_handoffs), 'total_handoffs'),
      card('Sessions', fmt.int(a.total_sessions), delta(a.total_sessions, b.total_sessions, { higherIsBad: false }), 'total_sessions'),
      card('Handoff rate', fmt.pct(rate(a)), rate(b) === null ? null : `previous period ${fmt.pct(rate(b))}`, 'handoff_rate'),
      card('Sessions with a handoff', fmt.int(withHandoff), null, 'sessions_with_handoff'),
    ),
    h('div', { class: 'grid' },
      h('section', { class: 'panel wide', 'aria-label': 'Daily trend' },
        h('h2', null, 'Handoffs per day'),
        trend),
      panel('Reasons',
        bars(a.reasons.map((r) => ({ key: r.reason, name: fmt.label(r.reason), value: r.count, text: `${fmt.int(r.count)} · ${fmt.pct(r.percentage)}` })), { test: 'reasons' }),
        h('p', { class: 'muted' }, 'A handoff can carry several reasons, so the shares may add up to more than 100 %.')),
      panel('Sentiment at handoff',
        bars(a.sentiments.map((s) => ({ key: s.sentiment ?? 'none', name: fmt.label(s.sentiment), value: s.count, text: `${fmt.int(s.count)} · ${fmt.pct(s.percentage)}` })), { color: cssVar('--c2'), test: 'sentiments' })),
      h('section', { class: 'panel wide', 'aria-label': 'Reason combinations' },
        h('h2', null, 'Reason combinations per session'),
        table([
          { label: 'Reasons', value: (c) => c.reasons.map(fmt.label).join(' + ') },
          { label: 'Sessions', num: true, value: (c) => fmt.int(c.session_count) },
          { label: 'Share', num: true, value: (c) => fmt.pct(c.percentage) },
        ], a.reason_combinations.slice(0, 10), { test: 'combinations' }),
        a.reason_combinations.length > 10 ? h('p', { class: 'muted' }, `${a.reason_combinations.length - 10} more combinations not shown.`) : null),
      h('section', { class: 'panel wide', 'aria-label': 'Top references' },
        h('h2', null, 'Top references'),
        h('div', { class: 'grid' }, refs.map(([title, list]) => h('div', null,
          h('h3', { class: 'muted' }, title),
          bars(list.slice(0, 5).map((r) => ({ key: `${r.type}:${r.id}`, name: r.id, value: r.count })), { color: cssVar('--c5'), test: `refs-${title}` }))))),
    ),
  );
}
