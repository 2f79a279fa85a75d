// The topics page: the live topic tree (tree.js), the subscribe panel (subscribe.js),
// retained messages matching a filter, each with a delete button (/api/v1/retained), and
// a form that publishes as the broker (/api/v1/publish) with MQTT 5.0 user properties;
// the API's refusal is shown next to the field it names.

import * as api from './api.js';
import {el, field, fieldError, confirmButton, num} from './dom.js';
import {treePanel} from './tree.js';
import {subscribePanel} from './subscribe.js';

const PAGE = 50;

function payloadText(m) {
  if (m.payload === null || m.payload === undefined) return `(${num(m.payload_bytes)} bytes, not UTF-8)`;
  return m.payload.length > 200 ? m.payload.slice(0, 200) + '…' : m.payload;
}

/** Renders the page; returns what stops it. */
export function render(main) {
  const tree = treePanel();
  const subscribe = subscribePanel();
  main.replaceChildren(el('h1', {}, 'Topics'),
    el('div', {class: 'columns'}, tree.node, subscribe.node),
    el('div', {class: 'columns'}, publishForm(), retainedList()));
  return () => { tree.stop(); subscribe.stop(); };
}

function retainedList() {
  const filter = el('input', {type: 'text', value: '#', autocomplete: 'off'});
  const body = el('tbody', {id: 'retained-body'});
  const more = el('button', {type: 'button', id: 'retained-more', hidden: true}, 'More');
  let cursor = null;

  async function load(append) {
    fieldError('retained-filter', '');
    try {
      const answer = await api.get('/api/v1/retained' + api.query({filter: filter.value || '#', limit: PAGE, cursor: append ? cursor : null}));
      const rows = answer.items.map((m, i) => el('tr', {},
        el('td', {class: 'wrap'}, m.topic),
        el('td', {class: 'wrap'}, payloadText(m)),
        el('td', {}, m.qos),
        el('td', {class: 'hide-narrow'}, m.expires_in_s === null ? '' : m.expires_in_s + ' s'),
        el('td', {}, confirmButton(`retained-delete-${append ? 'm' : ''}${i}`, 'Delete', 'Delete it?', async () => {
          await api.call('DELETE', '/api/v1/retained/' + encodeURIComponent(m.topic));
          await load(false);
        }))));
      if (append) body.append(...rows); else body.replaceChildren(...rows);
      if (!append && !rows.length) body.replaceChildren(el('tr', {}, el('td', {colspan: 5, class: 'muted'}, 'No retained messages match.')));
      cursor = answer.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      if (e.status !== 401) fieldError('retained-filter', e.message);
    }
  }
  const form = el('form', {class: 'row', role: 'search'},
    field('retained-filter', 'Topic filter', filter),
    el('button', {type: 'submit'}, 'Show'));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(false); });
  more.addEventListener('click', () => load(true));
  load(false);
  return el('section', {'aria-labelledby': 'h-retained'},
    el('h2', {id: 'h-retained'}, 'Retained messages'),
    form,
    el('div', {class: 'table-wrap'}, el('table', {id: 'retained'},
      el('thead', {}, el('tr', {},
        el('th', {scope: 'col'}, 'Topic'), el('th', {scope: 'col'}, 'Payload'),
        el('th', {scope: 'col'}, 'QoS'), el('th', {scope: 'col', class: 'hide-narrow'}, 'Expires in'),
        el('th', {scope: 'col'}, ''))),
      body)),
    more);
}

/** Which of the form's fields an API error's `field` belongs to. */
function fieldFor(name) {
  if (name === 'topic') return 'pub-topic';
  if (name === 'payload' || name === 'payload_base64') return 'pub-payload';
  if (name === 'qos') return 'pub-qos';
  if (name === 'retain') return 'pub-retain';
  if (name && name.startsWith('properties')) return 'pub-props';
  return 'pub-form';
}

/** `name=value` lines as pairs; a line without `=` is refused, naming it. */
function userProperties(text) {
  const pairs = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`line ${i + 1}: expected name=value`);
    pairs.push([line.slice(0, at).trim(), line.slice(at + 1)]);
  });
  return pairs;
}

function publishForm() {
  const topic = el('input', {type: 'text', autocomplete: 'off', required: true, placeholder: 'devices/7/cmd'});
  const payload = el('textarea', {rows: 3});
  const qos = el('select', {}, el('option', {value: '0'}, '0'), el('option', {value: '1'}, '1'), el('option', {value: '2'}, '2'));
  const retain = el('input', {type: 'checkbox', id: 'pub-retain'});
  const props = el('textarea', {rows: 2, spellcheck: 'false', placeholder: 'unit=celsius'});
  const result = el('p', {id: 'pub-result', class: 'ok', 'aria-live': 'polite'});
  const form = el('form', {id: 'publish', novalidate: true},
    field('pub-topic', 'Topic', topic),
    field('pub-payload', 'Payload (UTF-8 text)', payload),
    field('pub-qos', 'QoS', qos),
    field('pub-props', 'User properties (MQTT 5.0; one name=value a line)', props),
    el('div', {class: 'field'}, el('label', {class: 'check', for: 'pub-retain'}, retain, 'Retain')),
    el('div', {class: 'error', id: 'pub-form-error', 'aria-live': 'polite'}),
    el('button', {type: 'submit', class: 'primary', id: 'pub-send'}, 'Publish'),
    result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const id of ['pub-topic', 'pub-payload', 'pub-qos', 'pub-props', 'pub-form']) fieldError(id, '');
    result.textContent = '';
    const body = {topic: topic.value, payload: payload.value, qos: Number(qos.value), retain: retain.checked};
    try {
      const pairs = userProperties(props.value);
      if (pairs.length) body.properties = {user_properties: pairs};
    } catch (err) {
      fieldError('pub-props', err.message);
      props.focus();
      return;
    }
    try {
      const answer = await api.call('POST', '/api/v1/publish', body);
      result.textContent = `Published: queued for ${num(answer.delivered)} session${answer.delivered === 1 ? '' : 's'}.`;
    } catch (err) {
      if (err.status === 401) return;
      const id = fieldFor(err.field);
      fieldError(id, err.message);
      const input = document.getElementById(id);
      if (input) input.focus();
    }
  });
  return el('section', {'aria-labelledby': 'h-publish'}, el('h2', {id: 'h-publish'}, 'Publish'), form);
}
