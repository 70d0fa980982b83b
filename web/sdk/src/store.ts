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

/** One id (anonymous id, user id, group id) kept in both places. With
 *  `persist` false (consent required and not given yet) it lives in memory
 *  only, so nothing is written to the visitor's device before consent. */
export class IdStore {
  persist = true;
  private value: string | null = null;

  constructor(private key: string, private domain?: string) {}

  get(): string | null {
    if (this.value) return this.value;
    if (!this.persist) return null;
    this.value = unquote(cookieGet(this.key)) || unquote(lsGet(this.key));
    return this.value;
  }

  set(v: string | null) {
    this.value = v;
    if (this.persist) this.save();
  }

  /** Stores the id (consent given) or keeps it in memory only and removes
   *  any stored copy (consent required and not given, or withdrawn). */
  setPersist(persist: boolean) {
    const v = this.get();
    this.persist = persist;
    this.value = null;
    if (persist) this.set(v);
    else {
      this.save();
      this.value = v;
    }
  }

  private save() {
    cookieSet(this.key, this.value, this.domain);
    if (!lsSet(this.key, this.value)) warn(`could not store ${this.key}`);
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
