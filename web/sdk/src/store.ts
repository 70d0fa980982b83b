// Where the SDK keeps ids: a first-party cookie (readable by the site's own
// server, shared across subdomains when `cookieDomain` is set, compatible
// with analytics.js' `ajs_*` names) with localStorage as the fallback when
// cookies are blocked, and memory when both are.

import { warn } from './util';

/** A year: the lifetime analytics.js gives its id cookies. */
const COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600;

const memory: Record<string, string> = {};

export function lsGet(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return memory[key] ?? null;
  }
}

/** False when the value could not be stored (quota, storage disabled). */
export function lsSet(key: string, value: string | null): boolean {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
    return true;
  } catch (e) {
    if (value === null) delete memory[key];
    else memory[key] = value;
    return !(e instanceof DOMException && /quota/i.test(e.name));
  }
}

export function cookieGet(name: string): string | null {
  try {
    for (const part of document.cookie.split('; ')) {
      const i = part.indexOf('=');
      if (part.slice(0, i) === name) return decodeURIComponent(part.slice(i + 1));
    }
  } catch {
    /* cookies blocked (sandboxed iframe) */
  }
  return null;
}

export function cookieSet(name: string, value: string | null, domain?: string) {
  const attrs = `; path=/${domain ? `; domain=${domain}` : ''}; SameSite=Lax${location.protocol === 'https:' ? '; Secure' : ''}`;
  try {
    document.cookie = value === null
      ? `${name}=; max-age=0${attrs}`
      : `${name}=${encodeURIComponent(value)}; max-age=${COOKIE_MAX_AGE_SECONDS}${attrs}`;
  } catch {
    /* cookies blocked */
  }
}

/** analytics.js (classic) JSON-encoded its cookie values: accept `"abc"`. */
function unquote(v: string | null): string | null {
  if (v && v[0] === '"') {
    try {
      return JSON.parse(v);
    } catch {
      /* not JSON after all */
    }
  }
  return v || null;
}

/** One id (anonymous id, user id, group id) kept in both places. Until
 *  `load` knows the visitor may be tracked (consent) it is written nowhere:
 *  it lives in memory, so nothing is stored on the device before consent. */
export class IdStore {
  /** Set by `load` and on every consent change through `setPersist`. */
  private persist = false;
  private value: string | null = null;

  constructor(private key: string, public domain?: string) {}

  get(): string | null {
    // Reading what an earlier page stored is harmless: a denial removed it.
    if (!this.value) this.value = unquote(cookieGet(this.key)) || unquote(lsGet(this.key));
    return this.value;
  }

  set(v: string | null) {
    this.value = v;
    if (this.persist) this.save(v);
  }

  /** Stores the id in use (consent given), or removes every stored copy
   *  and keeps it in memory only (consent required and not given, or
   *  withdrawn). */
  setPersist(persist: boolean) {
    const v = this.get();
    this.persist = persist;
    this.save(persist ? v : null);
  }

  private save(v: string | null) {
    cookieSet(this.key, v, this.domain);
    if (!lsSet(this.key, v)) warn(`could not store ${this.key}`);
  }
}

/** JSON object kept in localStorage (traits). */
export function jsonGet(key: string): Record<string, any> {
  try {
    return JSON.parse(lsGet(key) || '{}') || {};
  } catch {
    return {};
  }
}
