// A line plot of one series over a time window, drawn as SVG: the console's own code,
// no library. The y axis starts at 0 and ends at a round number above the largest value.

const NS = 'http://www.w3.org/2000/svg';
const W = 600, H = 140, LEFT = 44, RIGHT = 8, TOP = 8, BOTTOM = 20;

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value` (and ≥ 1). */
export function roundUp(value) {
  if (!(value > 1)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function label(value) {
  if (value >= 1e6) return (value / 1e6).toLocaleString('en-US', {maximumFractionDigits: 1}) + 'M';
  if (value >= 1e4) return (value / 1e3).toLocaleString('en-US', {maximumFractionDigits: 1}) + 'k';
  return value.toLocaleString('en-US', {maximumFractionDigits: 1});
}

/** An empty plot, to be filled by `draw`. */
export function create(id, title) {
  const root = svg('svg', {id, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title});
  return root;
}

/**
 * Draws `points` ([time ms, value] in time order) over the `span` ms before `now`.
 * Leaves `data-max`, `data-last` and `data-points` on the element for tests and tools.
 */
export function draw(root, points, now, span, title) {
  const start = now - span;
  const shown = points.filter(([t]) => t >= start);
  const top = roundUp(Math.max(0, ...shown.map(([, v]) => v)));
  const x = (t) => LEFT + ((t - start) / span) * (W - LEFT - RIGHT);
  const y = (v) => H - BOTTOM - (v / top) * (H - TOP - BOTTOM);
  const parts = [];
  for (const v of [0, top / 2, top]) {
    parts.push(svg('line', {class: 'grid', x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v)}));
    parts.push(svg('text', {x: LEFT - 4, y: y(v) + 3, 'text-anchor': 'end'}, label(v)));
  }
  const minutes = Math.round(span / 60000);
  for (let m = minutes; m >= 0; m -= 5) {
    const at = x(now - m * 60000);
    const anchor = m === minutes ? 'start' : m === 0 ? 'end' : 'middle';
    parts.push(svg('text', {x: at, y: H - 4, 'text-anchor': anchor}, m === 0 ? 'now' : `−${m} min`));
  }
  if (shown.length) {
    const line = shown.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    const first = x(shown[0][0]).toFixed(1), last = x(shown[shown.length - 1][0]).toFixed(1);
    const base = y(0).toFixed(1);
    parts.push(svg('polygon', {class: 'area', points: `${first},${base} ${line} ${last},${base}`}));
    parts.push(svg('polyline', {class: 'series', points: line}));
  }
  root.replaceChildren(svg('title', {}, title), ...parts);
  const values = shown.map(([, v]) => v);
  root.dataset.max = String(values.length ? Math.max(...values) : 0);
  root.dataset.last = String(values.length ? values[values.length - 1] : 0);
  root.dataset.points = String(values.length);
}
