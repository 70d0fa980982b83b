// Unit tests of the retry schedule (pure): web/sdk/src/queue.ts backoffMs.
import { build } from 'esbuild';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const out = await build({ entryPoints: ['src/queue.ts'], bundle: true, format: 'esm', write: false, logLevel: 'error' });
const queue = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString('base64')}`);

test('backoff doubles from about a second, jittered over the upper half, capped at 5 minutes', () => {
  assert.equal(queue.backoffMs(0, 0), 500);
  assert.equal(queue.backoffMs(0, 1), 1000);
  assert.equal(queue.backoffMs(3, 0), 4000);
  assert.equal(queue.backoffMs(3, 1), 8000);
  assert.equal(queue.backoffMs(30, 1), 300000);
  assert.equal(queue.backoffMs(30, 0), 150000);
  for (let attempt = 0; attempt < 12; attempt++) {
    const wait = queue.backoffMs(attempt);
    const cap = Math.min(300000, 1000 * 2 ** attempt);
    assert.ok(wait >= cap / 2 && wait <= cap, `${attempt}: ${wait}`);
  }
});

test('the queue limits are what docs/sdk.md says', () => {
  assert.equal(queue.QUEUE_MAX, 1000);
  assert.equal(queue.BATCH_EVENTS_MAX, 100);
  assert.equal(queue.EVENT_BYTES_MAX, 32000);
});
