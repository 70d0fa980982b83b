// npm entry: `import { kairos } from '@kairos/browser-sdk'` (one instance,
// not put on window), or `new Kairos()` for more than one.
import { Kairos } from './kairos';

export { Kairos, VERSION } from './kairos';
export type { LoadOptions } from './kairos';
export type { AutocaptureOptions } from './autocapture';
export type { ConnectOptions, InAppMessage } from './inapp';
export type { Action, Decision, DecideOptions, SlotRenderer } from './decide';
export { QUEUE_MAX } from './queue';

export const kairos = new Kairos();
export default kairos;
