// The overview: live plots of connections, messages in and out per second and dropped
// messages per second, from the broker's statistics stream (/api/v1/stream/stats, one
// event a second). The samples of the last 15 minutes stay in the page (and in
// sessionStorage, so a reload keeps them) whichever page is shown.

import * as api from './api.js';
import * as plot from './plot.js';
import {el, num, status} from './dom.js';

/** How much history is kept and drawn. */
export const SPAN_MS = 15 * 60 * 1000;
const SAVED = 'tern.history';

const SERIES = [
  {key: 'connections', title: 'Connections', unit: ''},
  {key: 'in', title: 'Messages in', unit: '/s'},
  {key: 'out', title: 'Messages out', unit: '/s'},
  {key: 'dropped', title: 'Dropped messages', unit: '/s'},
];

// [time ms, {connections, in, out, dropped}], oldest first.
let samples = [];
let previous = null;
let latest = null;
// Samples taken since the page loaded; every tenth saves the history.
let taken = 0;
let controller = null;
// The time range the plots show (the history kept is SPAN_MS whatever this is).
let shownSpan = SPAN_MS;
const listeners = new Set();

function restore() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SAVED) || '[]');
    if (Array.isArray(saved)) samples = saved.filter((s) => Array.isArray(s) && s[0] >= Date.now() - SPAN_MS);
  } catch { samples = []; }
}

/** Turns one event's counters into a sample of rates (per second since the last one). */
function take(data) {
  const now = data.time_ms || Date.now();
  if (previous && now > previous.time_ms) {
    const seconds = (now - previous.time_ms) / 1000;
    const rate = (name) => Math.max(0, (data[name] - previous[name]) / seconds);
    samples.push([now, {
      connections: data.clients_connected,
      in: rate('messages_received'),
      out: rate('messages_sent'),
      dropped: rate('messages_dropped'),
    }]);
    while (samples.length && samples[0][0] < now - SPAN_MS) samples.shift();
    taken += 1;
    if (taken % 10 === 0) sessionStorage.setItem(SAVED, JSON.stringify(samples));
  }
  previous = data;
  latest = data;
  for (const listener of listeners) listener();
}

/** Keeps the statistics stream open (reopening it when it ends) until `stop`. */
export function start() {
  if (controller) return;
  restore();
  controller = new AbortController();
  const signal = controller.signal;
  (async () => {
    while (!signal.aborted) {
      try {
        await api.events('/api/v1/stream/stats', signal, (event, data) => {
          if (event === 'stats') take(data);
        });
        status('');
      } catch (e) {
        if (signal.aborted || e.status === 401) return;
        status('Live statistics interrupted (' + e.message + '); retrying.');
      }
      // The server's retry interval before reopening.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
}

export function stop() {
  if (controller) controller.abort();
  controller = null;
  previous = null;
  latest = null;
  samples = [];
  sessionStorage.removeItem(SAVED);
}

function figureText(series) {
  const last = samples.length ? samples[samples.length - 1][1][series.key] : null;
  return num(last);
}

/** Renders the overview into `main`; returns what stops its updates. */
export function render(main) {
  const cards = SERIES.map((s) => {
    const figure = el('span', {id: 'fig-' + s.key}, '–');
    const svg = plot.create('plot-' + s.key, s.title + ' over the last 15 minutes');
    const card = el('section', {class: 'plot', 'aria-labelledby': 'h-' + s.key},
      el('h2', {id: 'h-' + s.key}, s.title),
      el('div', {class: 'figure'}, figure, el('small', {}, s.unit)),
      svg);
    return {s, figure, svg, card};
  });
  const totals = el('dl', {class: 'details', id: 'totals'});
  const range = el('select', {id: 'range'},
    ...[1, 5, 15].map((m) => el('option', {value: m, selected: m * 60000 === shownSpan}, `last ${m} min`)));
  range.addEventListener('change', () => { shownSpan = Number(range.value) * 60000; update(); });
  main.replaceChildren(
    el('h1', {}, 'Overview'),
    el('div', {class: 'row'},
      el('p', {class: 'muted'}, 'Live, one sample a second; the last 15 minutes are kept in this tab.'),
      el('div', {class: 'field narrow'}, el('label', {for: 'range'}, 'Show'), range)),
    el('div', {class: 'plots'}, cards.map((c) => c.card)),
    el('h2', {}, 'Broker'),
    totals);
  const update = () => {
    const now = samples.length ? samples[samples.length - 1][0] : Date.now();
    for (const c of cards) {
      c.figure.textContent = figureText(c.s);
      const points = samples.map(([t, v]) => [t, v[c.s.key]]);
      plot.draw(c.svg, points, now, shownSpan, c.s.title);
    }
    if (latest) {
      const rows = [
        ['Version', latest.version],
        ['Up for', duration(latest.uptime_s)],
        ['Clients connected (most)', `${num(latest.clients_connected)} (${num(latest.clients_maximum)})`],
        ['Sessions', num(latest.sessions)],
        ['Subscriptions', num(latest.subscriptions)],
        ['Retained messages', num(latest.retained_messages)],
        ['Messages in / out', `${num(latest.messages_received)} / ${num(latest.messages_sent)}`],
        ['Messages dropped', num(latest.messages_dropped)],
        ['Store', latest.store && latest.store.enabled ? (latest.store.writable ? 'writable' : 'NOT writable') : 'none (in memory)'],
      ];
      totals.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    }
  };
  update();
  listeners.add(update);
  return () => listeners.delete(update);
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}
