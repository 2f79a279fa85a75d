// An organization's analytics rules with their counters, and its recent alerts, from
// /api/v0002/rules and /api/v0002/alerts (the organization's key), refreshed every 5 s.

import * as api from './api.js';
import {el, num} from './dom.js';
import {orgLink} from './platform.js';
import {keyPanel} from './orgkey.js';

export function renderRules(main, org) {
  const rules = el('div', {id: 'rules'});
  const alerts = el('div', {id: 'alerts'});
  main.replaceChildren(
    el('p', {}, el('a', {href: orgLink(org)}, '← Organization ' + org)),
    el('h1', {}, 'Rules of ', el('code', {}, org)));
  if (!api.orgKey(org)) {
    let leave = () => {};
    main.append(keyPanel(org, () => { leave = renderRules(main, org); }));
    return () => leave();
  }
  main.append(rules, el('h2', {}, 'Recent alerts'), alerts);
  async function load() {
    try {
      const list = (await api.orgCall(org, 'GET', '/rules')).results || [];
      // The counters come with each rule's own answer.
      const full = await Promise.all(list.slice(0, 50).map((r) => (r.counters ? r : api.orgCall(org, 'GET', '/rules/' + encodeURIComponent(r.id)))));
      rules.replaceChildren(el('div', {class: 'table-wrap'}, el('table', {id: 'rules-table'},
        el('thead', {}, el('tr', {}, ['Rule', 'Source', 'Condition', 'Matched', 'Fired', 'Failed'].map((h) => el('th', {scope: 'col'}, h)))),
        el('tbody', {}, full.length ? full.map((r) => el('tr', {},
          el('td', {class: 'wrap'}, r.name || r.id), el('td', {}, r.source ? `${r.source.typeId || '*'}/${r.source.eventId || '*'}` : ''),
          el('td', {class: 'wrap'}, el('code', {}, r.condition || '')),
          el('td', {}, num((r.counters || {}).matched)), el('td', {}, num((r.counters || {}).fired)), el('td', {}, num((r.counters || {}).failed))))
          : el('tr', {}, el('td', {colspan: 6, class: 'muted'}, 'No rules.'))))));
      const recent = ((await api.orgCall(org, 'GET', '/alerts')).results || []).slice(0, 50);
      alerts.replaceChildren(recent.length ? el('ol', {class: 'messages', id: 'alerts-list'}, recent.map((a) => el('li', {},
        el('div', {class: 'meta'}, el('strong', {}, a.severity || ''), ' ', el('span', {class: 'muted'}, `${a.timestamp || a.time || ''} · ${a.ruleId || ''} · ${a.typeId || ''}/${a.deviceId || ''}`)),
        el('div', {class: 'wrap'}, a.message || JSON.stringify(a))))) : el('p', {class: 'muted'}, 'No alerts.'));
    } catch (e) {
      rules.textContent = e.message;
    }
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
