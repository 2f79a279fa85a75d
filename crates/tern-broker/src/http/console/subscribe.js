// The subscribe panel: the messages published on topics matching a filter, live, from
// /api/v1/stream/messages (at most 20 messages and 64 KiB a second reach the page; the
// rest are counted). The newest come first; the last 100 are kept.

import * as api from './api.js';
import {el, field, fieldError, num} from './dom.js';

const KEEP = 100;

function item(m) {
  const time = new Date(m.time_ms).toLocaleTimeString();
  const payload = m.payload === null ? `(${num(m.payload_bytes)} bytes, not UTF-8)` : m.payload;
  return el('li', {},
    el('div', {class: 'meta'}, el('code', {class: 'wrap'}, m.topic), ' ',
      el('span', {class: 'muted'}, `${time} · QoS ${m.qos} · ${num(m.payload_bytes)} bytes${m.retain ? ' · retained' : ''}`)),
    el('pre', {class: 'payload'}, payload));
}

/** The panel: `{node, stop}`. */
export function subscribePanel() {
  const filter = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'sensors/#'});
  const stopButton = el('button', {type: 'button', id: 'sub-stop', disabled: true}, 'Stop');
  const list = el('ol', {id: 'sub-messages', class: 'messages', tabindex: 0, 'aria-label': 'Messages received, newest first'});
  const note = el('p', {class: 'muted', id: 'sub-note', 'aria-live': 'polite'});
  let controller = null;

  function stop() {
    if (controller) controller.abort();
    controller = null;
    stopButton.disabled = true;
  }

  async function start() {
    stop();
    fieldError('sub-filter', '');
    list.replaceChildren();
    const wanted = filter.value.trim();
    if (!wanted) { fieldError('sub-filter', 'a topic filter is needed (# for every topic)'); filter.focus(); return; }
    controller = new AbortController();
    const signal = controller.signal;
    stopButton.disabled = false;
    let received = 0, skipped = 0;
    note.textContent = `Subscribed to ${wanted}; waiting for messages…`;
    while (!signal.aborted) {
      try {
        await api.events('/api/v1/stream/messages' + api.query({filter: wanted}), signal, (event, data) => {
          if (event !== 'messages') return;
          skipped += data.messages_skipped;
          for (const m of data.messages) { received += 1; list.prepend(item(m)); }
          while (list.children.length > KEEP) list.lastChild.remove();
          note.textContent = `Subscribed to ${wanted}: ${num(received)} messages shown` +
            (skipped ? `, ${num(skipped)} not shown (over 20 a second)` : '') + '.';
        });
      } catch (e) {
        if (signal.aborted || e.status === 401) return;
        if (e.status === 400) { stop(); note.textContent = ''; fieldError('sub-filter', e.message); filter.focus(); return; }
        note.textContent = 'Interrupted (' + e.message + '); retrying.';
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  const form = el('form', {id: 'subscribe', class: 'row', novalidate: true},
    field('sub-filter', 'Topic filter', filter),
    el('button', {type: 'submit', class: 'primary', id: 'sub-start'}, 'Subscribe'),
    stopButton);
  form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  stopButton.addEventListener('click', () => { stop(); note.textContent = 'Stopped.'; });
  const node = el('section', {'aria-labelledby': 'h-subscribe'},
    el('h2', {id: 'h-subscribe'}, 'Subscribe'), form, note, list);
  return {node, stop};
}
