// In-app messages in real time over Kairos' SSE channel
// (GET /v1/in-app/stream, docs/journeys.md "In-app"). A journey's `send` to
// an `in_app` destination arrives as an SSE `message` whose JSON is
// {type: "journey.message", data: {message_id, journey, content, ...}}.
// Shown by the default component below or handed to `onMessage` callbacks;
// `Message Viewed`, `Message Clicked` and `Message Dismissed` are tracked
// with the message and journey ids.

import type { Kairos } from './kairos';
import { Dict, on, warn } from './util';

export interface InAppMessage {
  id: string;
  journey?: { id: string; name: string };
  /** The rendered message: whatever the journey's `message` holds
   *  (the default component shows `title`, `body`, and `button` + `url`). */
  content: Dict;
  /** Report what the visitor did (a custom renderer calls these). */
  viewed(): void;
  clicked(): void;
  dismissed(): void;
}

export interface ConnectOptions {
  /** Identity token minted by the site's backend for `identifier`
   *  (hex HMAC-SHA256 of it under the source's identity secret). */
  token?: string;
  /** `{type}:{value}`; default `user_id:<id>` with a token, else `anonymous_id:<id>`. */
  identifier?: string;
}

/** Most message ids remembered so a reconnect never shows one twice. */
const SEEN_MAX = 200;

export class InApp {
  private es?: EventSource;
  private handlers: ((m: InAppMessage) => void)[] = [];
  private seen: string[] = [];

  constructor(private k: Kairos) {}

  /** Opens the stream (after `load`); messages render by default unless a
   *  handler was registered with `onMessage`. */
  connect(o: ConnectOptions = {}): void {
    const k = this.k;
    if (!k.writeKey) return k.ready(() => this.connect(o)); // before load: once loaded
    this.disconnect();
    const identifier = o.identifier ||
      (o.token && k.user().id() ? `user_id:${k.user().id()}` : `anonymous_id:${k.anonymousId()}`);
    const q = new URLSearchParams({ identifier, writeKey: k.writeKey });
    if (o.token) q.set('token', o.token);
    const es = (this.es = new EventSource(`${k.apiHost}/v1/in-app/stream?${q}`));
    on(es, 'message', (ev: MessageEvent) => this.receive(ev.data));
    // EventSource reconnects by itself after a network error; a refusal
    // (403: wrong identity token) closes it for good: say so.
    on(es, 'error', () => es.readyState === EventSource.CLOSED &&
      warn(`in-app stream for ${identifier} refused: check the write key and the identity token`));
  }

  disconnect() {
    this.es?.close();
    this.es = undefined;
  }

  /** Custom rendering: `fn` gets every message instead of the default component. */
  onMessage(fn: (m: InAppMessage) => void) {
    this.handlers.push(fn);
  }

  private receive(raw: string) {
    let payload: Dict;
    try {
      payload = JSON.parse(raw);
    } catch {
      return;
    }
    const data = payload.data || {};
    const id = String(data.message_id || '');
    if (this.seen.includes(id)) return;
    this.seen = [...this.seen, id].slice(-SEEN_MAX);
    const props = { message_id: id, journey_id: data.journey?.id, journey_name: data.journey?.name };
    const once: Dict = {};
    // A message a journey decided (`decide` step) also reports the offer's
    // response, with its decision id (docs/decisions.md).
    const decision = data.decision;
    const report = (what: string) => () => {
      if (!once[what]) {
        this.k.track(`Message ${what}`, props);
        if (decision?.decision_id) {
          this.k.track(`Offer ${what}`, { decision_id: decision.decision_id, offer: decision.offer,
                                          placement: decision.placement });
        }
      }
      once[what] = 1;
    };
    const m: InAppMessage = {
      id,
      journey: data.journey,
      content: data.content || {},
      viewed: report('Viewed'),
      clicked: report('Clicked'),
      dismissed: report('Dismissed'),
    };
    if (this.handlers.length) this.handlers.forEach((fn) => fn(m));
    else render(m);
  }
}

let count = 0;

/** The default component: a non-modal dialog at the bottom right that
 *  does not take focus from the page; text only (content is rendered from
 *  profile data, so it is never parsed as HTML); Escape or the close
 *  button dismisses it. */
function render(m: InAppMessage) {
  const c = m.content;
  const n = ++count;
  const box = document.createElement('div');
  box.setAttribute('role', 'dialog');
  box.setAttribute('aria-live', 'polite');
  box.setAttribute('data-kairos-ui', 'in-app');
  box.setAttribute('data-kairos-message', m.id);
  box.style.cssText = 'position:fixed;right:16px;bottom:16px;max-width:320px;z-index:2147483647;background:#fff;' +
    'color:#111;border:1px solid #888;border-radius:8px;padding:16px 40px 16px 16px;' +
    'box-shadow:0 4px 16px rgba(0,0,0,.2);font:15px/1.4 system-ui,sans-serif';
  const el = (tag: string, text: string, css = '') => {
    const e = document.createElement(tag);
    e.textContent = text;
    e.style.cssText = css;
    box.appendChild(e);
    return e;
  };
  if (c.title) {
    el('strong', String(c.title), 'display:block;margin-bottom:4px').id = `kairos-msg-${n}-t`;
    box.setAttribute('aria-labelledby', `kairos-msg-${n}-t`);
  } else box.setAttribute('aria-label', 'Message');
  if (c.body) el('p', String(c.body), 'margin:0').id = `kairos-msg-${n}-b`;
  if (c.body) box.setAttribute('aria-describedby', `kairos-msg-${n}-b`);
  const close = () => {
    box.remove();
    document.removeEventListener('keydown', onKey);
  };
  if (c.button || c.url) {
    const a = el('a', String(c.button || 'Open'), 'display:inline-block;margin-top:8px;color:#0645ad') as HTMLAnchorElement;
    if (c.url && /^(https?:|\/)/.test(String(c.url))) a.href = String(c.url);
    on(a, 'click', () => {
      m.clicked();
      close();
    });
  }
  const x = el('button', '×', 'position:absolute;top:8px;right:8px;border:0;background:none;font-size:20px;cursor:pointer;color:#111');
  x.setAttribute('aria-label', 'Close');
  (x as HTMLButtonElement).type = 'button';
  const dismiss = () => {
    m.dismissed();
    close();
  };
  on(x, 'click', dismiss);
  const onKey = (e: KeyboardEvent) => e.key === 'Escape' && dismiss();
  on(document, 'keydown', onKey);
  document.body.appendChild(box);
  m.viewed();
}
