// The overview: live plots of connections, messages in and out per second, deliveries by
// QoS, dropped messages per second and the store's commit time, from the broker's statistics stream (/api/v1/stream/stats, one
// event a second). The samples of the last 15 minutes stay in the page (and in
// sessionStorage, so a reload keeps them) whichever page is shown.

import * as api from './api.js';
import * as plot from './plot.js';
import {el, num, status} from './dom.js';

/** How much history is kept and drawn. */
export const SPAN_MS = 15 * 60 * 1000;
const SAVED = 'tern.history';

// Each plot: its figure is the first line's last value.
const SERIES = [
  {key: 'connections', title: 'Connections', unit: ''},
  {key: 'in', title: 'Messages in', unit: '/s'},
  {key: 'out', title: 'Messages out', unit: '/s'},
  {key: 'deliveries', title: 'Deliveries by QoS', unit: '/s', lines: [['q0', 'QoS 0'], ['q1', 'QoS 1'], ['q2', 'QoS 2']]},
  {key: 'dropped', title: 'Dropped messages', unit: '/s'},
  {key: 'commit', title: 'Store commit time', unit: 'ms (mean)', lines: [['commit_mean', 'mean'], ['commit_p99', '99th percentile (at most)']]},
];
const linesOf = (s) => s.lines || [[s.key, s.title]];

// [time ms, {connections, in, out, q0, q1, q2, dropped, commit_mean, commit_p99}],
// oldest first; the commit times are null in a second without commits.
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
      q0: qosRate(data, 0, seconds),
      q1: qosRate(data, 1, seconds),
      q2: qosRate(data, 2, seconds),
      ...commitTimes(data.store_commits, previous.store_commits),
    }]);
    while (samples.length && samples[0][0] < now - SPAN_MS) samples.shift();
    taken += 1;
    if (taken % 10 === 0) sessionStorage.setItem(SAVED, JSON.stringify(samples));
  }
  previous = data;
  latest = data;
  for (const listener of listeners) listener();
}

function qosRate(data, qos, seconds) {
  const now = data.sent_by_qos, before = previous.sent_by_qos;
  if (!now || !before) return 0;
  return Math.max(0, (now[qos] - before[qos]) / seconds);
}

/**
 * The store's commits between two events: their mean time and the bound of the
 * histogram's bucket that holds the 99th percentile, in ms (null without commits).
 */
function commitTimes(now, before) {
  const none = {commit_mean: null, commit_p99: null};
  if (!now || !before || now.count <= before.count) return none;
  const count = now.count - before.count;
  const mean = ((now.sum_s - before.sum_s) / count) * 1000;
  let p99 = null;
  for (let i = 0; i < now.bounds_s.length; i++) {
    if (now.cumulative[i] - before.cumulative[i] >= 0.99 * count) { p99 = now.bounds_s[i] * 1000; break; }
  }
  if (p99 === null) p99 = now.bounds_s[now.bounds_s.length - 1] * 1000;
  return {commit_mean: Math.max(0, mean), commit_p99: p99};
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
  const key = linesOf(series)[0][0];
  const last = samples.length ? samples[samples.length - 1][1][key] : null;
  if (series.key === 'commit' && latest && !latest.store_commits) return 'no store';
  if (series.key === 'deliveries' && samples.length) {
    const v = samples[samples.length - 1][1];
    return num((v.q0 || 0) + (v.q1 || 0) + (v.q2 || 0));
  }
  return num(last);
}

/** Renders the overview into `main`; returns what stops its updates. */
export function render(main) {
  const cards = SERIES.map((s) => {
    const figure = el('span', {id: 'fig-' + s.key}, '–');
    const svg = plot.create('plot-' + s.key, s.title + ' over the last 15 minutes');
    const card = el('section', {class: 'plot', 'aria-labelledby': 'h-' + s.key},
      el('h2', {id: 'h-' + s.key}, s.title),
      el('div', {class: 'figure'}, figure, el('small', {}, ' ' + s.unit)),
      svg,
      s.lines ? plot.legend(s.lines.map(([, name]) => name)) : null);
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
      const lines = linesOf(c.s).map(([key, name]) => ({
        name,
        points: samples.filter(([, v]) => v[key] !== null && v[key] !== undefined).map(([t, v]) => [t, v[key]]),
      }));
      plot.draw(c.svg, lines, now, shownSpan, c.s.title);
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
