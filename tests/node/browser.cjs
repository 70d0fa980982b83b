// Drives an unmodified browser analytics SDK in headless Chromium; used by
// tests/test_browser_sdks.py.
//
//   node browser.cjs '<json config>'
//   config: {sdk: "segment"|"rudder", mode, api: "http://127.0.0.1:PORT", writeKey,
//            events: [Segment-spec scenario events], timeoutMs}
//   modes:  segment: "standard" (one request per event) | "batching" (deliveryStrategy batching)
//           rudder:  "xhr" (one request per event) | "xhr-batch" (queueOptions.batch) | "beacon" (useBeacon)
//
// The page is served by this script from http://localhost:<own port>; the SDK
// bundles are the packages' own prebuilt UMD files from node_modules, loaded
// unchanged. The SDK is pointed at Kairos only through its documented options:
// analytics-next `cdnURL` (settings come from Kairos, which names itself as
// apiHost), rudder `dataPlaneUrl` + `configUrl`. Because the page origin differs
// from the API origin, every call is a real cross-origin request with a CORS
// preflight where the browser needs one.
//
// Line protocol on stdout/stdin (one JSON object per line):
//   -> {"phase":"loaded"}              SDK initialised (config fetched)
//   <- go                              (the test may arm a fault first)
//   -> {"phase":"sent"}                every call made
//   <- done                            (the test saw the events arrive, or gave up)
//   -> {"phase":"result", requests, console, pageErrors}
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2] || process.env.KAIROS_BROWSER_CONFIG || '{}');
const CHROMIUM = process.env.KAIROS_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = cfg.timeoutMs || 45000;

const NM = path.join(__dirname, 'node_modules');
const VENDOR = {
  '/vendor/analytics-next.js': path.join(NM, '@segment/analytics-next/dist/umd/index.js'),
  // The "bundled" build carries its plugins (XhrQueue, BeaconQueue, ...); the
  // plain build would fetch them from RudderStack's CDN at run time.
  '/vendor/rudder-analytics.js': path.join(NM, '@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js'),
};
for (const file of Object.values(VENDOR)) {
  if (!fs.existsSync(file)) throw new Error(`missing ${file}: run npm ci in tests/node`);
}

const PAGE = (script) => `<!doctype html>
<html><head><meta charset="utf-8"><title>kairos ${cfg.sdk} ${cfg.mode}</title>
<link rel="icon" href="data:,">
<script src="${script}"></script></head>
<body><h1>Kairos browser SDK test page</h1></body></html>`;

function messageIds(body) {
  if (!body) return [];
  try {
    const j = JSON.parse(body);
    const evs = Array.isArray(j.batch) ? j.batch : [j];
    return evs.map((e) => e && e.messageId).filter(Boolean);
  } catch (e) {
    return [];
  }
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function startStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/segment.html' || url.pathname === '/rudder.html') {
      const script = url.pathname === '/segment.html' ? '/vendor/analytics-next.js' : '/vendor/rudder-analytics.js';
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      return res.end(PAGE(script));
    }
    if (VENDOR[url.pathname]) {
      res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
      return fs.createReadStream(VENDOR[url.pathname]).pipe(res);
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ---- code run inside the page -------------------------------------------------

async function pageLoad({ sdk, mode, api, writeKey }) {
  if (sdk === 'segment') {
    const options = {};
    if (mode === 'batching') {
      options.integrations = {
        'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 10, timeout: 500 } } },
      };
    }
    const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load({ writeKey, cdnURL: api }, options);
    window.__kairosAnalytics = analytics;
    const seg = analytics.queue.plugins.find((p) => p.name === 'Segment.io');
    return { segmentio: seg ? seg.metadata : null };
  }
  const loadOptions = { configUrl: api, logLevel: 'WARN' };
  if (mode === 'xhr-batch') loadOptions.queueOptions = { batch: { enabled: true, maxItems: 10, flushInterval: 500 } };
  if (mode === 'beacon') {
    loadOptions.useBeacon = true;
    loadOptions.beaconQueueOptions = { maxItems: 10, flushQueueInterval: 500 };
  }
  const ra = new window.rudderanalytics.RudderAnalytics();
  window.__kairosAnalytics = ra;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('rudderanalytics.ready() was not called within 20 s')), 20000);
    ra.load(writeKey, api, loadOptions);
    ra.ready(() => { clearTimeout(t); resolve(); });
  });
  return {};
}

async function pageSend({ sdk, events }) {
  const a = window.__kairosAnalytics;
  const calls = [];
  for (const ev of events) {
    switch (ev.type) {
      case 'identify': calls.push(a.identify(ev.userId, ev.traits)); break;
      case 'track': calls.push(a.track(ev.event, ev.properties)); break;
      case 'page': calls.push(a.page(ev.category, ev.name, ev.properties)); break;
      case 'screen': calls.push(a.screen(ev.category, ev.name, ev.properties)); break;
      case 'group': calls.push(a.group(ev.groupId, ev.traits)); break;
      case 'alias': calls.push(a.alias(ev.userId, ev.previousId)); break;
      default: throw new Error(`unknown type ${ev.type}`);
    }
  }
  if (sdk === 'segment') {
    // analytics-next resolves each call once the event went through its
    // plugins (a failed delivery is re-queued by the Segment.io plugin).
    await Promise.all(calls);
  }
  return true;
}

// ---- main --------------------------------------------------------------------------

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  const waiting = [];
  const received = [];
  lines.on('line', (l) => { const w = waiting.shift(); if (w) w(l.trim()); else received.push(l.trim()); });
  lines.on('close', () => { while (waiting.length) waiting.shift()('eof'); received.push('eof'); });
  const nextLine = () => new Promise((resolve) => {
    if (received.length) resolve(received.shift()); else waiting.push(resolve);
  });

  const server = await startStatic();
  const pagePort = server.address().port;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const requests = [];
  const consoleLines = [];
  const pageErrors = [];
  let result = { phase: 'result', requests, console: consoleLines, pageErrors };
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const started = Date.now();
    const entry = (req) => {
      let body = null;
      try { body = req.postData(); } catch (e) { body = null; }
      return { t: (Date.now() - started) / 1000, method: req.method(), url: req.url(), resourceType: req.resourceType(),
        headers: req.headers(), messageIds: messageIds(body),
        body: body && body.length > 2000 ? body.slice(0, 2000) : body, status: null };
    };
    const byReq = new Map();
    page.on('request', (req) => { const e = entry(req); byReq.set(req, e); requests.push(e); });
    page.on('response', async (res) => {
      const e = byReq.get(res.request());
      if (!e) return;
      e.status = res.status();
      if (e.url.startsWith(cfg.api)) {
        // live report, so the test can wait for a retry to have happened
        out({ phase: 'response', method: e.method, url: e.url, status: e.status, messageIds: e.messageIds });
      }
      e.responseHeaders = await res.allHeaders().catch(() => ({}));
    });
    page.on('requestfailed', (req) => {
      const e = byReq.get(req);
      if (e) e.failure = (req.failure() || {}).errorText || 'failed';
    });
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`.slice(0, 1000)));
    page.on('pageerror', (err) => pageErrors.push(String(err && err.stack || err).slice(0, 2000)));

    const pageFile = cfg.sdk === 'segment' ? 'segment.html' : 'rudder.html';
    await page.goto(`http://localhost:${pagePort}/${pageFile}`, { waitUntil: 'load' });
    const loadInfo = await page.evaluate(pageLoad, { sdk: cfg.sdk, mode: cfg.mode, api: cfg.api, writeKey: cfg.writeKey });
    out({ phase: 'loaded', pageOrigin: `http://localhost:${pagePort}`, ...loadInfo });

    if ((await nextLine()) !== 'go') throw new Error('test did not say go');
    await page.evaluate(pageSend, { sdk: cfg.sdk, events: cfg.events });
    out({ phase: 'sent' });

    await nextLine(); // "done" (or EOF)
    // Give in-flight CORS preflights/responses a moment to be recorded.
    await page.waitForTimeout(200);
    result.localStorageKeys = await page.evaluate(() => Object.keys(window.localStorage)).catch(() => []);
    await context.close();
  } catch (err) {
    result.error = String(err && err.stack || err);
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
  out(result);
}

main().then(() => process.exit(0), (err) => {
  out({ phase: 'result', error: String(err && err.stack || err) });
  process.exit(1);
});
