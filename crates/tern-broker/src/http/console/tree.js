// The live topic tree, as MQTT Explorer shows one: every topic seen since the page
// opened (and the retained ones), level by level, each with its last value, its
// messages in the last second and whether it holds a retained message. Fed by
// /api/v1/stream/messages?filter=#&messages=false: one event a second, whatever the
// traffic.

import * as api from './api.js';
import {el, num} from './dom.js';

/** Topics kept in the page, at most (the first ones seen). */
const MAX_TOPICS = 2000;
const VALUE_CHARS = 80;

function shorten(text) {
  if (text === null || text === undefined) return '(not UTF-8)';
  return text.length > VALUE_CHARS ? text.slice(0, VALUE_CHARS) + '…' : text;
}

/** The tree panel: `{node, stop}`. */
export function treePanel() {
  // topic -> {payload, bytes, rate, retained}
  const topics = new Map();
  const collapsed = new Set();
  const tree = el('div', {id: 'tree', class: 'tree'});
  const note = el('p', {class: 'muted', id: 'tree-note', 'aria-live': 'off'}, 'Waiting for messages…');
  const controller = new AbortController();
  let skipped = 0;
  let matched = 0;

  function set(topic, values) {
    if (!topics.has(topic) && topics.size >= MAX_TOPICS) { skipped += 1; return; }
    topics.set(topic, {rate: 0, retained: false, ...topics.get(topic), ...values});
  }

  function take(data) {
    for (const t of topics.values()) t.rate = 0;
    for (const t of data.topics) {
      const values = {payload: t.payload, bytes: t.payload_bytes, rate: t.count};
      // A retained publish sets the flag (an empty one clears it); others leave it.
      if (t.retain) values.retained = t.payload_bytes > 0;
      set(t.topic, values);
    }
    skipped += data.topics_skipped;
    matched = data.matched;
    draw();
  }

  function draw() {
    note.textContent = `${num(topics.size)} topics` + (skipped ? `; ${num(skipped)} not shown (too many)` : '') +
      `; ${num(matched)} messages in the last second.`;
    // Levels as nested maps; a node with `topic` is a topic itself.
    const root = new Map();
    for (const [topic, value] of [...topics].sort(([a], [b]) => (a < b ? -1 : 1))) {
      let level = root;
      const parts = topic.split('/');
      parts.forEach((part, i) => {
        if (!level.has(part)) level.set(part, {children: new Map()});
        const node = level.get(part);
        if (i === parts.length - 1) { node.topic = topic; node.value = value; }
        level = node.children;
      });
    }
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.path : null;
    tree.replaceChildren(list(root, ''));
    if (focused) {
      const again = tree.querySelector(`[data-path="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function row(name, node) {
    const v = node.value;
    return el('span', {class: 'topic', 'data-topic': node.topic},
      el('span', {class: 'name'}, name || '(empty)'),
      el('span', {class: 'value wrap'}, shorten(v.payload)),
      el('span', {class: 'rate'}, num(v.rate) + '/s'),
      v.retained ? el('span', {class: 'badge on'}, 'retained') : null);
  }

  function list(level, prefix) {
    const items = [];
    for (const [name, node] of level) {
      const path = prefix ? prefix + '/' + name : name;
      if (!node.children.size) { items.push(el('li', {}, row(name, node))); continue; }
      const summary = el('summary', {'data-path': path}, node.topic ? row(name, node) : el('span', {class: 'name'}, name || '(empty)'),
        el('span', {class: 'muted'}, ` (${node.children.size})`));
      const details = el('details', {open: !collapsed.has(path)}, summary, list(node.children, path));
      details.addEventListener('toggle', () => { if (details.open) collapsed.delete(path); else collapsed.add(path); });
      items.push(el('li', {}, details));
    }
    return el('ul', {}, items);
  }

  api.get('/api/v1/retained' + api.query({filter: '#', limit: 100})).then((answer) => {
    for (const m of answer.items) set(m.topic, {payload: m.payload, bytes: m.payload_bytes, retained: true});
    draw();
  }).catch(() => {});

  (async () => {
    const signal = controller.signal;
    while (!signal.aborted) {
      try {
        await api.events('/api/v1/stream/messages' + api.query({filter: '#', messages: 'false'}), signal, (event, data) => {
          if (event === 'messages') take(data);
        });
      } catch (e) {
        if (signal.aborted || e.status === 401) return;
        note.textContent = 'The live tree is interrupted (' + e.message + '); retrying.';
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();

  const node = el('section', {'aria-labelledby': 'h-tree'},
    el('h2', {id: 'h-tree'}, 'Topic tree (live)'), note, tree);
  return {node, stop: () => controller.abort()};
}
