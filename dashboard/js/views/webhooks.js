// Webhooks: the subscriptions (GET /v1/webhooks) and one subscription's deliveries
// (GET /v1/webhooks/{id}/deliveries, cursor pages). A server without the endpoints (404 from
// its fallback) gets a sentence, not a broken page.
import { api, ApiError } from '../api.js';
import { h, fill, fmt, table, panel, notice } from '../ui.js';

/** The array in a list answer, whatever its key. */
function items(d, key) {
  if (Array.isArray(d)) return d;
  return d?.[key] ?? d?.items ?? d?.data ?? [];
}

export async function render(root, ctx, [id]) {
  let hooks;
  try {
    ({ data: hooks } = await api('/v1/webhooks', { params: ctx.state.me.kind === 'reseller' ? { organization_id: ctx.state.org } : {} }));
  } catch (e) {
    if (e instanceof ApiError && e.noSuchEndpoint) {
      fill(root, h('h1', null, 'Webhooks'),
        h('div', { class: 'notice', role: 'status', dataset: { missing: 'webhooks' } },
          'This server has no webhooks endpoint yet (GET /v1/webhooks answered 404). ',
          'Upgrade Baton to send handoff events to your own systems and follow their deliveries here.'));
      return;
    }
    throw e;
  }
  const list = items(hooks, 'webhooks');
  const tz = ctx.state.tz;
  const selected = id ?? list[0]?.id;
  fill(root, 
    h('h1', null, 'Webhooks'),
    h('p', { class: 'lede' }, 'Endpoints of yours that Baton calls on handoff, session and call events (Standard Webhooks signatures), and how each delivery went.'),
    panel('Subscriptions', list.length
      ? table([
        { label: 'Endpoint', value: (w) => h('a', { href: `#/webhooks/${encodeURIComponent(w.id)}`, 'aria-current': w.id === selected ? 'true' : null }, w.url) },
        { label: 'Events', value: (w) => (w.event_types || []).join(', ') },
        { label: 'Enabled', value: (w) => h('span', { class: `pill ${w.enabled ? 'completed' : 'failed'}` }, w.enabled ? 'enabled' : 'disabled') },
        { label: 'Description', value: (w) => w.description ?? '' },
        { label: 'Created', value: (w) => fmt.when(w.created_at, tz) },
      ], list, { test: 'webhooks' })
      : h('p', { class: 'muted' }, 'No subscription yet. Create one with POST /v1/webhooks.')),
    selected ? await deliveries(ctx, selected, tz) : null,
  );
}

async function deliveries(ctx, id, tz) {
  const { data } = await api(`/v1/webhooks/${encodeURIComponent(id)}/deliveries`);
  const rows = items(data, 'deliveries');
  return h('section', { class: 'panel', 'aria-label': 'Deliveries', style: null },
    h('h2', null, 'Latest deliveries'),
    rows.length ? table([
      { label: 'Event', value: (d) => d.event_type ?? d.type ?? '–' },
      { label: 'Status', value: (d) => h('span', { class: `pill ${d.status === 'delivered' || d.status === 'succeeded' ? 'completed' : d.status === 'failed' ? 'failed' : 'open'}` }, d.status) },
      { label: 'Attempts', num: true, value: (d) => d.attempts ?? '–' },
      { label: 'Last response', num: true, value: (d) => d.last_response_code ?? d.response_code ?? '–' },
      { label: 'Created', value: (d) => fmt.when(d.created_at, tz) },
      { label: 'Next attempt', value: (d) => (d.next_attempt_at ? fmt.when(d.next_attempt_at, tz) : '–') },
    ], rows, { test: 'deliveries' }) : notice('No delivery yet.'),
    data?.next ? h('p', { class: 'muted' }, 'Older deliveries exist (the API pages them with next).') : null);
}
