// A line plot of one or more series over a time window, drawn as SVG: the console's own code,
// no library. The y axis starts at 0 and ends at a round number above the largest value.

const NS = 'http://www.w3.org/2000/svg';
const W = 360, H = 130, LEFT = 36, RIGHT = 6, TOP = 8, BOTTOM = 18;

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
 * Draws `lines` ([{name, points: [[time ms, value], ...]}], points in time order) over
 * the `span` ms before `now`; the first line is filled below. Leaves `data-max`,
 * `data-last` and `data-points` (of the first line) on the element for tests and tools.
 */
export function draw(root, lines, now, span, title) {
  const start = now - span;
  const shown = lines.map((l) => l.points.filter(([t]) => t >= start));
  const top = roundUp(Math.max(0, ...shown.flat().map(([, v]) => v)));
  const x = (t) => LEFT + ((t - start) / span) * (W - LEFT - RIGHT);
  const y = (v) => H - BOTTOM - (v / top) * (H - TOP - BOTTOM);
  const parts = [];
  for (const v of [0, top / 2, top]) {
    parts.push(svg('line', {class: 'grid', x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v)}));
    parts.push(svg('text', {x: LEFT - 4, y: y(v) + 3, 'text-anchor': 'end'}, label(v)));
  }
  // Five marks along the time axis, in minutes or seconds before now.
  for (let i = 4; i >= 0; i--) {
    const ago = (span * i) / 4;
    const anchor = i === 4 ? 'start' : i === 0 ? 'end' : 'middle';
    const text = i === 0 ? 'now' : ago >= 120000 ? `−${Math.round(ago / 60000)} min` : `−${Math.round(ago / 1000)} s`;
    parts.push(svg('text', {x: x(now - ago), y: H - 4, 'text-anchor': anchor}, text));
  }
  shown.forEach((points, i) => {
    if (!points.length) return;
    const line = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    if (i === 0) {
      const first = x(points[0][0]).toFixed(1), last = x(points[points.length - 1][0]).toFixed(1);
      const base = y(0).toFixed(1);
      parts.push(svg('polygon', {class: 'area', points: `${first},${base} ${line} ${last},${base}`}));
    }
    parts.push(svg('polyline', {class: 'series s' + i, points: line}));
    const [t, v] = points[points.length - 1];
    parts.push(svg('circle', {class: 'dot s' + i, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5}));
  });
  root.replaceChildren(svg('title', {}, title), ...parts);
  const values = (shown[0] || []).map(([, v]) => v);
  root.dataset.max = String(values.length ? Math.max(...values) : 0);
  root.dataset.last = String(values.length ? values[values.length - 1] : 0);
  root.dataset.points = String(values.length);
}

/** A legend for the lines of a plot: each name with its line's colour. */
export function legend(names) {
  const list = document.createElement('ul');
  list.className = 'legend';
  names.forEach((name, i) => {
    const item = document.createElement('li');
    const mark = document.createElement('span');
    mark.className = 'mark s' + i;
    mark.setAttribute('aria-hidden', 'true');
    item.append(mark, name);
    list.append(item);
  });
  return list;
}
