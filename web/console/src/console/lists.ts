// The operational pages: journeys (with per-step counts), destinations
// (test send, dead letters, replay), the quarantine (replay, discard),
// sources and write keys (create, rotate), models (versions, promote).
// Each is a table over the public API with its actions.
import { api, errorText } from './api';
import { h, json, replace, status, table } from './dom';
import type { Page } from './main';

type Kind = 'journeys' | 'destinations' | 'quarantine' | 'sources' | 'models' | 'offers' | 'experiments';

const TITLES: Record<Kind, string> = {
  journeys: 'Journeys', destinations: 'Destinations', quarantine: 'Quarantine', sources: 'Sources and write keys', models: 'Models',
  offers: 'Offers and decisions', experiments: 'Experiments',
};

export function listsPage(kind: Kind): Page {
  return {
    title: TITLES[kind],
    render(main, arg) {
      const body = h('div', {});
      const note = status();
      replace(main, h('h1', {}, TITLES[kind]), note, body);
      const act = (label: string, run: () => Promise<unknown>) => h('button', { type: 'button', onclick: async () => {
        note.textContent = `${label}…`;
        try { const got = await run(); note.textContent = `${label}: done. ${got ? JSON.stringify(got).slice(0, 300) : ''}`; load(); } catch (e) { note.textContent = `${label}: ${errorText(e)}`; }
      } }, label);
      const load = () => RENDER[kind](body, arg, act).catch((e) => replace(body, h('p', { class: 'error' }, errorText(e))));
      load();
    },
  };
}

type Act = (label: string, run: () => Promise<unknown>) => HTMLElement;
const enc = encodeURIComponent;

const RENDER: Record<Kind, (body: HTMLElement, arg: string, act: Act) => Promise<void>> = {
  async journeys(body, arg, act) {
    if (arg) {
      const j = await api('GET', `/v1/journeys/${enc(arg)}`);
      replace(body, h('p', {}, h('a', { href: '#/journeys' }, 'All journeys')), h('h2', {}, j.name),
        table('Counts', ['Count', 'Value'], Object.entries(j.counts || {}).map(([k, v]) => [k, JSON.stringify(v)])),
        table('Per step', ['Step', 'Kind', 'Waiting', 'Messages', 'Blocked'],
          (j.steps || []).map((s: any) => [JSON.stringify(s.path), s.kind, String(s.waiting ?? 0), JSON.stringify(s.messages || {}), JSON.stringify(s.blocked || {})])),
        h('h3', {}, 'Definition'), json({ trigger: j.trigger, steps: j.steps_definition || undefined, goal: j.goal, entry: j.entry }),
        h('p', { id: 'journey-state' }, j.paused ? 'Paused: nobody enters, nothing is sent; runs hold at their next step.' : 'Running.'),
        j.paused
          ? act(`Resume journey ${j.name}`, () => api('POST', `/v1/journeys/${enc(j.id)}/resume`))
          : act(`Pause journey ${j.name}`, () => api('POST', `/v1/journeys/${enc(j.id)}/pause`)),
        h('p', { class: 'help' }, 'Deleting a journey stops new messages (decided ones are still delivered).'),
        act(`Delete journey ${j.name}`, async () => {
          if (!window.confirm(`Delete the journey ${j.name}? No new messages will be sent.`)) return null;
          await api('DELETE', `/v1/journeys/${enc(j.id)}`);
          location.hash = '#/journeys';
          return null;
        }));
      return;
    }
    const all = (await api('GET', '/v1/journeys')).journeys || [];
    replace(body, table('Journeys', ['Name', 'Trigger', 'State', 'Created'],
      all.map((j: any) => [h('a', { href: `#/journeys/${enc(j.id)}` }, j.name), JSON.stringify(j.trigger), j.paused ? 'paused' : 'running', j.created_at])),
    newJourneyForm());
  },
  async destinations(body, _arg, act) {
    const all = (await api('GET', '/v1/destinations')).destinations || [];
    const form = newDestinationForm(() => RENDER.destinations(body, '', act));
    const dead = (await api('GET', '/v1/admin/dead-letters')).dead_letters || [];
    replace(body,
      table('Destinations', ['Name', 'Type', 'Address', 'State', 'Actions'], all.map((d: any) => [d.name, d.type, d.url || '—',
        d.disabled ? `disabled: ${JSON.stringify(d.disabled)}` : 'enabled',
        h('span', { class: 'actions' },
          d.type === 'webhook' ? act(`Test send to ${d.name}`, () => api('POST', `/v1/destinations/${enc(d.id)}/test`, {})) : null,
          act(`Replay dead letters of ${d.name}`, () => api('POST', `/v1/destinations/${enc(d.id)}/dead-letters/replay`)),
          d.disabled ? act(`Enable ${d.name}`, () => api('PATCH', `/v1/destinations/${enc(d.id)}`, { enabled: true })) : null)])),
      table('Dead letters', ['Message', 'Destination', 'Last error', 'Actions'], dead.map((m: any) => [m.id, m.destination || m.destination_id || '',
        String(m.last_error || m.error || ''), act(`Replay ${m.id}`, () => api('POST', `/v1/admin/dead-letters/${enc(m.id)}/replay`))])),
      h('p', { class: 'help' }, 'A test send posts one signed message now (not stored). Email and in-app destinations are tested through a journey.'),
      form);
  },
  async quarantine(body, _arg, act) {
    const items = (await api('GET', '/v1/admin/quarantine?limit=100')).items || [];
    replace(body, h('div', { class: 'actions' }, act('Replay all', () => api('POST', '/v1/admin/quarantine/replay', {}))),
      table('Quarantined events', ['Received', 'Source', 'Errors', 'Event', 'Actions'], items.map((q: any) => [q.received_at, q.source_id,
        (q.errors || []).map((e: any) => `${e.field}: ${e.message}`).join('; '), JSON.stringify(q.event).slice(0, 200),
        h('span', { class: 'actions' }, act(`Replay ${q.id}`, () => api('POST', `/v1/admin/quarantine/${enc(q.id)}/replay`, {})),
          act(`Discard ${q.id}`, () => api('DELETE', `/v1/admin/quarantine/${enc(q.id)}`)))])));
  },
  async sources(body, arg, act) {
    if (arg) return sourceDetail(body, arg, act);
    const all = (await api('GET', '/v1/admin/sources')).sources || [];
    const name = h('input', { id: 'source-name', name: 'name', required: true }) as HTMLInputElement;
    const form = h('form', { 'aria-labelledby': 'source-new' }, h('h2', { id: 'source-new' }, 'New source'),
      h('label', { for: 'source-name' }, 'Name'), name, h('button', { type: 'submit' }, 'Create source'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await api('POST', '/v1/admin/sources', { name: name.value.trim() });
      RENDER.sources(body, '', act);
    });
    replace(body, table('Sources', ['Name', 'Write key', 'Trust', 'Tracking plan', 'Actions'], all.map((s: any) => [
      h('a', { href: `#/sources/${enc(s.id)}` }, s.name), h('code', {}, s.write_key),
      s.trust, s.tracking_plan ? `${s.tracking_plan.mode}, ${Object.keys(s.tracking_plan.events || {}).length} events` : 'none',
      act(`Rotate the write key of ${s.name}`, () => api('POST', `/v1/admin/sources/${enc(s.id)}/rotate`, { grace_seconds: 0 }))])),
    form);
  },
  async offers(body, _arg, act) {
    const all = (await api('GET', '/v1/offers')).offers || [];
    const counts = (o: any) => Object.entries(o.stats || {}).map(([placement, c]: [string, any]) =>
      `${placement}: ${c.impressions} shown, ${c.clicks} clicked, ${c.dismissals} dismissed, ${c.conversions} converted`).join('; ') || 'no responses yet';
    replace(body,
      table('Offers', ['Name', 'Version', 'Category', 'Placements', 'Value', 'Responses', 'Actions'], all.map((o: any) => [o.name, String(o.version),
        o.category || '—', (o.placements || []).join(', ') || 'any', String(o.value ?? 1), counts(o),
        act(`Delete offer ${o.name}`, async () => {
          if (!window.confirm(`Delete the offer ${o.name}? It is no longer decided; its counts stay.`)) return null;
          return api('DELETE', `/v1/offers/${enc(o.id)}`);
        })])),
      all.length ? null : h('p', {}, 'No offers yet: see docs/decisions.md (POST /v1/offers).'),
      tryDecisionForm());
  },
  async experiments(body, arg, act) {
    if (arg) {
      const results = await api('GET', `/v1/experiments/${enc(arg)}/results`);
      const arms = results.arms || [];
      replace(body, h('p', {}, h('a', { href: '#/experiments' }, 'All experiments')), h('h2', {}, results.name || arg),
        table('Results', ['Arm', 'Exposures', 'Conversions', 'Rate', 'Interval', 'Lift', 'Lift interval', 'Sequential'],
          arms.map((a: any) => [a.name || a.arm, String(a.exposures), String(a.conversions ?? ''), pct(a.rate), range(a.interval),
            a.lift == null ? '—' : pct(a.lift), range(a.lift_interval),
            a.sequential ? `p = ${num(a.sequential.p_value)}${a.sequential.significant ? ' (significant)' : ''}` : '—'])),
        h('p', { id: 'experiment-verdict' }, results.verdict ? `Verdict: ${typeof results.verdict === 'string' ? results.verdict : JSON.stringify(results.verdict)}` : ''),
        act(`Stop experiment ${results.name || arg}`, () => api('POST', `/v1/experiments/${enc(arg)}/stop`)));
      return;
    }
    const all = (await api('GET', '/v1/experiments')).experiments || [];
    replace(body, table('Experiments', ['Name', 'Arms', 'Metric', 'Allocation', 'Status'], all.map((e: any) => [
      h('a', { href: `#/experiments/${enc(e.id)}` }, e.name), (e.arms || []).map((a: any) => a.name).join(', '),
      JSON.stringify(e.metric), e.allocation || 'fixed', e.status || ''])),
    all.length ? null : h('p', {}, 'No experiments yet: see docs/decisions.md, "Experiments" (POST /v1/experiments).'));
  },
  async models(body, _arg, act) {
    const all = (await api('GET', '/v1/models')).models || [];
    replace(body, table('Model versions', ['Model', 'Version', 'Mode', 'Format', 'Actions'], all.map((m: any) => [m.name, String(m.version), m.mode, m.format || '',
      m.mode === 'active' ? '' : act(`Promote ${m.name} v${m.version}`, () => api('POST', `/v1/models/${enc(m.name)}/versions/${m.version}/promote`))])),
    all.length ? null : h('p', {}, 'No models yet: see docs/models.md (kairos train, POST /v1/models).'));
  },
};

const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(2)}%` : '—');
const num = (x: unknown) => (typeof x === 'number' ? x.toPrecision(3) : '—');
/** An interval as the APIs give it: `[low, high]` or `{low, high}`. */
const range = (r: any) => {
  if (Array.isArray(r) && r.length === 2) return `${pct(r[0])} … ${pct(r[1])}`;
  if (r && typeof r === 'object' && 'low' in r) return `${pct(r.low)} … ${pct(r.high)}`;
  return '—';
};

/** Asks for a decision, explained: what a page would get, and why. */
function tryDecisionForm(): HTMLElement {
  const profile = h('input', { id: 'decide-profile', name: 'profile', required: true, placeholder: 'user_id:u1' }) as HTMLInputElement;
  const placement = h('input', { id: 'decide-placement', name: 'placement', required: true, placeholder: 'home_hero' }) as HTMLInputElement;
  const out = h('div', { id: 'decide-result' });
  const note = h('p', { id: 'decide-note', role: 'status', class: 'status' });
  const form = h('form', { 'aria-labelledby': 'decide-title' }, h('h2', { id: 'decide-title' }, 'Try a decision'),
    h('label', { for: 'decide-profile' }, 'Profile (type:value)'), profile,
    h('label', { for: 'decide-placement' }, 'Placement'), placement,
    h('button', { type: 'submit' }, 'Decide'), note, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    note.textContent = 'Deciding…';
    try {
      const d = await api('POST', '/v1/decide', { profile: profile.value.trim(), placement: placement.value.trim(), limit: 3, explain: true, explore: false });
      note.textContent = `Decision ${d.decision_id}: ${d.actions.length} action(s).`;
      replace(out,
        table('Actions', ['Rank', 'Offer', 'Score', 'Content'], d.actions.map((a: any) => [String(a.rank), a.offer, num(a.score), JSON.stringify(a.content)])),
        table('Why', ['Offer', 'Stage', 'Reason', 'Propensity', 'Priority'], (d.explanation || []).map((v: any) => [v.offer, v.stage, v.reason || '',
          v.propensity ? num(v.propensity.value) : '—', v.priority == null ? '—' : num(v.priority)])));
    } catch (e) {
      note.textContent = errorText(e);
    }
  });
  return form;
}

const JOURNEY_EXAMPLE = `{
  "trigger": {"event": "Signed Up"},
  "steps": [{"send": {"destination": "site", "message": {"title": "Welcome, {{ traits.name | default(\\"friend\\") }}!"}}}]
}`;

/** A journey from its JSON (docs/journeys.md): the API's errors shown as they come. */
function newJourneyForm(): HTMLElement {
  const name = h('input', { id: 'journey-name', name: 'name', required: true }) as HTMLInputElement;
  const text = h('textarea', { id: 'journey-json', name: 'definition', rows: 8, cols: 60, spellcheck: 'false', 'aria-describedby': 'journey-help journey-note' }) as HTMLTextAreaElement;
  text.value = JOURNEY_EXAMPLE;
  const note = h('p', { id: 'journey-note', role: 'status', class: 'status' });
  const form = h('form', { 'aria-labelledby': 'journey-new' }, h('h2', { id: 'journey-new' }, 'New journey'),
    h('label', { for: 'journey-name' }, 'Name'), name,
    h('label', { for: 'journey-json' }, 'Definition (JSON: trigger, steps, goal, entry)'), text,
    h('p', { id: 'journey-help', class: 'help' }, 'See docs/journeys.md for triggers and steps.'),
    h('button', { type: 'submit' }, 'Create journey'), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let definition: any;
    try { definition = JSON.parse(text.value); } catch (e) { note.textContent = `The definition is not JSON: ${String(e)}`; text.focus(); return; }
    try {
      const made = await api('POST', '/v1/journeys', { ...definition, name: name.value.trim() });
      location.hash = `#/journeys/${enc(made.id)}`;
    } catch (e) { note.textContent = errorText(e); text.focus(); }
  });
  return form;
}

/** A destination; a webhook's signing secret is shown this once. */
function newDestinationForm(done: () => void): HTMLElement {
  const kind = h('select', { id: 'dest-type', name: 'type' }, ['webhook', 'in_app', 'email'].map((t) => h('option', { value: t }, t))) as HTMLSelectElement;
  const name = h('input', { id: 'dest-name', name: 'name', required: true }) as HTMLInputElement;
  const url = h('input', { id: 'dest-url', name: 'url', type: 'text', placeholder: 'https://… (empty for in_app)' }) as HTMLInputElement;
  const note = h('p', { role: 'status', class: 'status', id: 'dest-note' });
  const form = h('form', { 'aria-labelledby': 'dest-new' }, h('h2', { id: 'dest-new' }, 'New destination'),
    h('label', { for: 'dest-type' }, 'Type'), kind, h('label', { for: 'dest-name' }, 'Name'), name,
    h('label', { for: 'dest-url' }, 'Address'), url, h('button', { type: 'submit' }, 'Create destination'), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const made = await api('POST', '/v1/destinations', { type: kind.value, name: name.value.trim(), url: url.value.trim() });
      done();
      if (made.secret) window.alert(`Signing secret of ${made.name} (shown once): ${made.secret}`);
    } catch (e) { note.textContent = errorText(e); }
  });
  return form;
}

const PLAN_EXAMPLE = `{
  "mode": "block",
  "allow_unplanned": true,
  "events": {"Order Completed": {"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}}
}`;

/** One source: its tracking plan (docs/api.md: mode, allow_unplanned, events with JSON Schemas). */
async function sourceDetail(body: HTMLElement, id: string, act: Act): Promise<void> {
  const s = await api('GET', `/v1/admin/sources/${enc(id)}`);
  const text = h('textarea', { id: 'plan-json', name: 'plan', rows: 10, cols: 60, spellcheck: 'false', 'aria-describedby': 'plan-note' }) as HTMLTextAreaElement;
  text.value = s.tracking_plan ? JSON.stringify(s.tracking_plan, null, 2) : PLAN_EXAMPLE;
  const note = h('p', { id: 'plan-note', role: 'status', class: 'status' });
  const form = h('form', { 'aria-labelledby': 'plan-title' }, h('h3', { id: 'plan-title' }, 'Tracking plan'),
    h('p', { class: 'help' }, s.tracking_plan ? 'This source validates its events against this plan.' : 'No plan: every valid event is accepted. An example:'),
    h('label', { for: 'plan-json' }, 'Plan (JSON)'), text, h('button', { type: 'submit' }, 'Save the plan'), note);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let plan: any;
    try { plan = JSON.parse(text.value); } catch (e) { note.textContent = `The plan is not JSON: ${String(e)}`; return; }
    try {
      await api('PUT', `/v1/admin/sources/${enc(id)}/tracking-plan`, plan);
      note.textContent = 'Saved: events are checked against it from now on (replay the quarantine after a fix).';
    } catch (e) { note.textContent = errorText(e); }
  });
  replace(body, h('p', {}, h('a', { href: '#/sources' }, 'All sources')), h('h2', {}, `Source ${s.name}`),
    table('Source', ['Field', 'Value'], [['id', s.id], ['write key', h('code', {}, s.write_key)], ['trust', s.trust], ['created', s.created_at]]),
    form,
    s.tracking_plan ? act(`Remove the tracking plan of ${s.name}`, () => api('DELETE', `/v1/admin/sources/${enc(id)}/tracking-plan`)) : null);
}
