// Delivery: every event is written to a persisted queue (localStorage) the
// moment it is made and leaves it only when Kairos acknowledged it or
// refused it for good. Sending is batched to POST /v1/batch; a failed send
// is retried with exponential backoff and jitter; whatever is still queued
// when the page goes away is sent with `keepalive` and again on the next
// load. Every event keeps the messageId it was made with, so Kairos
// stores it once however many times it is sent (dedup on messageId).

import { lsGet, lsSet } from './store';
import { Dict, error, nowIso, on, warn } from './util';

/** Most events kept waiting: localStorage holds about 5 MB per origin and
 *  the site needs some of it; past this the oldest are dropped (warned). */
export const QUEUE_MAX = 1000;
/** Most events in one request, and most bytes (Kairos refuses requests
 *  over 500 KB by default: stay well under). */
export const BATCH_EVENTS_MAX = 100;
export const BATCH_BYTES_MAX = 400_000;
/** Kairos refuses events over 32 KB: such an event is dropped at once
 *  (with a warning) instead of blocking the queue. */
export const EVENT_BYTES_MAX = 32_000;
/** Browsers allow 64 KB of `keepalive` bodies in flight per page. */
const KEEPALIVE_BYTES_MAX = 60_000;
/** Backoff: first retry after about 1 s, doubling to at most 5 minutes. */
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 300_000;

export interface QueueOptions {
  apiHost: string;
  writeKey: string;
  flushAt: number;
  flushInterval: number;
  /** Called with each batch's messageIds once Kairos has them (or refused them). */
  onDone: (ids: string[]) => void;
}

/** Wait before retry number `attempt` (0-based): exponential with jitter
 *  over its upper half, so the pages that failed together do not retry
 *  together, and never much sooner than the schedule says. */
export function backoffMs(attempt: number, random = Math.random()): number {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return cap / 2 + random * (cap / 2);
}

const byteLength = (s: string) => new Blob([s]).size;

export class Queue {
  private key: string;
  private timer?: ReturnType<typeof setTimeout>;
  private sending = false;
  private attempt = 0;
  private retryAt = 0;

  constructor(private o: QueueOptions) {
    this.key = `kairos.queue.${o.writeKey}`;
    on(window, 'online', () => {
      this.retryAt = 0;
      this.flush();
    });
    // A page being hidden may never come back (mobile tab killed): send now.
    on(window, 'pagehide', () => this.unload());
    on(document, 'visibilitychange', () => document.visibilityState === 'hidden' && this.unload());
  }

  /** The waiting events, oldest first (shared by this site's tabs). */
  read(): Dict[] {
    try {
      const q = JSON.parse(lsGet(this.key) || '[]');
      return Array.isArray(q) ? q : [];
    } catch {
      return [];
    }
  }

  private write(q: Dict[]) {
    while (!lsSet(this.key, JSON.stringify(q)) && q.length) {
      warn(`storage full: dropping the oldest of ${q.length} queued events`);
      q = q.slice(Math.ceil(q.length / 4));
    }
  }

  push(event: Dict) {
    if (byteLength(JSON.stringify(event)) > EVENT_BYTES_MAX) {
      warn(`event ${event.messageId} is over ${EVENT_BYTES_MAX} bytes: dropped (Kairos refuses it)`);
      this.o.onDone([event.messageId]);
      return;
    }
    const q = this.read();
    q.push(event);
    if (q.length > QUEUE_MAX) {
      const dropped = q.splice(0, q.length - QUEUE_MAX);
      warn(`offline queue over ${QUEUE_MAX} events: dropped the ${dropped.length} oldest`);
      this.o.onDone(dropped.map((e) => e.messageId));
    }
    this.write(q);
    this.schedule(q.length >= this.o.flushAt ? 0 : this.o.flushInterval);
  }

  private remove(ids: string[]) {
    const gone = new Set(ids);
    this.write(this.read().filter((e) => !gone.has(e.messageId)));
    this.o.onDone(ids);
  }

  private schedule(ms: number) {
    const wait = Math.max(ms, this.retryAt - Date.now());
    if (this.timer && wait > 0) return; // a flush is already planned
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  /** The next request: oldest first, within the count and size limits. */
  private batch(limitBytes: number, from: Dict[] = this.read()): Dict[] {
    const out: Dict[] = [];
    let bytes = 200;
    for (const e of from) {
      bytes += byteLength(JSON.stringify(e)) + 1;
      if (out.length >= BATCH_EVENTS_MAX || (bytes > limitBytes && out.length)) break;
      out.push(e);
    }
    return out;
  }

  private body(batch: Dict[]) {
    return JSON.stringify({ batch, sentAt: nowIso(), writeKey: this.o.writeKey });
  }

  async flush(): Promise<void> {
    // One request at a time; the end of the one in flight plans the next.
    if (this.sending) return;
    if (Date.now() < this.retryAt) return this.schedule(0);
    if (navigator.onLine === false) return; // the `online` event resumes
    const batch = this.batch(BATCH_BYTES_MAX);
    if (!batch.length) return;
    this.sending = true;
    let retryIn: number | null = null;
    try {
      const res = await fetch(`${this.o.apiHost}/v1/batch`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Basic ${btoa(`${this.o.writeKey}:`)}` },
        body: this.body(batch),
        credentials: 'omit',
      });
      retryIn = await this.outcome(res, batch);
    } catch (e) {
      retryIn = this.backoff(); // network error: offline, DNS, CORS, reset
    } finally {
      this.sending = false;
    }
    if (retryIn === null) {
      this.attempt = 0;
      this.retryAt = 0;
      if (this.read().length) this.schedule(0);
    } else {
      this.retryAt = Date.now() + retryIn;
      this.schedule(retryIn);
    }
  }

  /** Milliseconds until the batch is retried, or null when it is done. */
  private async outcome(res: Response, batch: Dict[]): Promise<number | null> {
    const ids = batch.map((e) => e.messageId);
    if (res.status === 429 || res.status >= 500) {
      const after = Number(res.headers.get('Retry-After'));
      return after > 0 ? Math.min(after * 1000, BACKOFF_MAX_MS) : this.backoff();
    }
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      if (body.quarantined?.length) warn('Kairos quarantined events of a batch:', JSON.stringify(body.quarantined));
    } else {
      // Any other 4xx will not get better by retrying: drop, and say why.
      error(`Kairos refused ${ids.length} events (${res.status}): ${body.detail || body.title || res.statusText}`);
    }
    this.remove(ids);
    return null;
  }

  private backoff(): number {
    return backoffMs(this.attempt++);
  }

  /** Page going away: send what waits with `keepalive` (it outlives the
   *  page) as a simple CORS request — write key in the body, text/plain, no
   *  Authorization header — since a preflight may not survive unload. The
   *  events stay queued: if they were not received, the next load sends
   *  them again, and Kairos deduplicates the ones that were. */
  private unload() {
    const batch = this.batch(KEEPALIVE_BYTES_MAX);
    if (!batch.length) return;
    fetch(`${this.o.apiHost}/v1/batch`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: this.body(batch),
      keepalive: true,
      credentials: 'omit',
    }).catch(() => {});
  }
}
