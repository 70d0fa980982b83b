// Profile explorer: search by any identifier (`type:value`) or a trait;
// the profile (identities, traits, consent, audiences, computed values,
// scores), its timeline, merges and deliveries, refreshed while open;
// export (download) and erase (typed confirmation).
import { api, errorText, identifierPath } from './api';
import { h, identities, json, replace, status, table } from './dom';
import type { Page } from './main';

/** The open profile is re-read this often, so new events show within a second. */
const REFRESH_MS = 500;
/** Timeline rows shown. */
const TIMELINE = 50;

let timer: number | undefined;

export const profilesPage: Page = {
  title: 'Profiles',
  render(main, arg) {
    const input = h('input', { id: 'profile-q', name: 'q', type: 'search', value: arg, placeholder: 'user_id:ada, email:ada@example.org, anonymous_id:…', 'aria-describedby': 'profile-q-help' }) as HTMLInputElement;
    const view = h('div', { id: 'profile-view' });
    const form = h('form', { role: 'search', 'aria-label': 'Find a profile' },
      h('label', { for: 'profile-q' }, 'Identifier or trait'), input, h('button', { type: 'submit' }, 'Find'),
      h('p', { id: 'profile-q-help', class: 'help' }, 'An identifier as type:value (user_id, anonymous_id, email, phone or a custom type), or a trait as trait=value.'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = `#/profiles/${encodeURIComponent(input.value.trim())}`;
    });
    replace(main, h('h1', {}, 'Profiles'), form, view);
    if (arg) show(view, arg.trim());
  },
  leave() { window.clearTimeout(timer); },
};

async function show(view: HTMLElement, query: string): Promise<void> {
  const note = status('Searching…');
  replace(view, note);
  const eq = query.indexOf('=');
  if (eq > 0 && query.indexOf(':') < 0) {
    try {
      const found = await api('GET', `/v1/profiles?trait=${encodeURIComponent(query.slice(0, eq))}&value=${encodeURIComponent(query.slice(eq + 1))}`);
      const list = found.profiles || [];
      replace(view, h('h2', {}, `${list.length} profiles with ${query}`),
        h('ul', {}, list.map((p: any) => {
          const first = identities(p.identities).split(', ')[0] || p.id;
          return h('li', {}, h('a', { href: `#/profiles/${encodeURIComponent(first)}` }, identities(p.identities) || p.id));
        })));
    } catch (e) { note.textContent = errorText(e); }
    return;
  }
  const refresh = async (first: boolean) => {
    try {
      const id = identifierPath(query);
      const [profile, events, merges, deliveries] = await Promise.all([
        api('GET', `/v1/profiles/${id}`),
        api('GET', `/v1/profiles/${id}/events?limit=${TIMELINE}`),
        api('GET', `/v1/profiles/${id}/merges`),
        api('GET', `/v1/profiles/${id}/deliveries`).catch(() => ({ deliveries: [] })),
      ]);
      if (!view.isConnected) return;
      render(view, query, profile, events.events || [], merges, deliveries, first);
    } catch (e) {
      if (first || !view.isConnected) note.textContent = errorText(e);
      else return;
    }
    if (view.isConnected) timer = window.setTimeout(() => refresh(false), REFRESH_MS);
  };
  await refresh(true);
}

function render(view: HTMLElement, query: string, p: any, events: any[], merges: any, deliveries: any, first: boolean): void {
  const focusedId = first ? null : (document.activeElement && view.contains(document.activeElement) ? document.activeElement.id : null);
  const kv = (caption: string, obj: any) => table(caption, ['Name', 'Value'],
    Object.entries(obj || {}).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]));
  replace(view,
    h('h2', { id: 'profile-title' }, `Profile ${p.id}`),
    h('p', {}, `${p.event_count} events · first seen ${p.first_seen || '—'} · last seen ${p.last_seen || '—'}`),
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'export', onclick: () => exportProfile(query) }, 'Export (JSON)'),
      h('button', { type: 'button', id: 'erase', class: 'danger', onclick: () => eraseProfile(view, query) }, 'Erase…')),
    h('div', { class: 'grid' },
      h('section', { 'aria-label': 'Identities' }, table('Identities', ['Identifier'], (p.identities || []).map((x: any) => [identities([x])]))),
      h('section', { 'aria-label': 'Traits' }, kv('Traits', p.traits)),
      h('section', { 'aria-label': 'Audiences' }, table('Audiences', ['Audience'], (p.audiences || []).map((a: string) => [a]))),
      h('section', { 'aria-label': 'Computed values' }, kv('Computed values', p.computed)),
      h('section', { 'aria-label': 'Scores' }, kv('Scores', p.scores)),
      h('section', { 'aria-label': 'Consent' }, kv('Consent', p.consent))),
    h('section', { 'aria-label': 'Timeline' },
      table(`Timeline (newest ${TIMELINE})`, ['Time', 'Type', 'Event', 'Properties'],
        events.map((e) => [e.timestamp, e.type, e.event || e.name || '', JSON.stringify(e.properties || e.traits || {}).slice(0, 300)]))),
    h('section', { 'aria-label': 'Merges' }, h('h3', {}, 'Merges'), json(merges)),
    h('section', { 'aria-label': 'Deliveries' }, h('h3', {}, 'Deliveries'), json(deliveries)));
  if (focusedId) document.getElementById(focusedId)?.focus();
}

async function exportProfile(query: string): Promise<void> {
  const data = await api('GET', `/v1/profiles/${identifierPath(query)}/export`);
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  const a = h('a', { href: url, download: `profile-${query.replace(/[^\w.-]+/g, '_')}.json` });
  document.body.appendChild(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

/** Erasure cannot be undone: a modal dialog asks for the identifier typed again. */
function eraseProfile(view: HTMLElement, query: string): void {
  window.clearTimeout(timer);
  const input = h('input', { id: 'erase-confirm', name: 'confirm', autocomplete: 'off' }) as HTMLInputElement;
  const note = status();
  const dialog = h('dialog', { 'aria-labelledby': 'erase-title' },
    h('form', { method: 'dialog' },
      h('h2', { id: 'erase-title' }, 'Erase this person?'),
      h('p', {}, 'Every event of this person is destroyed (crypto-shredding) and the person is suppressed. This cannot be undone.'),
      h('label', { for: 'erase-confirm' }, `Type ${query} to confirm`), input,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', id: 'erase-go' }, 'Erase'),
        h('button', { type: 'submit', value: 'cancel' }, 'Cancel')),
      note)) as HTMLDialogElement;
  document.body.appendChild(dialog);
  dialog.addEventListener('close', () => { dialog.remove(); document.getElementById('erase')?.focus(); });
  dialog.querySelector('#erase-go')!.addEventListener('click', async () => {
    if (input.value.trim() !== query) { note.textContent = `Type ${query} exactly to confirm.`; input.focus(); return; }
    try {
      const receipt = await api('DELETE', `/v1/profiles/${identifierPath(query)}`);
      dialog.close();
      replace(view, h('h2', {}, 'Erased'), h('p', { role: 'status' }, `The person behind ${query} was erased.`), json(receipt));
    } catch (e) { note.textContent = errorText(e); }
  });
  dialog.showModal();
  input.focus();
}
