// The console's entry point: the login page, the session's idle timeout and the
// hash router (#/overview, #/clients, #/clients/ID, #/topics, and with the platform
// #/platform, #/platform/ORG, #/platform/ORG/rules, #/platform/ORG/device/TYPE/ID).

import * as api from './api.js';
import * as overview from './overview.js';
import * as clients from './clients.js';
import * as topics from './topics.js';
import * as platform from './platform.js';
import {renderDevice} from './device.js';
import {renderRules} from './rules.js';
import {el, field, fieldError, status} from './dom.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let leave = null;
let notice = '';

api.onExpired((message) => {
  notice = message;
  overview.stop();
  route();
});

function loginPage() {
  const key = el('input', {type: 'password', autocomplete: 'off', spellcheck: 'false', required: true});
  const form = el('form', {class: 'login', id: 'login', novalidate: true},
    el('h1', {}, 'Tern console'),
    el('p', {class: 'muted'}, 'Log in with an API key as ', el('code', {}, 'tern admin key create'),
      ' prints it: ', el('code', {}, 'ID:SECRET'), ', or the secret alone.'),
    el('p', {class: 'error', id: 'login-notice', 'aria-live': 'polite'}, notice),
    field('key', 'API key', key),
    el('button', {type: 'submit', class: 'primary', id: 'login-submit'}, 'Log in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    fieldError('key', '');
    let header;
    try {
      header = api.authorization(key.value);
    } catch (err) {
      fieldError('key', err.message);
      return;
    }
    try {
      const code = await api.tryKey(header);
      if (code === 200) {
        notice = '';
        api.login(header);
        if (!location.hash || location.hash === '#/login') location.hash = '#/overview';
        route();
      } else if (code === 401) {
        fieldError('key', 'The broker refused this key.');
      } else {
        fieldError('key', `The broker answered ${code}.`);
      }
    } catch (err) {
      fieldError('key', 'The broker cannot be reached: ' + err.message);
    }
  });
  main.replaceChildren(form);
  key.focus();
  return () => {};
}

// `moved` is false on the first page load: the focus stays at the top of the document
// (the skip link is the first Tab); after a page change it moves to the new page.
function route(moved) {
  if (leave) leave();
  leave = null;
  status('');
  if (!api.loggedIn()) {
    top.hidden = true;
    document.title = 'Log in · Tern console';
    leave = loginPage();
    return;
  }
  if (top.hidden) showPlatform();
  top.hidden = false;
  overview.start();
  const [page, ...rest] = (location.hash || '#/overview').replace(/^#\/?/, '').split('/');
  const name = ['clients', 'topics', 'platform'].includes(page) ? page : 'overview';
  for (const link of top.querySelectorAll('nav a')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (name === 'clients' && rest.length) {
    const id = decodeURIComponent(rest.join('/'));
    document.title = id + ' · Tern console';
    leave = clients.renderClient(main, id);
  } else if (name === 'clients') {
    document.title = 'Clients · Tern console';
    leave = clients.renderList(main);
  } else if (name === 'platform') {
    leave = platformPage(rest.map(decodeURIComponent));
  } else if (name === 'topics') {
    document.title = 'Topics · Tern console';
    leave = topics.render(main);
  } else {
    document.title = 'Overview · Tern console';
    leave = overview.render(main);
  }
  if (moved !== false) main.focus({preventScroll: true});
}

/** The platform's menu entry, shown when the broker runs the platform. */
async function showPlatform() {
  const link = document.getElementById('nav-platform');
  link.hidden = !(await platform.enabled());
}

function platformPage([org, what, type, ...id]) {
  if (!org) {
    document.title = 'Platform · Tern console';
    return platform.renderOrgs(main);
  }
  if (what === 'rules') {
    document.title = `Rules of ${org} · Tern console`;
    return renderRules(main, org);
  }
  if (what === 'device' && type && id.length) {
    document.title = `${type}/${id.join('/')} · Tern console`;
    return renderDevice(main, org, type, id.join('/'));
  }
  document.title = `${org} · Tern console`;
  return platform.renderOrg(main, org);
}

document.getElementById('logout').addEventListener('click', () => {
  api.logout();
  overview.stop();
  notice = 'Logged out.';
  route();
});
// The skip link moves the focus to the page without touching the hash (the router's).
document.querySelector('.skip').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
for (const kind of ['keydown', 'pointerdown']) document.addEventListener(kind, api.touch, {passive: true});
// The idle timeout also ends a session in a tab nobody touches.
setInterval(() => { if (!top.hidden) api.loggedIn(); }, 15000);
window.addEventListener('hashchange', route);
route(false);
