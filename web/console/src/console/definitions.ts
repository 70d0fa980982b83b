// Audience and computed-trait editors: the definition is previewed as it
// is typed (POST .../preview: size and first members now, nothing saved),
// errors shown at their line and column, then saved (POST) and its live
// members (or values) shown, refreshed while open.
import { api, ApiError, errorText } from './api';
import { h, identities, replace, status, table } from './dom';
import type { Page } from './main';

/** Wait after the last keystroke before previewing (a preview reads the whole log). */
const PREVIEW_DEBOUNCE_MS = 400;
/** Members / values re-read this often while a definition is open. */
const MEMBERS_REFRESH_MS = 1000;

type Kind = 'audiences' | 'computed-traits';
let timer: number | undefined;

export function definitionsPage(kind: Kind): Page {
  const audience = kind === 'audiences';
  const noun = audience ? 'audience' : 'computed trait';
  return {
    title: audience ? 'Audiences' : 'Computed traits',
    render(main, arg) {
      if (arg) return detail(main, kind, noun, arg);
      editor(main, kind, noun);
    },
    leave() { window.clearTimeout(timer); },
  };
}

async function editor(main: HTMLElement, kind: Kind, noun: string): Promise<void> {
  const audience = kind === 'audiences';
  const name = h('input', { id: 'def-name', name: 'name', required: true, autocomplete: 'off' }) as HTMLInputElement;
  const text = h('textarea', { id: 'def-text', name: 'definition', rows: 5, cols: 60, required: true, spellcheck: 'false',
    'aria-describedby': 'def-preview def-help' }) as HTMLTextAreaElement;
  const preview = h('div', { id: 'def-preview', 'aria-live': 'polite' });
  const note = status();
  const list = h('div', {});
  const form = h('form', { 'aria-labelledby': 'def-new' },
    h('h2', { id: 'def-new' }, `New ${noun}`),
    h('label', { for: 'def-name' }, 'Name'), name,
    h('label', { for: 'def-text' }, 'Definition'), text,
    h('p', { id: 'def-help', class: 'help' }, audience
      ? 'For example: performed "Product Added" within 1h — see docs/audiences.md.'
      : 'For example: count "Order Completed" within 90d — see docs/audiences.md.'),
    preview,
    h('button', { type: 'submit' }, `Create ${noun}`), note);
  let pending: number | undefined;
  let generation = 0;
  const runPreview = async () => {
    const mine = ++generation;
    if (!text.value.trim()) { replace(preview); text.removeAttribute('aria-invalid'); return; }
    replace(preview, h('p', {}, 'Previewing…'));
    try {
      const got = await api('POST', `/v1/${kind}/preview`, { definition: text.value, sample: 10 });
      if (mine !== generation) return;
      text.removeAttribute('aria-invalid');
      const size = audience ? got.size : got.with_value;
      replace(preview,
        h('p', { class: 'size', id: 'preview-size' }, audience ? `Size now: ${size}` : `Profiles with a value now: ${size}`),
        table('First members', audience ? ['Profile', 'Identities'] : ['Profile', 'Identities', 'Value'],
          (got.sample || []).map((m: any) => audience ? [m.id, identities(m.identities)] : [m.id, identities(m.identities), JSON.stringify(m.value)])));
    } catch (e) {
      if (mine !== generation) return;
      text.setAttribute('aria-invalid', 'true');
      replace(preview, h('p', { class: 'error', id: 'preview-error' }, errorText(e)), caret(text.value, e));
    }
  };
  text.addEventListener('input', () => { window.clearTimeout(pending); pending = window.setTimeout(runPreview, PREVIEW_DEBOUNCE_MS); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    note.textContent = 'Saving…';
    try {
      const created = await api('POST', `/v1/${kind}`, { name: name.value.trim(), definition: text.value });
      location.hash = `#/${kind}/${encodeURIComponent(created.id)}`;
    } catch (e) { note.textContent = errorText(e); }
  });
  replace(main, h('h1', {}, audience ? 'Audiences' : 'Computed traits'), list, form);
  try {
    const all = await api('GET', `/v1/${kind}`);
    const rows = (all[audience ? 'audiences' : 'computed_traits'] || []).map((d: any) => [
      h('a', { href: `#/${kind}/${encodeURIComponent(d.id)}` }, d.name), h('code', {}, d.definition), audience ? String(d.size ?? '') : '']);
    replace(list, table(audience ? 'Audiences and their sizes' : 'Computed traits', ['Name', 'Definition', audience ? 'Size' : ''], rows));
  } catch (e) { replace(list, h('p', { class: 'error' }, errorText(e))); }
}

/** The definition's line with a caret under the column the API named. */
function caret(source: string, e: unknown): HTMLElement | null {
  if (!(e instanceof ApiError) || !e.problem || !e.problem.line) return null;
  const line = source.split('\n')[e.problem.line - 1] ?? '';
  return h('pre', { class: 'caret', 'aria-hidden': 'true' }, `${line}\n${' '.repeat(Math.max(0, e.problem.column - 1))}^`);
}

async function detail(main: HTMLElement, kind: Kind, noun: string, id: string): Promise<void> {
  const audience = kind === 'audiences';
  const members = h('div', { id: 'members' });
  const head = h('div', {});
  replace(main, h('p', {}, h('a', { href: `#/${kind}` }, `All ${audience ? 'audiences' : 'computed traits'}`)), head, members);
  try {
    const d = await api('GET', `/v1/${kind}/${encodeURIComponent(id)}`);
    replace(head, h('h1', {}, `${audience ? 'Audience' : 'Computed trait'} ${d.name}`), h('pre', { class: 'definition' }, d.definition));
  } catch (e) { replace(head, h('h1', {}, noun), h('p', { class: 'error' }, errorText(e))); return; }
  const refresh = async () => {
    try {
      const got = await api('GET', `/v1/${kind}/${encodeURIComponent(id)}/${audience ? 'members' : 'values'}?limit=100`);
      const list = got.members || got.values || [];
      if (!members.isConnected) return;
      replace(members,
        h('p', { id: 'member-count', role: 'status' }, `${list.length}${got.next ? '+' : ''} ${audience ? 'members' : 'profiles with a value'} (live)`),
        table(audience ? 'Live members' : 'Live values', audience ? ['Profile', 'Identities'] : ['Profile', 'Identities', 'Value'],
          list.map((m: any) => {
            const first = identities(m.identities).split(', ')[0];
            const link = first ? h('a', { href: `#/profiles/${encodeURIComponent(first)}` }, identities(m.identities)) : '';
            return audience ? [m.id, link] : [m.id, link, JSON.stringify(m.value)];
          })));
    } catch (e) { replace(members, h('p', { class: 'error' }, errorText(e))); }
    if (members.isConnected) timer = window.setTimeout(refresh, MEMBERS_REFRESH_MS);
  };
  refresh();
}
