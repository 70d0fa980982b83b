// Overview: rates and gauges read from /metrics (the session is accepted
// there like the admin token) and audience sizes from the audiences API,
// polled while the page is open.
import { api, errorText } from './api';
import { h, replace, status } from './dom';
import { lineChart, Series } from './chart';
import type { Page } from './main';

/** How often the overview polls: often enough to look live, cheap enough for the server. */
const POLL_MS = 2000;
/** Points kept per series (a 4-minute window at POLL_MS). */
const HISTORY = 120;
/** Audiences charted: the largest ones (more lines would not be readable). */
const AUDIENCES_CHARTED = 6;

type Samples = Map<string, number>;

/** Sums each metric family over its labels, plus the per-label values asked for. */
export function parseMetrics(text: string, byLabel: Record<string, string>): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = '', raw] = m;
    const value = Number(raw);
    if (!isFinite(value)) continue;
    out.set(name, (out.get(name) || 0) + value);
    const label = byLabel[name];
    if (label) {
      const l = new RegExp(`${label}="([^"]*)"`).exec(labels);
      if (l) out.set(`${name}{${l[1]}}`, (out.get(`${name}{${l[1]}}`) || 0) + value);
    }
  }
  return out;
}

const DELIVERY_STATUSES = ['delivered', 'retry', 'dead', 'gone'];
/** Experiments summarized on the overview (the Experiments page has all). */
const EXPERIMENTS_SHOWN = 5;

/** Each experiment's arms: exposures, rate, and the verdict. */
function experimentsTable(results: any[]): HTMLElement {
  if (!results.length) return h('p', { class: 'help' }, 'No experiments yet (docs/decisions.md, "Experiments").');
  const rows = results.flatMap((r) => (r.arms || []).map((a: any) => h('tr', {},
    h('td', {}, h('a', { href: `#/experiments/${encodeURIComponent(r.id)}` }, r.name)), h('td', {}, a.name),
    h('td', {}, String(a.exposures)), h('td', {}, typeof a.rate === 'number' ? `${(a.rate * 100).toFixed(2)}%` : '—'),
    h('td', {}, a.sequential?.significant ? 'significant' : '—'))));
  return h('table', { class: 'experiments' }, h('caption', {}, 'Experiments'),
    h('thead', {}, h('tr', {}, ...['Experiment', 'Arm', 'Exposures', 'Rate', 'Sequential test'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ...rows));
}
let timer: number | undefined;

export const overviewPage: Page = {
  title: 'Overview',
  render(main) {
    const charts = h('div', { class: 'charts' });
    const note = status('Reading metrics…');
    replace(main, h('h1', {}, 'Overview'), note, charts);
    const accepted: [number, number][] = [];
    const rejected: [number, number][] = [];
    const lag: [number, number][] = [];
    const trigger: [number, number][] = [];
    const deliveries: Record<string, [number, number][]> = {};
    const sizes = new Map<string, [number, number][]>();
    let previous: { at: number; samples: Samples } | null = null;
    const started = Date.now();
    const push = (list: [number, number][], point: [number, number]) => {
      list.push(point);
      if (list.length > HISTORY) list.shift();
    };
    const tick = async () => {
      try {
        const text: string = await api('GET', '/metrics');
        const samples = parseMetrics(text, { kairos_deliveries_total: 'status' });
        const at = (Date.now() - started) / 1000;
        if (previous) {
          const dt = Math.max(0.001, (Date.now() - previous.at) / 1000);
          const rate = (name: string) => Math.max(0, ((samples.get(name) || 0) - (previous!.samples.get(name) || 0)) / dt);
          push(accepted, [at, rate('kairos_ingest_events_accepted_total')]);
          push(rejected, [at, rate('kairos_ingest_events_rejected_total') + rate('kairos_ingest_events_quarantined_total')]);
          // Mean trigger latency over the poll interval (ms), from the histogram's sum and count.
          const triggered = rate('kairos_trigger_duration_seconds_count');
          if (triggered > 0) push(trigger, [at, (rate('kairos_trigger_duration_seconds_sum') / triggered) * 1000]);
        }
        push(lag, [at, Math.max(0, (samples.get('kairos_log_committed_seq') || 0) - (samples.get('kairos_engine_applied_seq') || 0))]);
        for (const s of DELIVERY_STATUSES) push(deliveries[s] || (deliveries[s] = []), [at, samples.get(`kairos_deliveries_total{${s}}`) || 0]);
        previous = { at: Date.now(), samples };
        const audiences = (await api('GET', '/v1/audiences')).audiences || [];
        const largest = audiences.slice().sort((a: any, b: any) => (b.size || 0) - (a.size || 0)).slice(0, AUDIENCES_CHARTED);
        sizes.clear();
        for (const a of largest) {
          const history = await api('GET', `/v1/audiences/${encodeURIComponent(a.id)}/sizes?limit=${HISTORY}`);
          sizes.set(a.name, (history.sizes || []).map((p: any) => [Date.parse(p.at) / 1000, p.size]));
        }
        const experiments = (await api('GET', '/v1/experiments')).experiments || [];
        const results = await Promise.all(experiments.slice(0, EXPERIMENTS_SHOWN).map((e: any) =>
          api('GET', `/v1/experiments/${encodeURIComponent(e.id)}/results`).catch(() => null)));
        const series = (list: [string, [number, number][]][]): Series[] => list.map(([name, points]) => ({ name, points }));
        replace(charts,
          lineChart('Events per second', series([['accepted', accepted], ['rejected or quarantined', rejected]]), '/s'),
          lineChart('Engine lag (events behind the log)', series([['lag', lag]])),
          lineChart('Audience sizes over time', Array.from(sizes, ([name, points]) => ({ name, points }))),
          lineChart('Delivery attempts by status (total)', series(DELIVERY_STATUSES.map((s) => [s, deliveries[s]]))),
          lineChart('Trigger latency: event acknowledged to its journey decision (mean, ms)', series([['latency', trigger]]), ' ms'),
          experimentsTable(results.filter((r) => r)));
        note.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        note.textContent = errorText(e);
      }
    };
    tick();
    timer = window.setInterval(tick, POLL_MS);
  },
  leave() { window.clearInterval(timer); },
};
