// Baton's public API, as any client calls it: a bearer token, JSON, the ErrorDto envelope.
// The token lives in sessionStorage (this tab only) and goes nowhere but this origin.

const KEY = 'baton.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value.trim());
  else sessionStorage.removeItem(KEY);
}

/** An answer that is not 2xx: its status, ErrorDto body (when JSON) and headers. */
export class ApiError extends Error {
  constructor(status, body, headers, path) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.headers = headers;
    this.path = path;
  }

  /** A 404 from the server's fallback: no such endpoint on this server (not "no such object"). */
  get noSuchEndpoint() {
    return this.status === 404 && /^no route for /.test(this.body?.message || '');
  }
}

/**
 * Calls the API. `params` become the query string (null, undefined and '' are left out);
 * `body` is sent as JSON. Resolves to { data, etag, headers }; rejects with ApiError.
 */
export async function api(path, { method = 'GET', params, body, headers = {} } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== '') url.searchParams.set(k, v);
  }
  const h = { Accept: 'application/json', ...headers };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { message: 'Baton does not answer: the server is down or unreachable from this browser.' }, new Headers(), path);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (!res.ok) throw new ApiError(res.status, data, res.headers, path);
  return { data, etag: res.headers.get('ETag'), headers: res.headers };
}

/** A sentence a person can act on, for any failure of `api`. */
export function describe(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the page: ${err?.message || err}`;
  const msg = err.body?.message ? ` (${err.body.message})` : '';
  const wait = err.headers?.get('Retry-After');
  switch (err.status) {
    case 0: return err.body.message;
    case 401: return `The token was refused: it is missing, expired, revoked or not issued by this server${msg}. Paste a new one.`;
    case 403: return `This token may not do that${msg}.`;
    case 404: return err.noSuchEndpoint ? `This server has no ${err.path} endpoint${msg}.` : `Not found${msg}.`;
    case 429: return `Too many requests with this token: Baton allows a fixed number of reads per minute. Try again in ${wait || 'a few'} seconds.`;
    case 503: return `Baton cannot answer right now (its database is unavailable or the request took too long). Try again in ${wait || 'a few'} seconds.`;
    default: return `The request failed with HTTP ${err.status}${msg}.`;
  }
}
