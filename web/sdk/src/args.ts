// analytics.js argument resolution, so a site using Segment's snippet can
// switch by changing the script: the same optional-argument rules as
// @segment/analytics-next (a trailing function is the callback wherever it
// stands; strings and objects fill the slots in order).

import { Callback, Dict, isFn, isObj, isStr } from './util';

export interface Resolved {
  props: Dict;
  options: Dict;
  cb?: Callback;
}

const cbOf = (args: unknown[]) => args.find(isFn) as Callback | undefined;
const objs = (args: unknown[]) => args.filter(isObj) as Dict[];

/** page([category], [name], [properties], [options], [callback]) */
export function pageArgs(args: unknown[]): Resolved & { category: string | null; name: string | null } {
  const strings = args.filter(isStr) as string[];
  const two = strings.length >= 2;
  const o = objs(args);
  return {
    category: two ? strings[0] : null,
    name: two ? strings[1] : strings[0] ?? null,
    props: o[0] ?? {},
    options: o[1] ?? {},
    cb: cbOf(args),
  };
}

/** track(event, [properties], [options], [callback]) */
export function trackArgs(args: unknown[]): Resolved & { event: string } {
  const [event, ...rest] = args;
  const o = objs(rest.filter((a) => !isFn(a)));
  return { event: String(event), props: o[0] ?? {}, options: o[1] ?? {}, cb: cbOf(rest) };
}

/** identify([userId], [traits], [options], [callback]) and
 *  group(groupId, [traits], [options], [callback]): an id is a string or a
 *  number; an object in first place is the traits. */
export function userArgs(args: unknown[]): Resolved & { id: string | null | undefined } {
  const first = args[0];
  const hasId = isStr(first) || typeof first === 'number' || first === null;
  const rest = hasId ? args.slice(1) : args;
  const o = objs(rest);
  return {
    id: hasId ? (first === null ? null : String(first)) : undefined,
    props: o[0] ?? {},
    options: o[1] ?? {},
    cb: cbOf(rest),
  };
}

/** alias(userId, [previousId], [options], [callback]) */
export function aliasArgs(args: unknown[]): Resolved & { to: string; from: string | null } {
  const [to, ...rest] = args;
  const from = isStr(rest[0]) || typeof rest[0] === 'number' ? String(rest.shift()) : null;
  const o = objs(rest);
  return { to: String(to), from, props: {}, options: o[0] ?? {}, cb: cbOf(rest) };
}
