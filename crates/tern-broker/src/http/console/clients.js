// The clients pages: a searchable, paged list (/api/v1/clients), and one client's
// details, subscriptions and queue (refreshed every 5 s) with a kick button.

import * as api from './api.js';
import {el, confirmButton, num} from './dom.js';

const PAGE = 20;
const REFRESH_MS = 5000;

function badge(connected) {
  return el('span', {class: 'badge ' + (connected ? 'on' : 'off')}, connected ? 'connected' : 'offline');
}

const clientLink = (id) => '#/clients/' + encodeURIComponent(id);

/** The list; returns what stops its refreshing. */
export function renderList(main) {
  const search = el('input', {type: 'search', id: 'client-search', autocomplete: 'off', placeholder: 'e.g. sensor-'});
  const state = el('select', {id: 'client-state'},
    el('option', {value: ''}, 'all'),
    el('option', {value: 'true'}, 'connected'),
    el('option', {value: 'false'}, 'offline'));
  const body = el('tbody', {id: 'clients-body'});
  const error = el('p', {class: 'error', id: 'clients-error', 'aria-live': 'polite'});
  const prev = el('button', {type: 'button', id: 'clients-prev'}, 'Previous');
  const next = el('button', {type: 'button', id: 'clients-next'}, 'Next');
  const where = el('span', {class: 'muted'});
  // cursors[i] is the cursor of page i (null for the first).
  let cursors = [null];
  let shown = '';
  let nextCursor = null;

  async function load() {
    const page = cursors.length - 1;
    const path = '/api/v1/clients' + api.query({
      limit: PAGE,
      client_id_prefix: search.value,
      connected: state.value,
      cursor: cursors[page],
    });
    try {
      const answer = await api.get(path);
      error.textContent = '';
      nextCursor = answer.next_cursor;
      const text = JSON.stringify(answer.items);
      if (text !== shown) {
        shown = text;
        body.replaceChildren(...answer.items.map((c) => el('tr', {},
          el('td', {class: 'wrap'}, el('a', {href: clientLink(c.client_id)}, c.client_id)),
          el('td', {}, badge(c.connected)),
          el('td', {}, c.protocol_version || ''),
          el('td', {class: 'hide-narrow'}, c.user || ''),
          el('td', {class: 'hide-narrow'}, c.address || ''),
          el('td', {}, num(c.subscriptions)),
          el('td', {class: 'hide-narrow'}, num(c.queued)))));
        if (!answer.items.length) {
          body.replaceChildren(el('tr', {}, el('td', {colspan: 7, class: 'muted'}, 'No clients match.')));
        }
      }
      prev.disabled = page === 0;
      next.disabled = !nextCursor;
      where.textContent = `Page ${page + 1}`;
    } catch (e) {
      if (e.status !== 401) error.textContent = e.message;
    }
  }
  function restart() { cursors = [null]; load(); }
  let typing = null;
  search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(restart, 300); });
  state.addEventListener('change', restart);
  prev.addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  next.addEventListener('click', () => { if (nextCursor) { cursors.push(nextCursor); load(); } });
  const form = el('form', {class: 'row', role: 'search'},
    el('div', {class: 'field'}, el('label', {for: 'client-search'}, 'Client id starts with'), search),
    el('div', {class: 'field'}, el('label', {for: 'client-state'}, 'State'), state),
    el('button', {type: 'submit'}, 'Search'));
  form.addEventListener('submit', (e) => { e.preventDefault(); restart(); });
  main.replaceChildren(
    el('h1', {}, 'Clients'),
    form,
    error,
    el('div', {class: 'table-wrap'}, el('table', {id: 'clients'},
      el('thead', {}, el('tr', {},
        el('th', {scope: 'col'}, 'Client id'), el('th', {scope: 'col'}, 'State'),
        el('th', {scope: 'col'}, 'MQTT'), el('th', {scope: 'col', class: 'hide-narrow'}, 'User'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Address'), el('th', {scope: 'col'}, 'Subs'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Queued'))),
      body)),
    el('div', {class: 'pager'}, prev, where, next));
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => { clearInterval(timer); clearTimeout(typing); };
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

/** One client's page; returns what stops it. */
export function renderClient(main, id) {
  const details = el('dl', {class: 'details', id: 'client-details'});
  const subs = el('tbody', {id: 'subs-body'});
  const more = el('button', {type: 'button', id: 'subs-more', hidden: true}, 'More');
  const error = el('p', {class: 'error', id: 'client-error', 'aria-live': 'polite'});
  const actions = el('p', {id: 'client-actions'});
  const note = el('p', {id: 'client-note', class: 'ok', 'aria-live': 'polite'});
  let subsCursor = null;
  const path = '/api/v1/clients/' + encodeURIComponent(id);

  async function loadDetails() {
    try {
      const c = await api.get(path);
      error.textContent = '';
      const rows = [
        ['State', badge(c.connected)],
        ['Address', c.address || ''],
        ['MQTT version', c.protocol_version || ''],
        ['Transport', c.transport || ''],
        ['User', c.user || ''],
        ['Keep alive', c.keepalive === null ? '' : c.keepalive + ' s'],
        ['Connected since', when(c.connected_since_ms)],
        ['Clean session', c.clean_session ? 'yes' : 'no'],
        ['In flight', num(c.inflight)],
        ['Queued', num(c.queued)],
        ['Subscriptions', num(c.subscriptions)],
        ['Messages in / out', c.messages_in === null ? '' : `${num(c.messages_in)} / ${num(c.messages_out)}`],
        ['Bytes in / out', c.bytes_in === null ? '' : `${num(c.bytes_in)} / ${num(c.bytes_out)}`],
      ];
      details.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
      // The actions are rebuilt only when the state changes (a refresh must not undo
      // a Kick half asked).
      const changed = details.dataset.connected !== String(c.connected);
      details.dataset.connected = String(c.connected);
      if (changed) actions.replaceChildren(c.connected
        ? confirmButton('kick', 'Kick', 'Close this client\'s connection?', async () => {
          await api.call('POST', path + '/kick');
          note.textContent = 'Kicked: its connection was closed.';
          await loadDetails();
        })
        : el('span', {class: 'muted'}, 'Not connected.'));
    } catch (e) {
      if (e.status === 404) {
        // A clean session ends with its connection: after a kick, say.
        details.replaceChildren();
        details.dataset.connected = 'false';
        actions.replaceChildren(el('span', {class: 'muted'}, 'This client has no session (any more).'));
      } else if (e.status !== 401) {
        error.textContent = e.message;
      }
    }
  }
  async function loadSubs(append) {
    try {
      const answer = await api.get(path + '/subscriptions' + api.query({limit: 100, cursor: append ? subsCursor : null}));
      const rows = answer.items.map((s) => el('tr', {},
        el('td', {class: 'wrap'}, s.filter), el('td', {}, s.qos),
        el('td', {class: 'hide-narrow'}, s.no_local ? 'yes' : 'no'),
        el('td', {class: 'hide-narrow'}, s.retain_as_published ? 'yes' : 'no'),
        el('td', {class: 'hide-narrow'}, s.retain_handling),
        el('td', {class: 'hide-narrow'}, s.subscription_identifier ?? '')));
      if (append) subs.append(...rows); else subs.replaceChildren(...rows);
      if (!append && !rows.length) subs.replaceChildren(el('tr', {}, el('td', {colspan: 6, class: 'muted'}, 'No subscriptions.')));
      subsCursor = answer.next_cursor;
      more.hidden = !subsCursor;
    } catch (e) {
      if (e.status !== 401) error.textContent = e.message;
    }
  }
  const queue = el('tbody', {id: 'queue-body'});
  const queueNote = el('p', {class: 'muted', id: 'queue-note'});
  async function loadQueue() {
    try {
      const q = await api.get(path + '/queue' + api.query({limit: 50}));
      const row = (m, state) => el('tr', {},
        el('td', {}, state), el('td', {class: 'wrap'}, m.topic), el('td', {}, m.qos),
        el('td', {class: 'wrap hide-narrow'}, m.payload_preview ?? '(not UTF-8)'),
        el('td', {}, num(m.payload_bytes)));
      const rows = [
        ...q.inflight.map((m) => row(m, `in flight (#${m.packet_id}, awaiting ${m.waiting_for})`)),
        ...q.queued.map((m) => row(m, 'queued'))];
      queue.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', {colspan: 5, class: 'muted'}, 'Nothing queued or in flight.'))]));
      queueNote.textContent = `${num(q.inflight_total)} in flight, ${num(q.queued_total)} queued` +
        (q.inflight_total + q.queued_total > rows.length ? ` (the first ${rows.length} shown)` : '');
    } catch (e) {
      if (e.status !== 401 && e.status !== 404) error.textContent = e.message;
    }
  }
  more.addEventListener('click', () => loadSubs(true));
  main.replaceChildren(
    el('p', {}, el('a', {href: '#/clients'}, '← All clients')),
    el('h1', {class: 'wrap'}, 'Client ', el('code', {}, id)),
    error,
    details,
    actions,
    note,
    el('h2', {}, 'Subscriptions'),
    el('div', {class: 'table-wrap'}, el('table', {id: 'subs'},
      el('thead', {}, el('tr', {},
        el('th', {scope: 'col'}, 'Filter'), el('th', {scope: 'col'}, 'QoS'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'No local'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Retain as published'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Retain handling'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Id'))),
      subs)),
    more,
    el('h2', {}, 'Queue'),
    queueNote,
    el('div', {class: 'table-wrap'}, el('table', {id: 'queue'},
      el('thead', {}, el('tr', {},
        el('th', {scope: 'col'}, 'State'), el('th', {scope: 'col'}, 'Topic'), el('th', {scope: 'col'}, 'QoS'),
        el('th', {scope: 'col', class: 'hide-narrow'}, 'Payload'), el('th', {scope: 'col'}, 'Bytes'))),
      queue)));
  loadDetails();
  loadSubs(false);
  loadQueue();
  const timer = setInterval(() => { loadDetails(); loadQueue(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
