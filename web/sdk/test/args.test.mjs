// Unit tests of the pure parts of the SDK (`npm test`, node's test runner):
// analytics.js argument resolution. The TypeScript module is bundled in
// memory by esbuild and imported from a data: URL.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const out = await build({ entryPoints: ['src/args.ts'], bundle: true, format: 'esm', write: false, logLevel: 'error' });
const args = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString('base64')}`);
const cb = () => {};

test('page: category, name, properties, options, callback in any of Segment\'s forms', () => {
  const full = args.pageArgs(['Docs', 'Pricing', { a: 1 }, { context: { x: 1 } }, cb]);
  assert.deepEqual([full.category, full.name, full.props, full.options, full.cb], ['Docs', 'Pricing', { a: 1 }, { context: { x: 1 } }, cb]);
  const named = args.pageArgs(['Pricing', { a: 1 }]);
  assert.deepEqual([named.category, named.name, named.props], [null, 'Pricing', { a: 1 }]);
  const bare = args.pageArgs([cb]);
  assert.deepEqual([bare.category, bare.name, bare.props, bare.options, bare.cb], [null, null, {}, {}, cb]);
  const props = args.pageArgs([{ a: 1 }, cb]);
  assert.deepEqual([props.name, props.props, props.cb], [null, { a: 1 }, cb]);
});

test('track: a callback may stand in place of properties or options', () => {
  assert.deepEqual(args.trackArgs(['E', cb]), { event: 'E', props: {}, options: {}, cb });
  assert.deepEqual(args.trackArgs(['E', { a: 1 }, cb]), { event: 'E', props: { a: 1 }, options: {}, cb });
  assert.deepEqual(args.trackArgs(['E', { a: 1 }, { b: 2 }, cb]), { event: 'E', props: { a: 1 }, options: { b: 2 }, cb });
  assert.deepEqual(args.trackArgs(['E']), { event: 'E', props: {}, options: {}, cb: undefined });
});

test('identify and group: an id (string or number) is optional; null clears it', () => {
  assert.deepEqual(args.userArgs(['u1', { t: 1 }]), { id: 'u1', props: { t: 1 }, options: {}, cb: undefined });
  assert.deepEqual(args.userArgs([42, { t: 1 }, { o: 1 }, cb]), { id: '42', props: { t: 1 }, options: { o: 1 }, cb });
  assert.deepEqual(args.userArgs([{ t: 1 }, cb]), { id: undefined, props: { t: 1 }, options: {}, cb });
  assert.equal(args.userArgs([null, { t: 1 }]).id, null);
});

test('alias: previousId is optional', () => {
  assert.deepEqual(args.aliasArgs(['new', 'old', { o: 1 }, cb]), { to: 'new', from: 'old', props: {}, options: { o: 1 }, cb });
  assert.deepEqual(args.aliasArgs(['new', cb]), { to: 'new', from: null, props: {}, options: {}, cb });
  assert.deepEqual(args.aliasArgs(['new', { o: 1 }]), { to: 'new', from: null, props: {}, options: { o: 1 }, cb: undefined });
});
