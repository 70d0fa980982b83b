// The Kairos browser SDK: analytics.js' calls (page, track, identify,
// alias, group, reset, user) sent to Kairos' batch endpoint, with consent,
// auto-capture and in-app messages. See docs/sdk.md.

import { aliasArgs, pageArgs, Resolved, trackArgs, userArgs } from './args';
import { Autocapture, AutocaptureOptions, startAutocapture } from './autocapture';
import { decide, DecideOptions, fillSlots, SlotRenderer } from './decide';
import { fillWidgets, recommend, RecommendOptions, WidgetRenderer } from './recommend';
import { InApp } from './inapp';
import { Queue } from './queue';
import { IdStore, jsonGet, lsGet, lsSet } from './store';
import { Callback, Dict, isObj, nowIso, uuid } from './util';

export const VERSION = '0.1.0';

/** How long a call's callback waits for Kairos' acknowledgement before it
 *  runs anyway (analytics.js' `callback` timeout is 300 ms). */
const CALLBACK_TIMEOUT_MS = 300;

export interface LoadOptions {
  /** Kairos' address, e.g. `https://kairos.example.com` (default: where kairos.js was loaded from). */
  apiHost?: string;
  /** Send when this many events wait (default 20)... */
  flushAt?: number;
  /** ...or this many ms after the first one was made (default 1000). */
  flushInterval?: number;
  /** Send nothing, store nothing, until `consent({analytics: true})`. */
  requireConsent?: boolean;
  /** Opt-in automatic events. `true` turns all on. */
  autocapture?: boolean | AutocaptureOptions;
  /** Domain of the id cookies, e.g. `.example.com` to share them across subdomains. */
  cookieDomain?: string;
}

type Call = [string, unknown[], (e: Dict) => void];

/** Consent category that governs sending analytics events (matched case-insensitively). */
const ANALYTICS = 'analytics';

export class Kairos {
  writeKey = '';
  apiHost = '';
  options: LoadOptions = {};
  readonly inApp: InApp = new InApp(this);
  private queue?: Queue;
  private calls: Call[] = []; // made before load()
  private held: Dict[] = []; // made before consent (memory only)
  private waiting = new Map<string, () => void>();
  private readyFns: Callback[] = [];
  private prefs: Dict | null = null;
  private auto?: Autocapture;
  private anon = new IdStore('ajs_anonymous_id');
  private uid = new IdStore('ajs_user_id');
  private gid = new IdStore('ajs_group_id');

  load(writeKey: string, options: LoadOptions = {}): this {
    if (this.queue) return this;
    let host = options.apiHost || scriptOrigin() || '';
    if (!host) throw new Error('kairos.load: give options.apiHost, the address of your Kairos server');
    if (!/^https?:\/\//.test(host)) host = `https://${host}`;
    this.apiHost = host.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.writeKey = writeKey;
    this.options = options;
    for (const s of [this.anon, this.uid, this.gid]) s.domain = options.cookieDomain;
    this.prefs = lsGet('kairos.consent') ? jsonGet('kairos.consent') : null;
    this.persistIds(this.allowed());
    // Before the queue: its pagehide listener must run after the dwell
    // event of the page being left is made, so that event goes too.
    if (options.autocapture) {
      this.auto = startAutocapture(this, options.autocapture === true ? {} : options.autocapture);
    }
    this.queue = new Queue({
      apiHost: this.apiHost,
      writeKey,
      flushAt: options.flushAt || 20,
      flushInterval: options.flushInterval ?? 1000,
      onDone: (ids) => ids.forEach((id) => this.waiting.get(id)?.()),
    });
    // Events left by an earlier page (offline, closed mid-send) go now:
    // only events that were allowed to go are ever queued.
    this.queue.flush();
    const calls = this.calls.splice(0);
    for (const [m, a, resolve] of calls) (this as any)[m](...a).then(resolve);
    this.readyFns.splice(0).forEach((fn) => fn());
    return this;
  }

  ready(fn: Callback) {
    if (this.queue) fn();
    else this.readyFns.push(fn);
  }

  page(...args: unknown[]) {
    return this.call('page', args, () => {
      const r = pageArgs(args);
      const props: Dict = { ...pageContext(), ...r.props };
      if (r.category) props.category = r.category;
      if (r.name) props.name = r.name;
      this.auto?.newPage();
      const e: Dict = { properties: props };
      if (r.name) e.name = r.name;
      if (r.category) e.category = r.category;
      return this.send('page', e, r);
    });
  }

  track(...args: unknown[]) {
    return this.call('track', args, () => {
      const r = trackArgs(args);
      return this.send('track', { event: r.event, properties: r.props }, r);
    });
  }

  identify(...args: unknown[]) {
    return this.call('identify', args, () => {
      const r = userArgs(args);
      if (r.id !== undefined) {
        // A different person on this browser: the previous traits are not theirs.
        if (this.uid.get() && r.id !== this.uid.get()) lsSet('ajs_user_traits', null);
        this.uid.set(r.id);
      }
      const traits = { ...jsonGet('ajs_user_traits'), ...r.props };
      if (this.allowed()) lsSet('ajs_user_traits', JSON.stringify(traits));
      return this.send('identify', { traits }, r);
    });
  }

  group(...args: unknown[]) {
    return this.call('group', args, () => {
      const r = userArgs(args);
      if (r.id !== undefined) this.gid.set(r.id);
      return this.send('group', { groupId: this.gid.get(), traits: r.props }, r);
    });
  }

  alias(...args: unknown[]) {
    return this.call('alias', args, () => {
      const r = aliasArgs(args);
      const previousId = r.from ?? (this.uid.get() || this.anonymousId());
      return this.send('alias', { userId: r.to, previousId }, r);
    });
  }

  /** Forget the person on this browser (log out): new anonymous id, no user or group. */
  reset() {
    return this.call('reset', [], async () => {
      this.uid.set(null);
      this.gid.set(null);
      lsSet('ajs_user_traits', null);
      this.anon.set(uuid());
      this.inApp.disconnect();
      return {};
    });
  }

  user() {
    return {
      id: () => this.uid.get(),
      anonymousId: (id?: string) => (id ? this.anon.set(id) : undefined, this.anonymousId()),
      traits: () => jsonGet('ajs_user_traits'),
    };
  }

  anonymousId(): string {
    let id = this.anon.get();
    if (!id) this.anon.set((id = uuid()));
    return id;
  }

  /**
   * Records the visitor's consent per category (`{analytics: true,
   * advertising: false}`): sent to Kairos as a `Consent Updated` event with
   * `context.consent.categoryPreferences` (what Kairos' contact policy
   * reads) and carried on every later event. With `requireConsent`, events
   * made before the first answer wait in memory: sent when analytics is
   * granted, dropped when it is denied.
   */
  consent(preferences: Dict) {
    return this.call('consent', [preferences], () => {
      this.prefs = { ...this.prefs, ...preferences };
      const allowed = this.allowed();
      this.persistIds(allowed);
      if (!allowed) lsSet('ajs_user_traits', null);
      lsSet('kairos.consent', JSON.stringify(this.prefs));
      const done = this.send('track', { event: 'Consent Updated', properties: {} }, { props: {}, options: {} }, true);
      // Held events wait for an answer about analytics itself.
      const held = this.choice() === undefined ? [] : this.held.splice(0);
      if (allowed) held.forEach((e) => this.queue!.push(e));
      return done;
    });
  }

  /** Sends what waits now instead of at the next batch. */
  flush() {
    return this.queue?.flush();
  }

  /** The next best actions for this visitor in `placement` (docs/decisions.md). */
  decide(placement: string, context?: Dict, options?: DecideOptions) {
    return decide(this, placement, context, options);
  }

  /** Fills `[data-kairos-placement]` slots with their top action (text only
   *  by default, or through `render`), reporting views and clicks. */
  slots(options: DecideOptions & { root?: ParentNode; render?: SlotRenderer } = {}) {
    if (!this.writeKey) return new Promise<void>((done) => this.ready(() => this.slots(options).then(done)));
    return fillSlots(this, options.root, options.render, options);
  }

  /** Items recommended for this visitor (docs/recommendations.md). */
  recommend(options?: RecommendOptions) {
    return recommend(this, options);
  }

  /** Fills `[data-kairos-recommendations]` widgets with links to their
   *  items (or through `render`), reporting clicks as `Product Clicked`. */
  recommendations(options: RecommendOptions & { root?: ParentNode; render?: WidgetRenderer } = {}) {
    if (!this.writeKey) {
      return new Promise<void>((done) => this.ready(() => this.recommendations(options).then(done)));
    }
    return fillWidgets(this, options.root, options.render, options);
  }

  /** Analytics events may be sent (and ids stored) now. */
  allowed(): boolean {
    const choice = this.choice();
    return choice === true || (!this.options.requireConsent && choice !== false);
  }

  /** The visitor's answer for analytics: true, false, or undefined (none yet). */
  private choice(): boolean | undefined {
    const key = this.prefs && Object.keys(this.prefs).find((k) => k.toLowerCase() === ANALYTICS);
    return key ? this.prefs![key] === true : undefined;
  }

  /** Before consent (or after a denial) ids live in memory only; on grant
   *  the ids in use are written to the cookie and localStorage. */
  private persistIds(allowed: boolean) {
    for (const s of [this.anon, this.uid, this.gid]) s.setPersist(allowed);
  }

  private call(name: string, args: unknown[], run: () => Promise<Dict>): Promise<Dict> {
    if (this.queue) return run();
    return new Promise((resolve) => this.calls.push([name, args, resolve]));
  }

  /** Builds the event (its messageId fixed now, for dedup across retries and
   *  reloads) and queues it, holds it for consent, or drops it. */
  private send(type: string, fields: Dict, r: Resolved, always = false): Promise<Dict> {
    const o = r.options;
    const context: Dict = {
      library: { name: 'kairos.js', version: VERSION },
      page: pageContext(),
      userAgent: navigator.userAgent,
      locale: navigator.language,
      timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      screen: { width: screen.width, height: screen.height },
      ...(isObj(o.context) ? o.context : {}),
    };
    if (this.prefs) context.consent = { categoryPreferences: { ...this.prefs } };
    const e: Dict = {
      type,
      messageId: o.messageId || `kairos-${uuid()}`,
      timestamp: o.timestamp ? new Date(o.timestamp).toISOString() : nowIso(),
      anonymousId: o.anonymousId || this.anonymousId(),
      ...fields,
      context,
      integrations: isObj(o.integrations) ? o.integrations : {},
    };
    const uid = this.uid.get();
    if (uid && !e.userId) e.userId = uid;
    return new Promise((resolve) => {
      const done = () => {
        this.waiting.delete(e.messageId);
        r.cb?.(e);
        resolve(e);
      };
      this.waiting.set(e.messageId, done);
      setTimeout(done, CALLBACK_TIMEOUT_MS);
      if (always || this.allowed()) this.queue!.push(e);
      else if (this.choice() === undefined) this.held.push(e);
      // else: analytics denied, the event is dropped.
    });
  }
}

function pageContext(): Dict {
  return {
    path: location.pathname,
    referrer: document.referrer,
    search: location.search,
    title: document.title,
    url: location.href,
  };
}

/** Origin of the `<script src=".../sdk/kairos.js">` that loaded the SDK. */
let loadedFrom = '';
try {
  const src = (document.currentScript as HTMLScriptElement | null)?.src;
  if (src) loadedFrom = new URL(src).origin;
} catch {
  /* not loaded by a script tag */
}
const scriptOrigin = () => loadedFrom;

