// Live events: GET /v1/admin/tail (Server-Sent Events; the session cookie
// authenticates it, EventSource sends it same-origin), filtered in the page.
import { api } from './api';
import { h, replace, status } from './dom';
import type { Page } from './main';

/** Rows kept on screen: the newest first, older ones dropped. */
const ROWS_MAX = 200;

let source: EventSource | null = null;

export const streamPage: Page = {
  title: 'Live events',
  render(main) {
    const kind = h('select', { id: 'f-type', name: 'type' },
      ['', 'track', 'identify', 'page', 'screen', 'group', 'alias'].map((t) => h('option', { value: t }, t || 'any type'))) as HTMLSelectElement;
    const name = h('input', { id: 'f-name', name: 'event', type: 'search' }) as HTMLInputElement;
    const who = h('input', { id: 'f-who', name: 'who', type: 'search' }) as HTMLInputElement;
    const sourcePick = h('select', { id: 'f-source', name: 'source' }, h('option', { value: '' }, 'any source')) as HTMLSelectElement;
    const pause = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause') as HTMLButtonElement;
    const body = h('tbody', { id: 'stream-rows' });
    const note = status('Connecting…');
    let paused = false;
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.setAttribute('aria-pressed', String(paused));
      pause.textContent = paused ? 'Resume' : 'Pause';
    });
    const matches = (e: any) =>
      (!kind.value || e.type === kind.value) &&
      (!name.value || String(e.event || e.name || '').toLowerCase().includes(name.value.toLowerCase())) &&
      (!who.value || [e.userId, e.anonymousId].some((x) => x && String(x).includes(who.value)));
    replace(main, h('h1', {}, 'Live events'),
      h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events', onsubmit: (ev: Event) => ev.preventDefault() },
        h('label', { for: 'f-source' }, 'Source'), sourcePick,
        h('label', { for: 'f-type' }, 'Type'), kind,
        h('label', { for: 'f-name' }, 'Event name contains'), name,
        h('label', { for: 'f-who' }, 'User or anonymous id contains'), who, pause),
      note,
      h('table', { class: 'stream' }, h('caption', {}, 'Accepted events, newest first'),
        h('thead', {}, h('tr', {}, ['Received', 'Type', 'Event', 'User', 'Anonymous id', 'Source', 'Properties'].map((x) => h('th', { scope: 'col' }, x)))),
        body));
    api('GET', '/v1/admin/sources').then((all) => {
      for (const s of all.sources || []) sourcePick.appendChild(h('option', { value: s.id }, s.name));
    }).catch(() => {});
    // The source filter is the server's (`?source=`): a new stream per choice.
    const connect = () => {
      source?.close();
      source = new EventSource(sourcePick.value ? `/v1/admin/tail?source=${encodeURIComponent(sourcePick.value)}` : '/v1/admin/tail');
      source.addEventListener('open', () => { note.textContent = 'Connected: new events appear as they are committed.'; });
      source.addEventListener('error', () => { note.textContent = 'Disconnected; reconnecting…'; });
      source.addEventListener('event', onEvent);
    };
    sourcePick.addEventListener('change', () => { replace(body); note.textContent = 'Connecting…'; connect(); });
    const onEvent = (msg: Event) => {
      if (paused) return;
      let e: any;
      try { e = JSON.parse((msg as MessageEvent).data); } catch (err) { return; }
      if (!matches(e)) return;
      const who = e.userId ? h('a', { href: `#/profiles/${encodeURIComponent('user_id:' + e.userId)}` }, String(e.userId)) : '';
      const anon = e.anonymousId ? h('a', { href: `#/profiles/${encodeURIComponent('anonymous_id:' + e.anonymousId)}` }, String(e.anonymousId)) : '';
      const row = h('tr', {}, [
        new Date(e.receivedAt || e.timestamp).toLocaleTimeString(), e.type, e.event || e.name || '', who, anon,
        e.sourceId || '', JSON.stringify(e.properties || e.traits || {}).slice(0, 200),
      ].map((c) => h('td', {}, c)));
      body.insertBefore(row, body.firstChild);
      while (body.children.length > ROWS_MAX) body.removeChild(body.lastChild!);
    };
    connect();
  },
  leave() { source?.close(); source = null; },
};
