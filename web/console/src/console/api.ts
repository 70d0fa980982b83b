// Every console call is the public API (docs/api.md) with the session
// cookie (HttpOnly: the page never sees it) and, on unsafe methods, the
// CSRF token, held in this module's memory only — never in storage, never
// in a URL.

let csrf: string | null = null;

export class ApiError extends Error {
  constructor(public status: number, public problem: any) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
  }
}

export async function api(method: string, path: string, body?: unknown): Promise<any> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = text ? JSON.parse(text) : null; } catch (e) { /* text answer (metrics) */ }
  if (!res.ok) {
    if (res.status === 401 && path !== '/v1/console/session') onLoggedOut();
    throw new ApiError(res.status, parsed);
  }
  return parsed;
}

let loggedOut: () => void = () => {};
export function whenLoggedOut(fn: () => void): void { loggedOut = fn; }
function onLoggedOut(): void { csrf = null; loggedOut(); }

/** Restores the session from the cookie (after a reload); false without one. */
export async function resume(): Promise<boolean> {
  try {
    csrf = (await api('GET', '/v1/console/session')).csrf_token;
    return true;
  } catch (e) {
    return false;
  }
}

export async function login(token: string): Promise<void> {
  csrf = (await api('POST', '/v1/console/session', { token })).csrf_token;
}

export async function logout(): Promise<void> {
  try { await api('DELETE', '/v1/console/session'); } finally { csrf = null; }
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const p = e.problem || {};
    const at = p.line && !e.message.includes(`line ${p.line}`) ? ` (line ${p.line}, column ${p.column})` : '';
    return `${p.code ? p.code + ': ' : ''}${e.message}${at}`;
  }
  return String(e);
}

/** `type:value` → the path segment the profile API expects. */
export function identifierPath(identifier: string): string {
  return encodeURIComponent(identifier.trim());
}
