// Recommendations (docs/recommendations.md, docs/sdk.md "Recommendations"):
// `kairos.recommend({strategy, limit, contextItem})` asks Kairos (GET
// /v1/in-app/recommendations with the write key; as the visitor's anonymous
// id, or as the signed-in person with their identity token), and widgets
// `<div data-kairos-recommendations="next" data-kairos-context-item="sku-1">`
// are filled with links to the items — text and attributes only, never
// HTML. A click is reported as `Product Clicked`, which Kairos learns from
// like any view.

import type { Kairos } from './kairos';
import { Dict, isStr, on, warn } from './util';

export interface Recommended {
  id: string;
  name?: string;
  category?: string;
  price?: number;
  image_url?: string;
  url?: string;
  score: number;
  /** Why, in a sentence. */
  reason: string;
}

export interface RecommendOptions {
  /** auto (default), next, viewed_together, bought_together, recently_viewed,
   *  buy_again, popular, trending. */
  strategy?: string;
  limit?: number;
  /** The item on the page (never recommended; what goes with it is). */
  contextItem?: string;
  /** Comma-separated categories to keep. */
  category?: string;
  /** Identity token for a signed-in visitor (see inApp.connect). */
  token?: string;
  /** `{type}:{value}`; default `user_id:<id>` with a token, else `anonymous_id:<id>`. */
  identifier?: string;
}

/** One recommendations request. */
export async function recommend(k: Kairos, o: RecommendOptions = {}): Promise<Recommended[]> {
  if (!k.writeKey) throw new Error('kairos.recommend: call kairos.load(writeKey) first');
  const identifier = o.identifier ||
    (o.token && k.user().id() ? `user_id:${k.user().id()}` : `anonymous_id:${k.anonymousId()}`);
  const q: Dict = { writeKey: k.writeKey, identifier, strategy: o.strategy, limit: o.limit,
    context_item: o.contextItem, category: o.category, token: o.token };
  const query = Object.keys(q).filter((key) => q[key] != null && q[key] !== '')
    .map((key) => `${key}=${encodeURIComponent(q[key])}`).join('&');
  const r = await fetch(`${k.apiHost}/v1/in-app/recommendations?${query}`);
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`kairos.recommend: ${answer.detail || r.status}`);
  return answer.items || [];
}

export type WidgetRenderer = (el: HTMLElement, items: Recommended[]) => void;

/** Fills every `[data-kairos-recommendations]` widget under `root`; a
 *  widget with no items keeps what the page put in it. */
export async function fillWidgets(
  k: Kairos,
  root: ParentNode = document,
  render?: WidgetRenderer,
  o: RecommendOptions = {},
): Promise<void> {
  const widgets = Array.from(root.querySelectorAll<HTMLElement>('[data-kairos-recommendations]'));
  await Promise.all(widgets.map(async (el) => {
    const d = el.dataset;
    const strategy = d.kairosRecommendations || 'auto';
    try {
      const items = await recommend(k, { ...o, strategy, limit: Number(d.kairosLimit) || 4,
        contextItem: d.kairosContextItem, category: d.kairosCategory });
      if (!items.length) return;
      (render || renderList)(el, items);
      on(el, 'click', (e: Event) => {
        const link = (e.target as Element | null)?.closest?.('[data-kairos-item]') as HTMLElement | null;
        const position = Number(link?.dataset.kairosPosition);
        const item = items[position];
        if (item) {
          k.track('Product Clicked', { product_id: item.id, name: item.name, category: item.category,
            price: item.price, position: position + 1, list_id: `kairos:${strategy}` });
        }
      });
    } catch (e) {
      warn(String(e));
    }
  }));
}

const safe = (url: unknown) => isStr(url) && /^(https?:|\/)/.test(url);

/** A list of links: image, name, price (classes `kairos-recs`,
 *  `kairos-rec-name`, `kairos-rec-price`). */
function renderList(el: HTMLElement, items: Recommended[]) {
  const list = document.createElement('ul');
  list.className = 'kairos-recs';
  items.forEach((item, position) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.dataset.kairosItem = item.id;
    a.dataset.kairosPosition = String(position);
    if (safe(item.url)) a.href = item.url!;
    if (safe(item.image_url)) {
      const img = document.createElement('img');
      img.src = item.image_url!;
      img.alt = '';
      a.appendChild(img);
    }
    const name = document.createElement('span');
    name.className = 'kairos-rec-name';
    name.textContent = item.name || item.id;
    a.appendChild(name);
    if (typeof item.price === 'number') {
      const price = document.createElement('span');
      price.className = 'kairos-rec-price';
      price.textContent = item.price.toFixed(2);
      a.appendChild(price);
    }
    li.appendChild(a);
    list.appendChild(li);
  });
  el.textContent = '';
  el.appendChild(list);
}
