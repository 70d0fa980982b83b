// Seam for next-best-action decisions (issue 14): `kairos.decide(placement)`
// will POST /v1/decide {profile, placement, context} with the write key and
// the page's identity, and `<div data-kairos-placement="home_hero">` slots
// will be filled with the top action's rendered content, reporting `Offer
// Viewed` / `Offer Clicked` / `Offer Dismissed` with its `decision_id`
// through `kairos.track`. Kairos has no decision API yet, so the call
// fails with a clear error instead of guessing an interface.

import type { Kairos } from './kairos';
import type { Dict } from './util';

export interface Decision {
  decision_id: string;
  actions: { offer: string; score: number; content: Dict }[];
}

export function decide(_k: Kairos, placement: string, _context?: Dict): Promise<Decision> {
  return Promise.reject(
    new Error(`kairos.decide(${JSON.stringify(placement)}): decisions are not available yet in this Kairos version`),
  );
}
