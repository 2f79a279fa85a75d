// One device of an organization: its registration (edit), connection status, last event
// cache, a chart of a numeric field from the historian, and its management state with
// reboot, factory reset and firmware update buttons that follow the request to its end.
// Everything but the registration read goes to /api/v0002 with the organization's key.

import * as api from './api.js';
import * as plot from './plot.js';
import {el, field, fieldError, confirmButton} from './dom.js';
import {form, orgLink} from './platform.js';
import {keyPanel} from './orgkey.js';

const seg = encodeURIComponent;
// How far back a chart looks for each interval.
const SPANS = {'1m': 3600e3, '5m': 6 * 3600e3, '1h': 2 * 86400e3, '1d': 30 * 86400e3};

/** Top-level fields of `object` as a definition list (objects as JSON). */
function details(id, object) {
  const rows = Object.entries(object || {}).flatMap(([k, v]) =>
    [el('dt', {}, k), el('dd', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))]);
  return el('dl', {class: 'details', id}, rows);
}

function decode(payload) {
  try { return new TextDecoder('utf-8', {fatal: true}).decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))); } catch { return payload; }
}

export function renderDevice(main, org, type, id) {
  const dev = `/device/types/${seg(type)}/devices/${seg(id)}`;
  const sections = el('div', {id: 'device-sections'});
  const timers = [];
  main.replaceChildren(
    el('p', {}, el('a', {href: orgLink(org)}, '← Organization ' + org)),
    el('h1', {class: 'wrap'}, 'Device ', el('code', {}, `${type}/${id}`)),
    sections);
  if (!api.orgKey(org)) {
    let leave = () => {};
    sections.replaceChildren(keyPanel(org, () => { leave = renderDevice(main, org, type, id); }));
    return () => leave();
  }
  const status = el('div', {id: 'device-status'}, 'Loading…');
  const cache = el('div', {id: 'device-lec'});
  sections.replaceChildren(
    el('h2', {}, 'Status'), status, editForm(org, dev),
    el('h2', {}, 'Last events'), cache,
    el('h2', {}, 'History'), chart(org, type, id),
    el('h2', {}, 'Management'), management(org, dev, type, id, timers));
  async function refresh() {
    try {
      status.replaceChildren(details('device-connection', await api.orgCall(org, 'GET', dev + '/connection')));
    } catch (e) { status.textContent = e.message; }
    try {
      const events = await api.orgCall(org, 'GET', dev + '/events');
      cache.replaceChildren(el('div', {class: 'table-wrap'}, el('table', {id: 'lec'},
        el('thead', {}, el('tr', {}, el('th', {scope: 'col'}, 'Event'), el('th', {scope: 'col'}, 'When'), el('th', {scope: 'col'}, 'Payload'))),
        el('tbody', {}, (events || []).map((e) => el('tr', {}, el('td', {}, e.eventId), el('td', {}, e.timestamp || ''),
          el('td', {class: 'wrap'}, el('code', {}, decode(e.payload)))))))));
      if (!events || !events.length) cache.textContent = 'No events cached (is the last event cache on for this organization?).';
    } catch (e) { cache.textContent = e.message; }
  }
  refresh();
  timers.push(setInterval(refresh, 5000));
  return () => timers.forEach((t) => clearInterval(t));
}

/** Edits the registration's description and metadata (PUT on /api/v0002). */
function editForm(org, dev) {
  const description = el('input', {type: 'text', autocomplete: 'off'});
  const metadata = el('textarea', {rows: 2, spellcheck: 'false', placeholder: '{"room": "kitchen"}'});
  const done = el('p', {class: 'ok', id: 'device-edit-result', 'aria-live': 'polite'});
  api.orgCall(org, 'GET', dev).then((d) => {
    description.value = (d.deviceInfo && d.deviceInfo.description) || '';
    metadata.value = JSON.stringify(d.metadata || {});
  }).catch(() => {});
  const node = form('device-edit', [field('edit-description', 'Description', description), field('edit-metadata', 'Metadata (JSON)', metadata),
    el('button', {type: 'submit'}, 'Save')], ['edit-description', 'edit-metadata'], async () => {
    done.textContent = '';
    let meta;
    try { meta = JSON.parse(metadata.value || '{}'); } catch (e) { throw Object.assign(new Error('not JSON: ' + e.message), {metadata: true}); }
    await api.orgCall(org, 'PUT', dev, {deviceInfo: {description: description.value}, metadata: meta});
    done.textContent = 'Saved.';
  }, (err) => (err.metadata || /metadata/i.test(err.message) ? 'edit-metadata' : 'edit-description'));
  return el('div', {}, node, done);
}

/** A chart of one numeric field of one event, averaged per interval, from the historian. */
function chart(org, type, id) {
  const event = el('input', {type: 'text', autocomplete: 'off', value: 'status'});
  const path = el('input', {type: 'text', autocomplete: 'off', value: 'd.temp'});
  const interval = el('select', {}, ...Object.keys(SPANS).map((i) => el('option', {value: i}, i)));
  const svg = plot.create('plot-history', 'History');
  const note = el('p', {class: 'muted', id: 'history-note'});
  const node = form('history', [field('history-event', 'Event id', event), field('history-field', 'Field', path),
    field('history-interval', 'Interval', interval), el('button', {type: 'submit'}, 'Show')],
  ['history-event', 'history-field', 'history-interval'], async () => {
    const now = Date.now(), span = SPANS[interval.value];
    const q = api.query({agg: 'avg', interval: interval.value, field: path.value, start: now - span, end: now});
    const answer = await api.orgCall(org, 'GET', `/historian/types/${seg(type)}/devices/${seg(id)}/events/${seg(event.value)}${q}`);
    const points = (answer.points || []).map((p) => [Date.parse(p.timestamp), p.value]).filter(([t, v]) => !Number.isNaN(t) && typeof v === 'number');
    plot.draw(svg, [{name: path.value, points}], now, span, `Average of ${path.value} per ${interval.value}`);
    note.textContent = `${points.length} interval${points.length === 1 ? '' : 's'} with values.`;
  }, (err) => (/field/i.test(err.message) ? 'history-field' : /interval/i.test(err.message) ? 'history-interval' : 'history-event'));
  return el('div', {}, node, el('div', {class: 'plot'}, svg), note);
}

/** The management state and the actions, each followed until it completes. */
function management(org, dev, type, id, timers) {
  const state = el('div', {id: 'mgmt-state'});
  const progress = el('p', {id: 'mgmt-progress', 'aria-live': 'polite'});
  const uri = el('input', {type: 'url', autocomplete: 'off', placeholder: 'http://fw.example.com/t1-1.1.bin'});
  async function load() {
    try { state.replaceChildren(details('mgmt-details', await api.orgCall(org, 'GET', dev + '/mgmt'))); } catch (e) {
      state.textContent = e.status === 404 ? 'Not managed: the device has not sent a manage request.' : e.message;
    }
  }
  async function start(action, parameters) {
    progress.className = '';
    progress.textContent = `${action}: sending…`;
    const body = {action, devices: [{typeId: type, deviceId: id}]};
    if (parameters) body.parameters = parameters;
    const {reqId} = await api.orgCall(org, 'POST', '/mgmt/requests', body);
    const follow = async () => {
      const s = await api.orgCall(org, 'GET', `/mgmt/requests/${seg(reqId)}/deviceStatus/${seg(type)}/${seg(id)}`);
      if (s.complete && s.status === 0) { progress.textContent = `${action}: complete.`; progress.className = 'ok'; load(); return true; }
      if (s.status !== 1) { progress.textContent = `${action}: failed (${s.status}${s.message ? ', ' + s.message : ''}).`; progress.className = 'error'; return true; }
      progress.textContent = `${action}: in progress (request ${reqId}).`;
      return false;
    };
    const timer = setInterval(() => follow().then((end) => end && clearInterval(timer)).catch((e) => { clearInterval(timer); progress.textContent = e.message; }), 1000);
    timers.push(timer);
  }
  const act = (name, label, action, parameters) => confirmButton('mgmt-' + name, label, label + ' this device?', async () => {
    fieldError('mgmt-uri', '');
    await start(action, parameters && parameters());
  });
  load();
  timers.push(setInterval(load, 5000));
  return el('div', {}, state,
    el('p', {class: 'row'}, act('reboot', 'Reboot', 'device/reboot'), act('reset', 'Factory reset', 'device/factoryReset')),
    el('div', {class: 'row'}, field('mgmt-uri', 'Firmware URI', uri),
      act('download', 'Download firmware', 'firmware/download', () => [{name: 'uri', value: uri.value}]),
      act('update', 'Update firmware', 'firmware/update')),
    progress);
}
