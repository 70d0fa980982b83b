// The demo store (/demo/): browse, search, cart, checkout and log in,
// instrumented only through the Kairos SDK (/sdk/kairos.js, autocapture
// on), with a side panel showing what Kairos knows about this visitor —
// read from the public profile API with the console's session, so it
// shows only when the console is logged in in this browser.
import { find, PRODUCTS, Product, search } from './catalog';
import { h, identities, replace } from '../console/dom';

declare const kairos: any;

/** The side panel re-reads the profile this often... */
const PANEL_REFRESH_MS = 1000;
/** ...and this often while the console is not logged in (each try is a 401). */
const PANEL_LOGGED_OUT_MS = 5000;
/** Events listed in the panel. */
const PANEL_EVENTS = 15;

interface Line { sku: string; qty: number }
const CART_KEY = 'demo.cart';
const CART_ID_KEY = 'demo.cart_id';

const cart = {
  lines(): Line[] { try { return JSON.parse(localStorage.getItem(CART_KEY) || '[]'); } catch (e) { return []; } },
  save(lines: Line[]) { localStorage.setItem(CART_KEY, JSON.stringify(lines)); renderCartCount(); },
  id(): string {
    let id = localStorage.getItem(CART_ID_KEY);
    if (!id) { id = `cart-${Math.random().toString(36).slice(2, 10)}`; localStorage.setItem(CART_ID_KEY, id); }
    return id;
  },
  clear() { localStorage.removeItem(CART_KEY); localStorage.removeItem(CART_ID_KEY); renderCartCount(); },
  total(): number { return this.lines().reduce((sum, l) => sum + (find(l.sku)?.price || 0) * l.qty, 0); },
};

const money = (n: number) => `$${n.toFixed(2)}`;
const main = document.getElementById('store')!;
const panel = document.getElementById('panel-body')!;

function productCard(p: Product, position: number): HTMLElement {
  return h('li', { class: 'card', 'data-kairos-product': p.sku, 'data-kairos-product-name': p.name,
    'data-kairos-product-price': p.price, 'data-kairos-product-category': p.category, 'data-kairos-product-position': position },
  h('a', { href: `#product/${p.sku}` }, h('span', { class: `swatch ${p.category.toLowerCase()}`, 'aria-hidden': 'true' }, p.category[0]), h('strong', {}, p.name)),
  h('span', { class: 'price' }, money(p.price)),
  h('button', { type: 'button', 'data-add': p.sku, 'aria-label': `Add to cart: ${p.name}` }, 'Add to cart'));
}

function add(sku: string): void {
  const p = find(sku)!;
  const lines = cart.lines();
  const line = lines.find((l) => l.sku === sku);
  if (line) line.qty += 1; else lines.push({ sku, qty: 1 });
  cart.save(lines);
  kairos.track('Product Added', { cart_id: cart.id(), product_id: p.sku, sku: p.sku, name: p.name, category: p.category, price: p.price, quantity: 1 },
    {}, refreshOffer);
  kairos.flush();
  say(`${p.name} added to your cart.`);
}

/** The "Picked for you" slot: Kairos decides again once the event that
 *  may change the answer is acknowledged (a decision reflects every
 *  acknowledged event; the callback runs at the acknowledgement, or after
 *  300 ms — so once more a second later). */
function refreshOffer(): void {
  kairos.slots();
  setTimeout(() => kairos.slots(), 1000);
}

function say(text: string): void { document.getElementById('announce')!.textContent = text; }

function renderCartCount(): void {
  const n = cart.lines().reduce((sum, l) => sum + l.qty, 0);
  document.getElementById('cart-count')!.textContent = String(n);
}

function home(query = ''): void {
  const list = query ? search(query) : PRODUCTS;
  const input = h('input', { id: 'q', name: 'q', type: 'search', value: query }) as HTMLInputElement;
  const form = h('form', { role: 'search', 'aria-label': 'Products' }, h('label', { for: 'q' }, 'Search products'), input, h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#search/${encodeURIComponent(input.value.trim())}`; });
  replace(main, h('h1', {}, query ? `Results for “${query}”` : 'Outdoor gear'), form,
    h('p', {}, `${list.length} products`),
    h('ul', { class: 'grid', 'data-kairos-list': query ? 'search' : 'home' }, list.map(productCard)));
  if (query) kairos.track('Products Searched', { query, results: list.length });
}

function product(sku: string): void {
  const p = find(sku);
  if (!p) return home();
  // Once the view is acknowledged, the slots and the widget reflect it.
  kairos.track('Product Viewed', { product_id: p.sku, sku: p.sku, name: p.name, category: p.category, price: p.price },
    {}, () => { refreshOffer(); kairos.recommendations({ root: main }); });
  replace(main, h('p', {}, h('a', { href: '#' }, '← All products')), h('h1', {}, p.name),
    h('div', { class: 'product' }, h('span', { class: `swatch big ${p.category.toLowerCase()}`, 'aria-hidden': 'true' }, p.category[0]),
      h('div', {}, h('p', { class: 'price' }, money(p.price)), h('p', {}, `${p.category} in ${p.color}. Built for the trail, fine in town.`),
        h('button', { type: 'button', 'data-add': p.sku, id: 'add' }, 'Add to cart'))),
    // Filled by the SDK (docs/sdk.md, "Recommendations"): links to what
    // earlier visitors of this product viewed in the same session.
    h('section', { class: 'also', 'aria-label': 'Customers who viewed this also viewed' },
      h('h2', {}, 'Customers who viewed this also viewed'),
      h('div', { 'data-kairos-recommendations': 'viewed_together', 'data-kairos-context-item': p.sku, 'data-kairos-limit': '4' },
        h('p', {}, 'Nothing yet.'))));
}

function cartPage(): void {
  const lines = cart.lines();
  kairos.track('Cart Viewed', { cart_id: cart.id(), products: lines.length });
  replace(main, h('h1', {}, 'Your cart'),
    lines.length ? h('table', {}, h('caption', {}, 'Items in your cart'),
      h('thead', {}, h('tr', {}, ['Product', 'Quantity', 'Price'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, lines.map((l) => { const p = find(l.sku)!; return h('tr', {}, h('td', {}, p.name), h('td', {}, String(l.qty)), h('td', {}, money(p.price * l.qty))); }))) : h('p', {}, 'Your cart is empty.'),
    h('p', { class: 'price' }, `Total ${money(cart.total())}`),
    lines.length ? h('button', { type: 'button', id: 'checkout', onclick: checkout }, 'Check out') : null);
}

function checkout(): void {
  const lines = cart.lines();
  const orderId = `order-${Math.random().toString(36).slice(2, 10)}`;
  kairos.track('Order Completed', { order_id: orderId, cart_id: cart.id(), revenue: Math.round(cart.total() * 100) / 100, currency: 'USD',
    products: lines.map((l) => ({ product_id: l.sku, quantity: l.qty, price: find(l.sku)!.price })) });
  cart.clear();
  replace(main, h('h1', {}, 'Thank you!'), h('p', { role: 'status' }, `Order ${orderId} is confirmed.`), h('p', {}, h('a', { href: '#' }, 'Keep shopping')));
}

function loginPage(): void {
  const email = h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'email', required: true }) as HTMLInputElement;
  const name = h('input', { id: 'name', name: 'name', autocomplete: 'name' }) as HTMLInputElement;
  const form = h('form', { 'aria-labelledby': 'login-title' }, h('h1', { id: 'login-title' }, 'Log in'),
    h('p', {}, 'A demo login: no password, your email becomes your user id.'),
    h('label', { for: 'email' }, 'Email'), email, h('label', { for: 'name' }, 'Name'), name, h('button', { type: 'submit' }, 'Log in'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const address = email.value.trim().toLowerCase();
    kairos.identify(address, { email: address, name: name.value.trim() || undefined });
    say(`Logged in as ${address}.`);
    location.hash = '#';
  });
  replace(main, form);
}

function route(): void {
  const [page, arg = ''] = location.hash.slice(1).split('/');
  if (page === 'product') product(arg);
  else if (page === 'cart') cartPage();
  else if (page === 'login') loginPage();
  else if (page === 'search') home(decodeURIComponent(arg));
  else home();
  if (location.hash) kairos.page(page || 'Home');
}

// --- the side panel: what Kairos does for this visitor ---------------------

let seenAudiences: string[] | null = null;

/** Reads the profile, then schedules the next read. */
async function refreshPanel(): Promise<void> {
  const loggedIn = await readPanel();
  window.setTimeout(refreshPanel, loggedIn ? PANEL_REFRESH_MS : PANEL_LOGGED_OUT_MS);
}

/** Shows what Kairos knows; false when the console's session is missing. */
async function readPanel(): Promise<boolean> {
  try {
    const user = kairos.user();
    const id = user.id() ? `user_id:${user.id()}` : `anonymous_id:${user.anonymousId()}`;
    const res = await fetch(`/v1/profiles/${encodeURIComponent(id)}`, { credentials: 'same-origin' });
    if (res.status === 401) {
      replace(panel, h('p', {}, 'Log in to the ', h('a', { href: '/', target: '_blank', rel: 'noopener' }, 'Kairos console'),
        ' in this browser (with the admin token) to watch your profile form here as you click.'));
      return false;
    }
    if (res.status === 404) { replace(panel, h('p', { id: 'panel-state' }, `No profile yet for ${id}: click around.`)); return true; }
    const p = await res.json();
    const events = await (await fetch(`/v1/profiles/${encodeURIComponent(id)}/events?limit=${PANEL_EVENTS}`, { credentials: 'same-origin' })).json();
    const entered = seenAudiences ? (p.audiences || []).filter((a: string) => !seenAudiences!.includes(a)) : [];
    seenAudiences = p.audiences || [];
    if (entered.length) say(`You entered the audience ${entered.join(', ')}.`);
    replace(panel,
      h('p', { id: 'panel-state' }, `Profile ${p.id}: ${p.event_count} events`),
      h('h3', {}, 'Identities'), h('p', {}, identities(p.identities)),
      h('h3', {}, 'Audiences'), h('ul', { id: 'panel-audiences' }, (p.audiences || []).map((a: string) => h('li', { class: entered.includes(a) ? 'new' : '' }, a))),
      h('h3', {}, 'Computed values and scores'),
      h('ul', { id: 'panel-values' }, Object.entries({ ...(p.computed || {}), ...(p.scores || {}) }).map(([k, v]) => h('li', {}, `${k}: ${shown(v)}`))),
      h('h3', {}, 'Traits'), h('ul', {}, Object.entries(p.traits || {}).map(([k, v]) => h('li', {}, `${k}: ${JSON.stringify(v)}`))),
      h('h3', {}, 'Latest events'), h('ol', { id: 'panel-events' }, (events.events || []).map((e: any) => h('li', {}, e.event || e.name || e.type))),
      h('p', { class: 'help' }, 'Leave an item in your cart for 15 seconds: the “demo: abandoned cart” journey sends you an in-app nudge.'));
  } catch (e) {
    replace(panel, h('p', {}, `The panel could not read your profile: ${String(e)}`));
  }
  return true;
}

/** Numbers to two decimals (a score of 0.5744… reads 0.57). */
function shown(value: unknown): string {
  return typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(2) : JSON.stringify(value);
}

// --- start ------------------------------------------------------------------

document.addEventListener('click', (ev) => {
  const button = (ev.target as Element).closest('[data-add]');
  if (button) add(button.getAttribute('data-add')!);
});

async function start(): Promise<void> {
  const res = await fetch('/demo/config.json');
  const config = await res.json();
  if (!res.ok) { replace(main, h('h1', {}, 'Demo store unavailable'), h('p', { class: 'error' }, config.detail || 'no demo source')); return; }
  kairos.load(config.write_key, { apiHost: location.origin, autocapture: true, flushInterval: 200 });
  kairos.inApp.connect();
  kairos.slots();
  renderCartCount();
  window.addEventListener('hashchange', route);
  route();
  kairos.page('Home');
  refreshPanel();
}

start();
