// The platform's pages (when the broker runs the IoT platform): organizations, and one
// organization's device types, devices (create with the token shown once, delete, bulk
// add from CSV) and API keys, through /api/v1/platform (the broker admin key the console
// logged in with). What belongs to the organization itself (a device's status, events,
// history, management; rules) goes to /api/v0002 with one of the organization's own API
// keys, opened here (orgkey.js): the same rules as for any application.

import * as api from './api.js';
import {el, field, fieldError, confirmButton, num} from './dom.js';
import {keyPanel} from './orgkey.js';

const P = '/api/v1/platform/orgs';
const seg = encodeURIComponent;
export const orgLink = (org) => '#/platform/' + seg(org);
export const deviceLink = (org, t, d) => `#/platform/${seg(org)}/device/${seg(t)}/${seg(d)}`;

/** Whether this broker runs the platform (its admin routes answer). */
export async function enabled() {
  try { await api.get(P); return true; } catch { return false; }
}

/** A form whose submit runs `action`; an error goes next to the field `fieldOf(err)`. */
export function form(id, children, ids, action, fieldOf) {
  const node = el('form', {id, class: 'row', novalidate: true}, children,
    el('div', {class: 'error', id: id + '-form-error', 'aria-live': 'polite'}));
  node.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const f of [...ids, id + '-form']) fieldError(f, '');
    try {
      await action();
    } catch (err) {
      if (err.status === 401 && !err.field) return;
      const where = (fieldOf && fieldOf(err)) || id + '-form';
      fieldError(where, err.message);
      const input = document.getElementById(where);
      if (input && input.focus) input.focus();
    }
  });
  return node;
}

function table(id, heads, rows, empty) {
  const body = el('tbody', {id: id + '-body'}, rows.length ? rows : el('tr', {}, el('td', {colspan: heads.length, class: 'muted'}, empty)));
  return el('div', {class: 'table-wrap'}, el('table', {id},
    el('thead', {}, el('tr', {}, heads.map((h) => el('th', {scope: 'col'}, h)))), body));
}

/** The organizations. */
export function renderOrgs(main) {
  const list = el('div', {id: 'orgs'});
  const id = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'za6xa7'});
  const plain = el('input', {type: 'checkbox', id: 'org-plain'});
  const made = el('p', {id: 'org-made', class: 'ok', 'aria-live': 'polite'});
  async function load() {
    const orgs = await api.get(P);
    list.replaceChildren(table('orgs-table', ['Organization', 'Device types', 'Devices', 'API keys'],
      orgs.map((o) => el('tr', {}, el('td', {}, el('a', {href: orgLink(o.org)}, o.org)),
        el('td', {}, num(o.deviceTypes)), el('td', {}, num(o.devices)), el('td', {}, num(o.apiKeys)))),
      'No organizations yet.'));
  }
  const create = form('org-create', [
    field('org-id', 'New organization id', id),
    el('div', {class: 'field narrow'}, el('label', {class: 'check', for: 'org-plain'}, plain, 'Allow plain MQTT')),
    el('button', {type: 'submit', class: 'primary'}, 'Create')], ['org-id'], async () => {
    const answer = await api.call('POST', P, {org: id.value.trim(), allowPlain: plain.checked});
    // The organization comes with an admin key: this console uses it for the org's pages.
    api.setOrgKey(answer.org, answer.apiKey, answer.apiToken);
    made.replaceChildren('Created ', el('a', {href: orgLink(answer.org)}, answer.org),
      `, with the admin API key ${answer.apiKey} (its token is kept in this tab only).`);
    id.value = '';
    await load();
  }, () => 'org-id');
  main.replaceChildren(el('h1', {}, 'Platform'), el('h2', {}, 'Organizations'), list, create, made);
  load().catch((e) => { list.textContent = e.message; });
  return () => {};
}

/** One organization: its key for this console, device types, devices, API keys. */
export function renderOrg(main, org) {
  const o = P + '/' + seg(org);
  const types = el('div', {id: 'types'});
  const devices = el('div', {id: 'devices'});
  const keys = el('div', {id: 'keys'});
  const typeSelect = el('select', {});
  const reload = () => Promise.all([loadTypes(), loadDevices(), loadKeys()]).catch(() => {});

  async function loadTypes() {
    const list = await api.get(o + '/types');
    typeSelect.replaceChildren(...list.map((t) => el('option', {value: t.id}, t.id)));
    types.replaceChildren(table('types-table', ['Type', 'Class', 'Description', ''], list.map((t, i) => el('tr', {},
      el('td', {}, t.id), el('td', {}, t.classId), el('td', {class: 'wrap'}, t.description || ''),
      el('td', {}, confirmButton('type-delete-' + i, 'Delete', 'Delete this type?', async () => {
        await api.call('DELETE', `${o}/types/${seg(t.id)}`); await reload();
      })))), 'No device types yet.'));
  }
  async function loadDevices() {
    const list = await api.get(o + '/devices');
    devices.replaceChildren(table('devices-table', ['Type', 'Device', 'Registered', ''], list.map((d, i) => el('tr', {},
      el('td', {}, d.typeId), el('td', {class: 'wrap'}, el('a', {href: deviceLink(org, d.typeId, d.deviceId)}, d.deviceId)),
      el('td', {class: 'hide-narrow'}, d.registration ? d.registration.date : ''),
      el('td', {}, confirmButton('device-delete-' + i, 'Delete', 'Delete this device?', async () => {
        await api.call('DELETE', `${o}/devices/${seg(d.typeId)}/${seg(d.deviceId)}`); await reload();
      })))), 'No devices yet.'));
  }
  async function loadKeys() {
    const list = await api.get(o + '/keys');
    keys.replaceChildren(table('keys-table', ['API key', 'Role', 'Description', ''], list.map((k, i) => el('tr', {},
      el('td', {class: 'wrap'}, el('code', {}, k.apiKey)), el('td', {}, k.role), el('td', {class: 'wrap'}, k.description || ''),
      el('td', {}, confirmButton('key-revoke-' + i, 'Revoke', 'Revoke this key?', async () => {
        await api.call('DELETE', `${o}/keys/${seg(k.apiKey)}`);
        const mine = api.orgKey(org);
        if (mine && mine.key === k.apiKey) api.dropOrgKey(org);
        await reload();
      })))), 'No API keys.'));
  }

  const typeId = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false'});
  const gateway = el('input', {type: 'checkbox', id: 'type-gateway'});
  const typeForm = form('type-create', [field('type-id', 'New device type id', typeId),
    el('div', {class: 'field narrow'}, el('label', {class: 'check', for: 'type-gateway'}, gateway, 'Gateways')),
    el('button', {type: 'submit'}, 'Add type')], ['type-id'], async () => {
    await api.call('POST', o + '/types', {id: typeId.value.trim(), classId: gateway.checked ? 'Gateway' : 'Device'});
    typeId.value = '';
    await reload();
  }, () => 'type-id');

  const deviceId = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false'});
  const shown = el('div', {id: 'device-token', 'aria-live': 'polite'});
  const deviceForm = form('device-create', [field('device-type', 'Type', typeSelect), field('device-id', 'New device id', deviceId),
    el('button', {type: 'submit', class: 'primary'}, 'Add device')], ['device-type', 'device-id'], async () => {
    shown.replaceChildren();
    const d = await api.call('POST', o + '/devices', {typeId: typeSelect.value, deviceId: deviceId.value.trim()});
    shown.replaceChildren(el('div', {class: 'once'},
      el('p', {}, 'Device ', el('code', {}, d.clientId), ' added. Its token, shown this once:'),
      el('code', {id: 'device-token-value', class: 'secret'}, d.authToken),
      el('p', {class: 'muted'}, 'It connects with user name use-token-auth and this token as its password.')));
    deviceId.value = '';
    await reload();
  }, (err) => (/no (device )?type/i.test(err.message) ? 'device-type' : 'device-id'));

  const csv = el('textarea', {rows: 3, spellcheck: 'false', placeholder: 'typeId,deviceId[,authToken]'});
  const bulkResult = el('div', {id: 'bulk-result', 'aria-live': 'polite'});
  const bulkForm = form('bulk', [field('bulk-csv', 'Bulk add: CSV lines typeId,deviceId[,authToken]', csv),
    el('button', {type: 'submit'}, 'Add all')], ['bulk-csv'], async () => {
    const rows = parseCsv(csv.value);
    const results = await api.call('POST', o + '/bulk/devices/add', rows);
    bulkResult.replaceChildren(table('bulk-table', ['Device', 'Token (shown once) or error'], results.map((r) => el('tr', {},
      el('td', {}, `${r.typeId}/${r.deviceId}`),
      el('td', {class: 'wrap'}, r.authToken ? el('code', {class: 'secret'}, r.authToken) : el('span', {class: 'error'}, r.error || r.message || 'not added')))), ''));
    await reload();
  }, () => 'bulk-csv');

  main.replaceChildren(
    el('p', {}, el('a', {href: '#/platform'}, '← Organizations')),
    el('h1', {}, 'Organization ', el('code', {}, org)),
    keyPanel(org),
    el('p', {}, el('a', {href: orgLink(org) + '/rules'}, 'Rules and alerts →')),
    el('h2', {}, 'Device types'), types, typeForm,
    el('h2', {}, 'Devices'), devices, deviceForm, shown, bulkForm, bulkResult,
    el('h2', {}, 'API keys'), keys, keyCreate(org, o, reload));
  reload();
  return () => {};
}

/** The form that makes an API key (shown once), with a button to use it here. */
function keyCreate(org, o, reload) {
  const role = el('select', {}, ...['admin', 'device-operator', 'standard-app', 'read-only'].map((r) => el('option', {value: r}, r)));
  const description = el('input', {type: 'text', autocomplete: 'off'});
  const made = el('div', {id: 'key-made', 'aria-live': 'polite'});
  const node = form('key-create', [field('key-role', 'Role', role), field('key-description', 'Description', description),
    el('button', {type: 'submit'}, 'Create key')], ['key-role', 'key-description'], async () => {
    const k = await api.call('POST', o + '/keys', {role: role.value, description: description.value || null});
    const use = el('button', {type: 'button', id: 'key-use'}, 'Use it in this console');
    use.addEventListener('click', () => { api.setOrgKey(org, k.apiKey, k.apiToken); location.reload(); });
    made.replaceChildren(el('div', {class: 'once'}, el('p', {}, 'Key ', el('code', {}, k.apiKey), ', its token shown this once:'),
      el('code', {class: 'secret'}, k.apiToken), ' ', use));
    await reload();
  }, () => 'key-role');
  return el('div', {}, node, made);
}

/** CSV lines `typeId,deviceId[,authToken]` as the bulk add's objects. */
export function parseCsv(text) {
  const rows = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim() || /^\s*typeId\s*,/i.test(line)) return;
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length < 2 || cells.length > 3 || !cells[0] || !cells[1]) {
      throw new api.ApiError(400, {error: `line ${i + 1}: expected typeId,deviceId[,authToken]`});
    }
    const row = {typeId: cells[0], deviceId: cells[1]};
    if (cells[2]) row.authToken = cells[2];
    rows.push(row);
  });
  if (!rows.length) throw new api.ApiError(400, {error: 'no devices: one typeId,deviceId line each'});
  return rows;
}
