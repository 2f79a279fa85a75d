// The console's session and its calls to the broker's HTTP API (/api/v1). The key the
// user logged in with is kept in sessionStorage (gone when the tab closes) as the
// Authorization header it stands for; a 401 or 30 minutes without activity end the
// session.

const AUTH = 'tern.auth';
// Every request omits the browser's own credentials: a 401 then never opens the
// browser's HTTP authentication dialog (which would hang the request until answered).
const OMIT = 'omit';
const SEEN = 'tern.seen';
/** A session ends after this long without a key press or click. */
export const IDLE_MS = 30 * 60 * 1000;

/** A refusal by the API: `status`, the `error` message and the `field` it names. */
export class ApiError extends Error {
  constructor(status, body) {
    // The admin API says `error`; the platform's /api/v0002 says `message`.
    super((body && (body.error || body.message)) || `the broker answered ${status}`);
    this.status = status;
    this.field = body ? body.field : null;
  }
}

let expired = () => {};
/** `handler(message)` is called when the session ends without the user logging out. */
export function onExpired(handler) { expired = handler; }

/**
 * The Authorization header for what the user typed: `ID:SECRET` (as `tern admin key
 * create` prints them) as HTTP Basic, or the secret alone as Bearer.
 */
export function authorization(text) {
  const key = text.trim();
  if (!key) throw new Error('paste an API key (ID:SECRET, or the secret)');
  if (!/^[\x21-\x7e]+$/.test(key)) throw new Error('an API key is printable ASCII without spaces');
  const colon = key.indexOf(':');
  if (colon < 0) return 'Bearer ' + key;
  if (colon === 0 || colon === key.length - 1) throw new Error('expected ID:SECRET');
  return 'Basic ' + btoa(key);
}

/** Whether a session is open (and not idle for too long: then it is ended). */
export function loggedIn() {
  if (!sessionStorage.getItem(AUTH)) return false;
  const seen = Number(sessionStorage.getItem(SEEN) || 0);
  if (Date.now() - seen > IDLE_MS) {
    logout();
    expired('Your session expired after 30 minutes without activity: log in again.');
    return false;
  }
  return true;
}

/** Records activity (a key press or a click), which keeps the session open. */
export function touch() {
  if (sessionStorage.getItem(AUTH)) sessionStorage.setItem(SEEN, String(Date.now()));
}

export function login(header) {
  sessionStorage.setItem(AUTH, header);
  sessionStorage.setItem(SEEN, String(Date.now()));
}

export function logout() {
  sessionStorage.removeItem(AUTH);
  sessionStorage.removeItem(SEEN);
  for (const name of Object.keys(sessionStorage)) if (name.startsWith(ORG)) sessionStorage.removeItem(name);
}

// An organization's API key (for /api/v0002), kept in the tab while the session lasts.
const ORG = 'tern.org.';
export function setOrgKey(org, key, token) {
  sessionStorage.setItem(ORG + org, JSON.stringify({key, header: 'Basic ' + btoa(key + ':' + token)}));
}
export function orgKey(org) {
  try { return JSON.parse(sessionStorage.getItem(ORG + org) || 'null'); } catch { return null; }
}
export function dropOrgKey(org) { sessionStorage.removeItem(ORG + org); }

/**
 * A call to the platform's /api/v0002 with the organization's API key: judged by that
 * key's role, as any application's call. A 401 forgets the key (not the session).
 */
export async function orgCall(org, method, path, body) {
  const key = orgKey(org);
  if (!key) throw new ApiError(401, {error: 'open the organization with one of its API keys first'});
  if (!sessionStorage.getItem(AUTH)) throw refused();
  const init = {method, headers: {Authorization: key.header}, cache: 'no-store', credentials: OMIT};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const answer = await fetch('/api/v0002' + path, init);
  let data = null;
  try { data = await answer.json(); } catch { data = null; }
  if (answer.status === 401) dropOrgKey(org);
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

/** Whether `header` opens the API: its status for GET /api/v1/stats. */
export async function tryKey(header) {
  const answer = await fetch('/api/v1/stats', {headers: {Authorization: header}, cache: 'no-store', credentials: OMIT});
  return answer.status;
}

function refused() {
  logout();
  expired('The broker refused the key (revoked, or the session ended): log in again.');
  return new ApiError(401, {error: 'not logged in', field: 'authorization'});
}

/** The request's headers, or a refusal when no session is open. */
function headers(json) {
  const auth = sessionStorage.getItem(AUTH);
  if (!auth) throw refused();
  const h = {Authorization: auth};
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

/** One API call; the answer's JSON, or an ApiError. */
export async function call(method, path, body) {
  const init = {method, headers: headers(body !== undefined), cache: 'no-store', credentials: OMIT};
  if (body !== undefined) init.body = JSON.stringify(body);
  const answer = await fetch(path, init);
  if (answer.status === 401) throw refused();
  let data = null;
  try { data = await answer.json(); } catch { data = null; }
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

export const get = (path) => call('GET', path);

/** A query string of the defined entries of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? '?' + text : '';
}

/**
 * Reads a Server-Sent Events stream with the session's key (EventSource cannot send an
 * Authorization header, fetch can): calls `handle(event, data)` for each event until
 * the stream ends or `signal` aborts it.
 */
export async function events(path, signal, handle) {
  const answer = await fetch(path, {headers: headers(false), cache: 'no-store', credentials: OMIT, signal});
  if (answer.status === 401) throw refused();
  if (!answer.ok || !answer.body) {
    let data = null;
    try { data = await answer.json(); } catch { data = null; }
    throw new ApiError(answer.status, data);
  }
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) {
        try { handle(event, JSON.parse(data.join('\n'))); } catch { /* a bad event is skipped */ }
      }
    }
    if (buffer.length > 1 << 20) throw new Error('an event over 1 MiB');
  }
}
