// Calls: Telzino's /v1/metrics (camelCase parameters): volume, hourly distribution, outcomes,
// agents, AI insights and escalation reasons.
import { api } from '../api.js';
import { chart, cssVar, soft } from '../charts.js';
import { h, fill, fmt, card, bars, table, panel, dayToX } from '../ui.js';

export async function render(root, ctx) {
  const s = ctx.state;
  const { data: { data: m } } = await api('/v1/metrics', {
    params: { startDate: s.start, endDate: s.end, timezone: s.tz, organizationId: s.org },
  });
  const k = m.metrics;
  const [c1, c2, c3] = [cssVar('--c1'), cssVar('--c2'), cssVar('--c3')];
  const r = m.resolutionBreakdown;
  const ai = m.aiInsights;

  fill(root, 
    h('h1', null, 'Calls'),
    h('p', { class: 'lede' }, `Voice agents' calls started from ${s.start} to ${s.end} (${s.tz}).`),
    h('div', { class: 'cards' },
      card('Calls', fmt.int(k.totalCalls), null, 'totalCalls'),
      card('Minutes', fmt.dec(k.totalMinutes), null, 'totalMinutes'),
      card('Resolved', fmt.pct(k.resolutionRate), null, 'resolutionRate'),
      card('Escalated', fmt.pct(k.escalationRate), 'transferred to a person', 'escalationRate'),
      card('Average call', fmt.secs(k.avgDuration), null, 'avgDuration'),
      card('First response', fmt.ms(k.responseTime), 'time to first token', 'responseTime'),
      card('Positive sentiment', fmt.pct(k.sentimentPercent), null, 'sentimentPercent'),
      card('Active agents', fmt.int(k.activeAgents), null, 'activeAgents'),
    ),
    h('div', { class: 'grid' },
      h('section', { class: 'panel wide', 'aria-label': 'Daily volume' },
        h('h2', null, 'Calls per day'),
        chart({
          label: 'Calls and resolved calls per day',
          x: m.dailyVolume.map((d) => dayToX(d.date)),
          series: [
            { label: 'Calls', values: m.dailyVolume.map((d) => d.totalCalls), color: c1, fill: soft(c1) },
            { label: 'Resolved', values: m.dailyVolume.map((d) => d.resolvedCalls), color: c2 },
          ],
        })),
      panel('Calls by hour of day',
        chart({
          label: 'Calls per local hour, summed over the period',
          time: false,
          bars: true,
          height: 220,
          x: m.hourlyDistribution.map((_, i) => i),
          xFormat: (v) => `${String(v).padStart(2, '0')}h`,
          series: [{ label: 'Calls', values: m.hourlyDistribution.map((b) => b.calls), color: c3 }],
        })),
      panel('Outcomes',
        bars([
          { key: 'resolved', name: 'Resolved', value: r.resolved },
          { key: 'transferred', name: 'Transferred', value: r.transferred },
          { key: 'abandoned', name: 'Abandoned', value: r.abandoned },
          { key: 'other', name: 'Other', value: r.other },
        ].map((x) => ({ ...x, text: `${fmt.int(x.value)} · ${k.totalCalls ? `${fmt.dec((100 * x.value) / k.totalCalls)} %` : '–'}` })), { color: c2, test: 'outcomes' })),
      h('section', { class: 'panel wide', 'aria-label': 'Agents' },
        h('h2', null, 'Agents'),
        table([
          { label: 'Agent', value: (a) => a.agentName },
          { label: 'Status', value: (a) => h('span', { class: 'pill' }, a.status) },
          { label: 'Calls', num: true, value: (a) => fmt.int(a.totalCalls) },
          { label: 'Resolved', num: true, value: (a) => fmt.pct(a.resolvedPercent) },
          { label: 'Transferred', num: true, value: (a) => fmt.pct(a.transferredPercent) },
          { label: 'Abandoned', num: true, value: (a) => fmt.pct(a.abandonedPercent) },
          { label: 'Avg. length', num: true, value: (a) => fmt.secs(a.avgDuration) },
          { label: 'Positive', num: true, value: (a) => fmt.pct(a.sentimentPercent) },
        ], m.agentPerformance, { test: 'agents' })),
      panel('AI insights', h('div', { class: 'cards' },
        card('Intent accuracy', fmt.pct(ai.intentAccuracy), 'calls without corrections'),
        card('Entity extraction', fmt.pct(ai.entityExtraction), 'tool calls without error'),
        card('Speech recognition', fmt.pct(ai.speechRecognition), 'mean confidence'),
        card('Context retention', fmt.pct(ai.contextRetention), 'cached tokens'),
        card('Response latency', fmt.ms(ai.responseLatency)))),
      panel('Escalation reasons',
        table([
          { label: 'Reason', value: (e) => fmt.label(e.reason) },
          { label: 'Calls', num: true, value: (e) => fmt.int(e.count) },
          { label: 'Share', num: true, value: (e) => fmt.pct(e.percentOfTotal) },
          { label: 'Escalated after', num: true, value: (e) => fmt.secs(e.avgTimeBeforeEscalation) },
        ], m.escalationReasons, { test: 'escalations' })),
    ),
  );
}
