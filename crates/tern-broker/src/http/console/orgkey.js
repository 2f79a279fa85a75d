// Which of an organization's API keys this console uses for the organization's own API
// (/api/v0002): the one made with the organization, one pasted here (key and token), or
// one made here. The key stays in the tab (sessionStorage) until logout or a 401, and
// its role decides what the organization's pages may do, as for any application.

import * as api from './api.js';
import {el, field, fieldError} from './dom.js';

/** The panel for `org`; `onOpen` is called once a key is chosen. */
export function keyPanel(org, onOpen = () => {}) {
  const box = el('section', {id: 'org-key', class: 'panel', 'aria-labelledby': 'h-org-key'});
  const draw = () => {
    const current = api.orgKey(org);
    if (current) {
      const forget = el('button', {type: 'button', id: 'org-key-forget'}, 'Use another key');
      forget.addEventListener('click', () => { api.dropOrgKey(org); draw(); });
      box.replaceChildren(el('h2', {id: 'h-org-key'}, 'Organization API key'),
        el('p', {}, 'The organization\'s pages use ', el('code', {id: 'org-key-current'}, current.key), ' (its role decides what they may do). ', forget));
      return;
    }
    const key = el('input', {type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: `a-${org}-...`});
    const token = el('input', {type: 'password', autocomplete: 'off'});
    const open = el('form', {id: 'org-key-open', class: 'row', novalidate: true},
      field('org-key-id', 'API key', key), field('org-key-token', 'Token', token),
      el('button', {type: 'submit', class: 'primary'}, 'Use this key'));
    open.addEventListener('submit', async (e) => {
      e.preventDefault();
      fieldError('org-key-id', '');
      api.setOrgKey(org, key.value.trim(), token.value);
      try {
        await api.orgCall(org, 'GET', '/device/types');
        draw();
        onOpen();
      } catch (err) {
        api.dropOrgKey(org);
        fieldError('org-key-id', err.message);
      }
    });
    const make = el('button', {type: 'button', id: 'org-key-make'}, 'Make an admin key for this console');
    make.addEventListener('click', async () => {
      try {
        const k = await api.call('POST', `/api/v1/platform/orgs/${encodeURIComponent(org)}/keys`, {role: 'admin', description: 'web console'});
        api.setOrgKey(org, k.apiKey, k.apiToken);
        draw();
        onOpen();
      } catch (err) { fieldError('org-key-id', err.message); }
    });
    box.replaceChildren(el('h2', {id: 'h-org-key'}, 'Organization API key'),
      el('p', {class: 'muted'}, 'A device\'s status, events, history and management, and the rules, are the organization\'s: open them with one of its API keys.'),
      open, el('p', {}, make));
  };
  draw();
  return box;
}
