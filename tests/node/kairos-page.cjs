// Drives the Kairos browser SDK (web/sdk/dist/kairos.js) in headless
// Chromium for tests/test_kairos_sdk.py.
//
//   node kairos-page.cjs '{"api": "http://127.0.0.1:PORT", "sdk": "/abs/path/kairos.js"}'
//
// Pages and the SDK (/kairos.js, and the ES module /kairos.mjs) are served by this script from http://localhost:<own
// port>, Kairos runs on 127.0.0.1:<its port>: every call is cross-origin
// with real CORS preflights.
//
// Line protocol: the test writes one JSON command per line on stdin,
// {"id": n, "op": ..., ...}; the driver answers {"id": n, "ok": true,
// "value": ...} or {"id": n, "ok": false, "error": "..."} on stdout.
//   serve   {path, html}           page content served at path
//   goto    {path}                 open http://localhost:<port><path>
//   reload
//   eval    {js}                   page.evaluate(js) (an expression; may be a promise)
//   offline {value}                context.setOffline (navigator.onLine follows)
//   block   {mode}                 requests to Kairos: "abort" (never reach it),
//                                  "lose" (reach it, the answer is lost), null (normal)
//   click   {selector} / press {key} / wait {selector, state}
//   log                            {requests to Kairos, console lines, page errors}
//   close
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2] || '{}');
const CHROMIUM = process.env.KAIROS_CHROMIUM || '/usr/bin/chromium';
const pages = new Map();

function startStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/kairos.js' || url.pathname === '/kairos.mjs') {
      // the script-tag build, and the ES module the npm package exports
      const file = url.pathname === '/kairos.js' ? cfg.sdk : path.join(path.dirname(cfg.sdk), 'kairos.mjs');
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
      return fs.createReadStream(file).pipe(res);
    }
    if (pages.has(url.pathname)) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      return res.end(pages.get(url.pathname));
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function messageIds(body) {
  try {
    const j = JSON.parse(body);
    return (Array.isArray(j.batch) ? j.batch : [j]).map((e) => e && e.messageId).filter(Boolean);
  } catch (e) {
    return [];
  }
}

async function main() {
  const server = await startStatic();
  const origin = `http://localhost:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const requests = [];
  const consoleLines = [];
  const pageErrors = [];
  const byReq = new Map();
  page.on('request', (req) => {
    if (!req.url().startsWith(cfg.api)) return;
    let body = null;
    try { body = req.postData(); } catch (e) { body = null; }
    const e = { t: Date.now(), method: req.method(), url: req.url(), headers: req.headers(), messageIds: body ? messageIds(body) : [],
      status: null };
    byReq.set(req, e);
    requests.push(e);
  });
  page.on('response', (res) => { const e = byReq.get(res.request()); if (e) e.status = res.status(); });
  page.on('requestfailed', (req) => {
    const e = byReq.get(req);
    if (e) e.failure = (req.failure() || {}).errorText || 'failed';
  });
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`.slice(0, 1000)));
  page.on('pageerror', (err) => pageErrors.push(String(err && err.stack || err).slice(0, 2000)));

  let blocking = null;
  const blocker = async (route) => {
    if (route.request().method() === 'OPTIONS' || blocking === null) return route.continue();
    if (blocking === 'lose') await route.fetch().catch(() => {});
    return route.abort('connectionreset');
  };

  const ops = {
    serve: ({ path, html }) => { pages.set(path, html); return origin + path; },
    goto: async ({ path }) => { await page.goto(origin + path, { waitUntil: 'load' }); return page.url(); },
    reload: async () => { await page.reload({ waitUntil: 'load' }); return page.url(); },
    eval: ({ js }) => page.evaluate(js),
    offline: ({ value }) => context.setOffline(!!value),
    block: async ({ mode }) => {
      if (mode && blocking === null) await page.route(`${cfg.api}/v1/batch`, blocker);
      if (!mode && blocking !== null) await page.unroute(`${cfg.api}/v1/batch`, blocker);
      blocking = mode || null;
    },
    click: ({ selector }) => page.click(selector),
    press: ({ key }) => page.keyboard.press(key),
    wait: ({ selector, state }) => page.waitForSelector(selector, { state: state || 'visible' }).then(() => true),
    log: () => ({ requests, console: consoleLines, pageErrors }),
  };

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.op === 'close') break;
    try {
      const value = await ops[cmd.op](cmd);
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: true, value: value === undefined ? null : value }) + '\n');
    } catch (err) {
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: false, error: String(err && err.stack || err) }) + '\n');
    }
  }
  await context.close().catch(() => {});
  await browser.close().catch(() => {});
  server.close();
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
