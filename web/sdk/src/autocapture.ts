// Opt-in automatic events (load option `autocapture`), named after
// Segment's spec where one fits:
//   clicks       `Element Clicked` (or the `data-kairos-track` value) for
//                elements with data-kairos-track, links and buttons
//   scroll       `Scroll Depth Reached` {depth: 25|50|75|100} once per page
//   dwell        `Page Dwell` {dwell_ms} visible time, sent when the page is hidden
//   impressions  `Product Viewed` / `Product List Viewed` for
//                [data-kairos-product] elements half in view, once per page

import type { Kairos } from './kairos';
import { Dict, on } from './util';

export interface AutocaptureOptions {
  clicks?: boolean;
  scroll?: boolean;
  dwell?: boolean;
  impressions?: boolean;
}

export interface Autocapture {
  /** A new page (SPA navigation via `page()`): milestones and impressions start over. */
  newPage(): void;
}

const SCROLL_MILESTONES = [25, 50, 75, 100];
/** Impressions seen within this window go out as one `Product List Viewed`. */
const IMPRESSION_BATCH_MS = 500;
/** Visible share of a product element that counts as seen (IAB's 50 %). */
const IMPRESSION_THRESHOLD = 0.5;
/** Link and button texts are cut to this length (no page text dumps). */
const TEXT_MAX = 100;

export function startAutocapture(k: Kairos, opts: AutocaptureOptions): Autocapture {
  const all = !Object.keys(opts).length;
  const want = (f: keyof AutocaptureOptions) => all || !!opts[f];
  let reached = 0;
  let seen = new WeakSet<Element>();
  let visibleSince = document.visibilityState === 'visible' ? Date.now() : 0;
  let dwell = 0;

  if (want('clicks')) {
    on(document, 'click', (ev: MouseEvent) => {
      const el = (ev.target as Element | null)?.closest?.('[data-kairos-track],a,button,[role=button]');
      if (!el || el.closest('[data-kairos-ui]')) return; // the SDK's own in-app UI reports itself
      const props: Dict = { tag: el.tagName.toLowerCase(), text: (el.textContent || '').trim().slice(0, TEXT_MAX) };
      const href = (el as HTMLAnchorElement).href;
      if (href) props.href = href;
      if (el.id) props.id = el.id;
      for (const a of Array.from(el.attributes)) {
        if (a.name.startsWith('data-kairos-prop-')) props[a.name.slice(17)] = a.value;
      }
      k.track(el.getAttribute('data-kairos-track') || 'Element Clicked', props);
    }, true);
  }

  if (want('scroll')) {
    let planned = false;
    on(window, 'scroll', () => {
      if (planned) return;
      planned = true;
      setTimeout(() => {
        planned = false;
        const d = document.documentElement;
        const pct = ((scrollY + innerHeight) / Math.max(d.scrollHeight, 1)) * 100;
        for (const m of SCROLL_MILESTONES) {
          if (m > reached && pct >= m - 1) {
            reached = m;
            k.track('Scroll Depth Reached', { depth: m, path: location.pathname });
          }
        }
      }, 100);
    }, { passive: true });
  }

  if (want('dwell')) {
    const report = () => {
      if (visibleSince) dwell += Date.now() - visibleSince;
      visibleSince = 0;
      if (dwell > 0) k.track('Page Dwell', { dwell_ms: dwell, path: location.pathname });
      dwell = 0;
    };
    on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') report();
      else visibleSince = Date.now();
    });
    on(window, 'pagehide', report);
  }

  let observe = (_: Element) => {};
  if (want('impressions') && 'IntersectionObserver' in window) {
    let batch: Element[] = [];
    const send = () => {
      const els = batch;
      batch = [];
      const list = els[0].closest('[data-kairos-list]');
      if (els.length === 1 && !list) return k.track('Product Viewed', product(els[0]));
      k.track('Product List Viewed', {
        ...(list ? { list_id: list.getAttribute('data-kairos-list') } : {}),
        products: els.map((el, i) => ({ ...product(el), position: i + 1 })),
      });
    };
    const io = new IntersectionObserver((entries) => {
      for (const en of entries) {
        if (!en.isIntersecting || seen.has(en.target)) continue;
        seen.add(en.target);
        if (!batch.length) setTimeout(send, IMPRESSION_BATCH_MS);
        batch.push(en.target);
      }
    }, { threshold: IMPRESSION_THRESHOLD });
    observe = (el) => io.observe(el);
    const scan = () => document.querySelectorAll('[data-kairos-product]').forEach(observe);
    scan();
    // Products rendered later (infinite lists, SPAs) are observed too.
    new MutationObserver(scan).observe(document.documentElement, { childList: true, subtree: true });
  }

  return {
    newPage() {
      reached = 0;
      seen = new WeakSet();
    },
  };
}

/** Segment's product fields from `data-kairos-product="sku"` and
 *  `data-kairos-product-name|price|category|brand|variant` attributes. */
function product(el: Element): Dict {
  const p: Dict = { product_id: el.getAttribute('data-kairos-product') };
  for (const f of ['name', 'price', 'category', 'brand', 'variant']) {
    const v = el.getAttribute(`data-kairos-product-${f}`);
    if (v !== null) p[f] = f === 'price' && v !== '' && !isNaN(+v) ? +v : v;
  }
  return p;
}
