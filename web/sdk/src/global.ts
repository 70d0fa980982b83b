// Script-tag entry (dist/kairos.js): puts the SDK on `window.kairos` and
// replays the calls the snippet queued before the script arrived
// (`window.kairos = [['load', key, opts], ['page'], ...]`, the way
// analytics.js' snippet works). `<script src=".../sdk/kairos.js"
// data-write-key="K">` loads it directly, Kairos being where the script
// came from unless `data-api-host` says otherwise.
import { Kairos } from './kairos';

const w = window as any;
const queued = w.kairos;
if (!queued || Array.isArray(queued)) {
  const k = new Kairos();
  w.kairos = k;
  const script = document.currentScript as HTMLScriptElement | null;
  const key = script?.getAttribute('data-write-key');
  if (key) k.load(key, { apiHost: script!.getAttribute('data-api-host') || undefined });
  if (Array.isArray(queued)) {
    for (const [method, ...args] of queued) {
      const fn = (k as any)[method];
      if (typeof fn === 'function') fn.apply(k, args);
    }
  }
}
