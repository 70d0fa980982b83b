// Next-best-action decisions (docs/decisions.md, docs/sdk.md "Decisions"):
// `kairos.decide(placement)` asks Kairos (POST /v1/in-app/decide with the
// write key; as the visitor's anonymous id, or as the signed-in person with
// the identity token the site's backend minted), and slots
// `<div data-kairos-placement="home_hero">` are filled with the top
// action's content without a reload. What the visitor does with it is
// reported with the decision's id: `Offer Viewed` once half of the slot is
// on screen, `Offer Clicked`, `Offer Dismissed` — the responses Kairos'
// adaptive propensities learn from.

import type { Kairos } from './kairos';
import { Dict, isObj, isStr, on, warn } from './util';

export interface Action {
  offer: string;
  offer_id: string;
  rank: number;
  score: number;
  content: unknown;
}

export interface Decision {
  decision_id: string;
  placement: string;
  actions: Action[];
}

export interface DecideOptions {
  /** Actions wanted (default 1). */
  limit?: number;
  /** Identity token for a signed-in visitor (see inApp.connect). */
  token?: string;
  /** `{type}:{value}`; default `user_id:<id>` with a token, else `anonymous_id:<id>`. */
  identifier?: string;
}

/** One decision request. */
export async function decide(
  k: Kairos,
  placement: string,
  context: Dict = {},
  o: DecideOptions = {},
): Promise<Decision> {
  if (!k.writeKey) throw new Error('kairos.decide: call kairos.load(writeKey) first');
  const profile = o.identifier ||
    (o.token && k.user().id() ? `user_id:${k.user().id()}` : `anonymous_id:${k.anonymousId()}`);
  const body: Dict = { profile, placement, context, limit: o.limit || 1 };
  if (o.token) body.token = o.token;
  const r = await fetch(`${k.apiHost}/v1/in-app/decide?writeKey=${encodeURIComponent(k.writeKey)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`kairos.decide(${JSON.stringify(placement)}): ${answer.detail || r.status}`);
  return answer as Decision;
}

export type SlotRenderer = (el: HTMLElement, action: Action, decision: Decision) => void;

/** Fills every `[data-kairos-placement]` slot under `root` with its top
 *  action, reporting impressions and clicks; a slot with no action keeps
 *  what the page put in it. */
export async function fillSlots(
  k: Kairos,
  root: ParentNode = document,
  render?: SlotRenderer,
  o: DecideOptions = {},
): Promise<void> {
  const slots = Array.from(root.querySelectorAll<HTMLElement>('[data-kairos-placement]'));
  await Promise.all(slots.map(async (el) => {
    const placement = el.dataset.kairosPlacement || '';
    try {
      const decision = await decide(k, placement, { page: location.pathname }, o);
      const action = decision.actions[0];
      if (!action) return;
      (render || renderDefault)(el, action, decision);
      el.dataset.kairosDecision = decision.decision_id;
      el.dataset.kairosOffer = action.offer;
      report(k, el, decision, action);
    } catch (e) {
      warn(String(e));
    }
  }));
}

const respond = (k: Kairos, event: string, d: Decision, a: Action) =>
  k.track(event, { decision_id: d.decision_id, offer: a.offer, placement: d.placement });

/** `Offer Viewed` once half the slot is visible; `Offer Clicked` on a
 *  click; `Offer Dismissed` from an element with `data-kairos-dismiss`. */
function report(k: Kairos, el: HTMLElement, d: Decision, a: Action) {
  let viewed = false;
  const view = () => {
    if (!viewed) {
      viewed = true;
      respond(k, 'Offer Viewed', d, a);
    }
  };
  if (typeof IntersectionObserver === 'function') {
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        io.disconnect();
        view();
      }
    }, { threshold: 0.5 });
    io.observe(el);
  } else view();
  on(el, 'click', (e: Event) => {
    const dismiss = (e.target as Element | null)?.closest?.('[data-kairos-dismiss]');
    view();
    if (dismiss) {
      respond(k, 'Offer Dismissed', d, a);
      el.hidden = true;
    } else respond(k, 'Offer Clicked', d, a);
  });
}

/** Text only (never parsed as HTML): a string, or `title`, `body`, and a
 *  link `cta` → `url`. */
function renderDefault(el: HTMLElement, a: Action) {
  const c = a.content;
  el.textContent = '';
  if (isStr(c)) {
    el.textContent = c;
    return;
  }
  if (!isObj(c)) return;
  const add = (tag: string, text: unknown, cls: string) => {
    if (!isStr(text)) return;
    const node = document.createElement(tag);
    node.className = `kairos-offer-${cls}`;
    node.textContent = text;
    el.appendChild(node);
    return node;
  };
  add('strong', c.title, 'title');
  add('p', c.body, 'body');
  const cta = add('a', c.cta, 'cta') as HTMLAnchorElement | undefined;
  if (cta && isStr(c.url) && /^(https?:|\/)/.test(c.url)) cta.href = c.url;
}
