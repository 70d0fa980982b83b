// Drives an unmodified Node analytics SDK through a scenario; used by tests/test_sdk_node.py.
//
//   node server-sdk.cjs <segment|rudder> <host> <writeKey> <events.json> [--no-gzip] [--max-retries N]
//
// Only the host and the write key differ from a stock setup. The scenario is a
// JSON list of Segment-spec events (tests/sdk_support.py). Prints one JSON line:
// {"requests": [{method, url, status}], "errors": [...]}. HTTP traffic is only
// observed (node:diagnostics_channel), never altered.
'use strict';

const fs = require('node:fs');
const dc = require('node:diagnostics_channel');

const [sdk, host, writeKey, eventsFile, ...rest] = process.argv.slice(2);
if (!sdk || !host || !writeKey || !eventsFile) {
  console.error('usage: node server-sdk.cjs <segment|rudder> <host> <writeKey> <events.json> [--no-gzip] [--max-retries N]');
  process.exit(2);
}
const gzip = !rest.includes('--no-gzip');
const mrIdx = rest.indexOf('--max-retries');
const maxRetries = mrIdx >= 0 ? Number(rest[mrIdx + 1]) : undefined;
const events = JSON.parse(fs.readFileSync(eventsFile, 'utf8'));

const requests = [];
const errors = [];

// fetch (undici) — @segment/analytics-node
dc.subscribe('undici:request:headers', ({ request, response }) => {
  requests.push({ client: 'fetch', method: request.method, url: `${request.origin}${request.path}`,
    status: response.statusCode });
});
// node:http — axios in @rudderstack/rudder-sdk-node
dc.subscribe('http.client.response.finish', ({ request, response }) => {
  requests.push({ client: 'http', method: request.method,
    url: `${request.protocol}//${request.getHeader('host') || request.host}${request.path}`, status: response.statusCode,
    content_encoding: request.getHeader('content-encoding') || null });
});

function segmentCall(analytics, ev) {
  const ids = {};
  if (ev.userId) ids.userId = ev.userId;
  if (ev.anonymousId) ids.anonymousId = ev.anonymousId;
  const messageId = ev.messageId;
  switch (ev.type) {
    case 'identify': return analytics.identify({ ...ids, traits: ev.traits, messageId });
    case 'track': return analytics.track({ ...ids, event: ev.event, properties: ev.properties, messageId });
    case 'page': return analytics.page({ ...ids, category: ev.category, name: ev.name, properties: ev.properties, messageId });
    case 'screen': return analytics.screen({ ...ids, category: ev.category, name: ev.name, properties: ev.properties, messageId });
    case 'group': return analytics.group({ ...ids, groupId: ev.groupId, traits: ev.traits, messageId });
    case 'alias': return analytics.alias({ userId: ev.userId, previousId: ev.previousId, messageId });
    default: throw new Error(`unknown type ${ev.type}`);
  }
}

async function runSegment() {
  const { Analytics } = require('@segment/analytics-node');
  const opts = { writeKey, host, flushInterval: 200 };
  if (maxRetries !== undefined) opts.maxRetries = maxRetries;
  const analytics = new Analytics(opts);
  analytics.on('error', (err) => errors.push({ error: String(err && (err.reason || err.message || err.code) || err),
    code: err && err.code }));
  for (const ev of events) segmentCall(analytics, ev);
  await analytics.closeAndFlush({ timeout: 45000 });
}

async function runRudder() {
  const Analytics = require('@rudderstack/rudder-sdk-node');
  const opts = { dataPlaneUrl: host, flushAt: 100, flushInterval: 200, gzip, logLevel: 'error',
    errorHandler: (err) => errors.push({ error: String(err && err.message || err),
      status: err && err.response && err.response.status }) };
  if (maxRetries !== undefined) opts.retryCount = maxRetries;
  const client = new Analytics(writeKey, opts);
  for (const ev of events) {
    const msg = { ...ev };
    delete msg.type;
    const cb = (err) => { if (err) errors.push({ error: String(err.message || err), type: ev.type }); };
    switch (ev.type) {
      case 'identify': client.identify(msg, cb); break;
      case 'track': client.track(msg, cb); break;
      case 'page': client.page(msg, cb); break;
      case 'screen': client.screen(msg, cb); break;
      case 'group': client.group(msg, cb); break;
      case 'alias': client.alias(msg, cb); break;
      default: throw new Error(`unknown type ${ev.type}`);
    }
  }
  // flush() sends at most flushAt events per call and the first call happens on
  // the first enqueue: flush until the in-memory queue is empty and settled.
  const deadline = Date.now() + 45000;
  while (Date.now() < deadline) {
    await client.flush();
    if (client.queue.length === 0) {
      if (client.pendingFlush) await client.pendingFlush;
      if (client.queue.length === 0) break;
    }
  }
}

(sdk === 'segment' ? runSegment() : sdk === 'rudder' ? runRudder() : Promise.reject(new Error(`unknown sdk ${sdk}`)))
  .then(() => {
    process.stdout.write(JSON.stringify({ requests, errors }) + '\n');
    process.exit(0);
  })
  .catch((err) => {
    errors.push({ error: String(err && err.stack || err) });
    process.stdout.write(JSON.stringify({ requests, errors }) + '\n');
    process.exit(1);
  });
