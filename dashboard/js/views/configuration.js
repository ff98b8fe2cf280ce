// Configuration: Quickchat's handoff configuration document as a form. GET gives the document
// and its ETag; Save PUTs the whole document back with If-Match, so a write never overwrites
// another writer's: a 412 says so. A 400 lists each bad field by its JSON path in `details`,
// which is shown next to that field.
import { api, describe, ApiError } from '../api.js';
import { h, fill, notice } from '../ui.js';

const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const MESSAGES = [
  ['question_message', 'Question', 'Asks the visitor whether they want a person.'],
  ['confirmation_message', 'Confirmation', 'Shown once the visitor accepts.'],
  ['confirmation_outside_working_hours_message', 'Confirmation outside working hours', 'Shown when nobody is at work.'],
];
const SWITCHES = [
  ['is_active', 'Handoff to people is on'],
  ['ai_summary_active', 'Send an AI summary of the conversation to the operator'],
  ['working_hours_active', 'Only hand off during the working hours below'],
  ['send_email_notification', 'E-mail the addresses below on each handoff'],
];

export async function render(root, ctx, _rest, banner) {
  const { data: doc, etag } = await api('/v1/api/human_handoff/configuration', { params: { organization_id: ctx.state.org } });
  const why = ctx.readOnlyReason;
  const status = h('div', { id: 'config-status', 'aria-live': 'polite' }, banner || null);
  const s = doc.settings;

  const availability = listEditor({
    key: 'availability', items: doc.availability, addLabel: 'Add a time slot',
    blank: { day_span: 'monday-friday', start_time: '09:00', end_time: '17:00' },
    fields: [
      { name: 'day_span', label: 'Days', hint: 'a day or a range: monday-friday', list: 'days' },
      { name: 'start_time', label: 'From', type: 'time' },
      { name: 'end_time', label: 'To', type: 'time' },
    ],
  });
  const custom = listEditor({
    key: 'custom_guidelines', items: doc.custom_guidelines, addLabel: 'Add a guideline',
    blank: { name: '', description: '', is_active: true },
    fields: [
      { name: 'name', label: 'Name' },
      { name: 'description', label: 'When to hand off', type: 'textarea' },
      { name: 'is_active', label: 'Active', type: 'checkbox' },
    ],
  });
  const routing = listEditor({
    key: 'routing_profiles', items: doc.routing_profiles, addLabel: 'Add a routing profile',
    blank: { name: '', description: '', is_active: true, user_ids: [] },
    fields: [
      { name: 'name', label: 'Topic' },
      { name: 'description', label: 'When it matches', type: 'textarea' },
      { name: 'user_ids', label: 'Operator ids', type: 'ids', hint: 'numbers, comma-separated' },
      { name: 'is_active', label: 'Active', type: 'checkbox' },
    ],
  });

  const save = h('button', { type: 'submit', disabled: !!why, 'data-action': 'save' }, 'Save');
  const form = h('form', { class: 'config', novalidate: true, 'aria-describedby': 'config-status' },
    h('datalist', { id: 'days' }, [...DAYS, 'monday-friday', 'saturday-sunday', 'monday-sunday'].map((d) => h('option', { value: d }))),
    h('fieldset', { disabled: !!why, class: 'plain' },
      h('fieldset', null, h('legend', null, 'Settings'),
        SWITCHES.map(([name, label]) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', name, checked: s[name], dataset: { field: `settings.${name}` } }), label)),
        h('div', { class: 'fields-2' },
          field('settings.timezone', 'Time zone of the working hours', h('input', { name: 'timezone', value: s.timezone, list: 'zones', autocomplete: 'off' }), 'An IANA name, e.g. Europe/Berlin'),
          field('settings.keywords', 'Keywords that ask for a person', h('textarea', { name: 'keywords', rows: 3, value: s.keywords.join('\n') }), 'One per line'),
          MESSAGES.map(([name, label, hint]) => field(`settings.${name}`, label, h('textarea', { name, rows: 3, value: s[name] }), hint)),
          field('settings.emails', 'E-mail addresses to notify', h('textarea', { name: 'emails', rows: 3, value: s.emails.join('\n') }), 'One per line')),
        h('datalist', { id: 'zones' }, (Intl.supportedValuesOf?.('timeZone') || []).map((z) => h('option', { value: z })))),
      h('fieldset', null, h('legend', null, 'Working hours'), availability.el),
      h('fieldset', null, h('legend', null, 'Generic guidelines'),
        doc.generic_guidelines.map((g, i) => h('div', { class: 'row', dataset: { generic: g.name } },
          h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'is_active', checked: g.is_active, dataset: { field: `generic_guidelines[${i}].is_active` } }), g.name.replaceAll('_', ' ')),
          field(`generic_guidelines[${i}].description`, 'Description', h('textarea', { name: 'description', rows: 2, value: g.description }))))),
      h('fieldset', null, h('legend', null, 'Custom guidelines'), custom.el),
      h('fieldset', null, h('legend', null, 'Topic routing'), routing.el)),
    h('div', { class: 'actions' }, save,
      h('button', { type: 'button', class: 'secondary', onclick: () => ctx.rerender() }, 'Discard changes'),
      h('span', { class: 'muted mono', title: 'The version this form was loaded from (ETag)' }, etag || '')));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (why) return;
    clearErrors(form);
    const next = structuredClone(doc);
    for (const [name] of SWITCHES) next.settings[name] = form.querySelector(`[data-field="settings.${name}"]`).checked;
    const text = (name) => form.querySelector(`[data-field="settings.${name}"] [name="${name}"], [data-field="settings.${name}"][name="${name}"]`).value;
    next.settings.timezone = text('timezone').trim();
    next.settings.keywords = lines(text('keywords'));
    next.settings.emails = lines(text('emails'));
    for (const [name] of MESSAGES) next.settings[name] = text(name);
    next.availability = availability.collect();
    next.custom_guidelines = custom.collect();
    next.routing_profiles = routing.collect();
    next.generic_guidelines = doc.generic_guidelines.map((g, i) => ({
      ...g,
      is_active: form.querySelector(`[data-field="generic_guidelines[${i}].is_active"]`).checked,
      description: form.querySelector(`[data-field="generic_guidelines[${i}].description"] textarea`).value,
    }));
    save.disabled = true;
    save.textContent = 'Saving…';
    try {
      await api('/v1/api/human_handoff/configuration', { method: 'PUT', body: next, headers: { 'If-Match': etag } });
      await render(root, ctx, _rest, h('div', { class: 'ok', role: 'status', dataset: { result: 'saved' } }, 'Saved. The configuration below is the one now in force.'));
    } catch (err) {
      save.disabled = false;
      save.textContent = 'Save';
      if (err instanceof ApiError && err.status === 412) {
        fill(status, h('div', { class: 'error', role: 'alert', dataset: { result: 'conflict' } },
          h('strong', null, 'Not saved: someone else changed this configuration after you opened it. '),
          'Nothing was overwritten. Reload to see their version, then make your change again. ',
          h('button', { type: 'button', class: 'secondary', onclick: () => ctx.rerender() }, 'Reload')));
        status.querySelector('button').focus();
      } else if (err instanceof ApiError && err.status === 400 && err.body?.details?.length) {
        showErrors(form, status, err.body.details);
      } else {
        fill(status, h('div', { class: 'error', role: 'alert', dataset: { result: 'error' } }, describe(err)));
      }
    }
  });

  fill(root, 
    h('h1', null, 'Handoff configuration'),
    h('p', { class: 'lede' }, 'When the AI hands a conversation to a person, and to whom. Saved as one document (Quickchat\'s format); a save replaces it whole.'),
    why ? h('div', { class: 'notice', role: 'status', dataset: { readonly: 'true' } }, `Editing is off: ${why}`) : null,
    status,
    form);
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

function field(path, label, input, hint) {
  return h('label', { class: 'field', dataset: { field: path } }, h('span', null, label), input, hint ? h('span', { class: 'hint' }, hint) : null);
}

/** Rows of objects edited in place, with add and remove; collect() reads them back. */
function listEditor({ key, items, fields, blank, addLabel }) {
  const el = h('div');
  let rows = structuredClone(items);
  const draw = () => {
    fill(el, 
      rows.length ? null : h('p', { class: 'muted' }, 'None.'),
      rows.map((item, i) => h('div', { class: 'row', dataset: { id: item.id ?? '', row: `${key}[${i}]` } },
        fields.map((f) => {
          const path = `${key}[${i}].${f.name}`;
          if (f.type === 'checkbox') {
            return h('label', { class: 'check', dataset: { field: path } }, h('input', { type: 'checkbox', name: f.name, checked: item[f.name] }), f.label);
          }
          const value = f.type === 'ids' ? (item[f.name] || []).join(', ') : item[f.name] ?? '';
          const input = f.type === 'textarea'
            ? h('textarea', { name: f.name, rows: 2, value })
            : h('input', { name: f.name, type: f.type === 'time' ? 'time' : 'text', value, list: f.list });
          return field(path, f.label, input, f.hint);
        }),
        h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${key.replaceAll('_', ' ')} ${i + 1}`, onclick: () => { rows = collect(); rows.splice(i, 1); draw(); } }, 'Remove'))),
      h('button', { type: 'button', class: 'secondary', onclick: () => {
        rows = collect(); rows.push(structuredClone(blank)); draw();
        el.querySelector(`[data-row="${key}[${rows.length - 1}]"] input, [data-row="${key}[${rows.length - 1}]"] textarea`)?.focus();
      } }, addLabel));
  };
  const collect = () => [...el.querySelectorAll(':scope > .row')].map((row) => {
    const out = {};
    if (row.dataset.id) out.id = Number(row.dataset.id);
    for (const f of fields) {
      const input = row.querySelector(`[name="${f.name}"]`);
      if (f.type === 'checkbox') out[f.name] = input.checked;
      else if (f.type === 'ids') out[f.name] = input.value.split(/[\s,]+/).filter(Boolean).map((v) => (/^\d+$/.test(v) ? Number(v) : v));
      else out[f.name] = input.value;
    }
    return out;
  });
  draw();
  return { el, collect };
}

function clearErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) e.remove();
  for (const e of form.querySelectorAll('[aria-invalid]')) { e.removeAttribute('aria-invalid'); e.removeAttribute('aria-describedby'); }
}

/** Puts each problem next to its field (the nearest enclosing path that has one). */
function showErrors(form, status, details) {
  const unplaced = [];
  let first = null;
  details.forEach((d, n) => {
    let path = d.field;
    let target = null;
    while (path && !(target = form.querySelector(`[data-field="${CSS.escape(path)}"]`))) {
      path = path.replace(/(\[\d+\]|\.[^.[\]]+)$/, '');
      if (path === d.field) break;
    }
    if (!target) { unplaced.push(d); return; }
    const input = target.matches('input, textarea, select') ? target : target.querySelector('input, textarea, select');
    const id = `err-${n}`;
    const msg = h('p', { class: 'field-error', id, dataset: { errorFor: d.field } }, d.message);
    (target.matches('label') ? target : target.parentElement).append(msg);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', id);
      first ??= input;
    }
  });
  fill(status, h('div', { class: 'error', role: 'alert', dataset: { result: 'invalid' } },
    h('strong', null, `Not saved: ${details.length === 1 ? 'one field needs' : `${details.length} fields need`} fixing.`),
    unplaced.length ? h('ul', null, unplaced.map((d) => h('li', null, `${d.field}: ${d.message}`))) : ' The problems are shown next to the fields.'));
  first?.focus();
}
