// Small helpers for building the console's DOM without HTML strings (so nothing a
// broker returns, a client id say, is ever parsed as markup).

/** An element: `el('a', {href: '#/x', class: 'y'}, 'text', child, ...)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A labelled form field with a place for its error under it. */
export function field(id, label, input) {
  input.id = id;
  input.setAttribute('aria-describedby', id + '-error');
  return el('div', {class: 'field'},
    el('label', {for: id}, label),
    input,
    el('div', {class: 'error', id: id + '-error', 'aria-live': 'polite'}));
}

/** Shows `message` under the field `id` (empty clears it). */
export function fieldError(id, message) {
  const node = document.getElementById(id + '-error');
  if (node) node.textContent = message || '';
  const input = document.getElementById(id);
  if (input) input.setAttribute('aria-invalid', message ? 'true' : 'false');
}

/**
 * A button for something that cannot be undone: the first press asks, a second button
 * does it, Escape or Cancel backs out. `action` is async; what it throws is shown.
 */
export function confirmButton(id, label, question, action) {
  const wrap = el('span', {class: 'confirm'});
  const result = el('span', {class: 'error', id: id + '-result', 'aria-live': 'polite'});
  const ask = el('button', {type: 'button', class: 'danger', id}, label);
  const reset = () => { wrap.replaceChildren(ask, ' ', result); };
  ask.addEventListener('click', () => {
    const yes = el('button', {type: 'button', class: 'danger', id: id + '-confirm'}, label + ' now');
    const no = el('button', {type: 'button', id: id + '-cancel'}, 'Cancel');
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      result.textContent = '';
      try {
        await action();
        reset();
      } catch (e) {
        reset();
        result.textContent = e.message;
      }
    });
    no.addEventListener('click', () => { reset(); ask.focus(); });
    const escape = (e) => { if (e.key === 'Escape') { reset(); ask.focus(); } };
    yes.addEventListener('keydown', escape);
    no.addEventListener('keydown', escape);
    wrap.replaceChildren(el('span', {}, question, ' '), yes, ' ', no, ' ', result);
    yes.focus();
  });
  reset();
  return wrap;
}

/** Shows a short message in the status line at the bottom. */
export function status(message) {
  const node = document.getElementById('status');
  if (node) node.textContent = message || '';
}

/** A number with thousands separators; rates with one decimal below 10. */
export function num(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  const digits = Math.abs(value) < 10 && !Number.isInteger(value) ? 1 : 0;
  return value.toLocaleString('en-US', {maximumFractionDigits: digits, minimumFractionDigits: digits});
}
