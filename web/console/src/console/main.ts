// The Kairos console: login, then pages chosen by the URL's hash
// (#/overview, #/stream, #/profiles/<identifier>, #/audiences, ...).
// The hash holds only what page is shown, never a credential.
import { errorText, login, logout, resume, whenLoggedOut } from './api';
import { h, replace, status } from './dom';
import { overviewPage } from './overview';
import { streamPage } from './stream';
import { profilesPage } from './profiles';
import { definitionsPage } from './definitions';
import { listsPage } from './lists';

export interface Page {
  title: string;
  render(main: HTMLElement, arg: string): void;
  /** Stops polling and streams when the page is left. */
  leave?(): void;
}

const PAGES: Record<string, Page> = {
  overview: overviewPage,
  stream: streamPage,
  profiles: profilesPage,
  audiences: definitionsPage('audiences'),
  'computed-traits': definitionsPage('computed-traits'),
  journeys: listsPage('journeys'),
  destinations: listsPage('destinations'),
  quarantine: listsPage('quarantine'),
  sources: listsPage('sources'),
  models: listsPage('models'),
  offers: listsPage('offers'),
  experiments: listsPage('experiments'),
};

const NAV: [string, string][] = [
  ['overview', 'Overview'], ['stream', 'Live events'], ['profiles', 'Profiles'], ['audiences', 'Audiences'],
  ['computed-traits', 'Computed traits'], ['journeys', 'Journeys'], ['destinations', 'Destinations'],
  ['offers', 'Offers'], ['experiments', 'Experiments'],
  ['quarantine', 'Quarantine'], ['sources', 'Sources'], ['models', 'Models'],
];

const app = document.getElementById('app')!;
let current: Page | null = null;

function route(): [string, string] {
  const [, name = 'overview', ...rest] = location.hash.split('/');
  return [PAGES[name] ? name : 'overview', decodeURIComponent(rest.join('/'))];
}

function showLogin(message = ''): void {
  current?.leave?.();
  current = null;
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true }) as HTMLInputElement;
  const note = status(message);
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Kairos console'),
    h('p', {}, 'Log in with the admin token printed when ', h('code', {}, 'kairos serve'), ' started (or KAIROS_ADMIN_TOKEN). It is exchanged for a session cookie and not kept by this page.'),
    h('label', { for: 'token' }, 'Admin token'), input,
    h('button', { type: 'submit' }, 'Log in'), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    note.textContent = 'Logging in…';
    try {
      await login(input.value);
      input.value = '';
      showShell();
    } catch (e) {
      note.textContent = errorText(e);
      input.focus();
    }
  });
  replace(app, h('main', { id: 'main' }, form));
  input.focus();
}

function showShell(): void {
  const main = h('main', { id: 'main', tabindex: '-1' });
  const nav = h('nav', { 'aria-label': 'Console' },
    h('p', { class: 'brand' }, 'Kairos'),
    h('ul', {}, NAV.map(([name, label]) => h('li', {}, h('a', { href: `#/${name}`, 'data-page': name }, label)))),
    h('button', { type: 'button', class: 'logout', onclick: async () => { await logout().catch(() => {}); showLogin('Logged out.'); } }, 'Log out'));
  replace(app, h('div', { class: 'shell' }, h('header', {}, nav), main));
  render();
}

function render(): void {
  const main = document.getElementById('main');
  if (!main || !document.querySelector('nav')) return;
  current?.leave?.();
  const [name, arg] = route();
  current = PAGES[name];
  document.title = `${current.title} · Kairos console`;
  for (const link of Array.from(document.querySelectorAll('nav a'))) {
    if ((link as HTMLElement).dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  replace(main);
  current.render(main, arg);
}

window.addEventListener('hashchange', render);
whenLoggedOut(() => showLogin('Your session ended; log in again.'));
resume().then((ok) => (ok ? showShell() : showLogin()));
