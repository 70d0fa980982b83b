// Small helpers shared by every part of the SDK (no dependencies: the whole
// script must stay under its gzipped size budget).

export type Dict = Record<string, any>;
export type Callback = (ctx?: any) => void;

export const isFn = (v: unknown): v is Function => typeof v === 'function';
export const isStr = (v: unknown): v is string => typeof v === 'string';
export const isObj = (v: unknown): v is Dict =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

export const nowIso = (): string => new Date().toISOString();

/** RFC 4122 v4 id from getRandomValues: randomUUID needs a secure context,
 *  and plain-http sites must still get unique ids. */
export function uuid(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  let h = '';
  for (let i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const warn = (...a: unknown[]) => console.warn('[kairos]', ...a);
export const error = (...a: unknown[]) => console.error('[kairos]', ...a);

export const on = (t: EventTarget, ev: string, fn: (e: any) => void, opts?: AddEventListenerOptions | boolean) =>
  t.addEventListener(ev, fn, opts);
