// A tiny element builder: the console renders with the DOM directly
// (no framework to ship or audit). Text is always set as text, never
// parsed as HTML: profile data is untrusted.

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

export function replace(el: Element, ...children: Child[]): void {
  el.textContent = '';
  append(el, children);
}

/** A table with a caption (for screen readers) and header cells. */
export function table(caption: string, headers: string[], rows: Child[][]): HTMLElement {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, row.map((cell) => h('td', {}, cell))))));
}

/** JSON shown as preformatted text. */
export function json(value: unknown): HTMLElement {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** An identity list as `type:value` strings, whatever shape the API used. */
export function identities(list: unknown): string {
  if (!Array.isArray(list)) return '';
  return list.map((x: any) => (typeof x === 'string' ? x : `${x.type}:${x.value}`)).join(', ');
}

/** A status line announced to screen readers. */
export function status(text = ''): HTMLElement {
  return h('p', { role: 'status', class: 'status' }, text);
}
