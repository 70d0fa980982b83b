// Drives the Kairos console (/) and demo store (/demo/) in headless
// Chromium for tests/test_console.py and tests/test_demo_store.py. Unlike
// kairos-page.cjs, pages are Kairos' own (same origin as the API).
//
//   node console-page.cjs
//
// Line protocol as in kairos-page.cjs: {"id", "op", ...} per line on stdin,
// {"id", "ok", "value"|"error"} per line on stdout. Every op takes an
// optional `tab` (default "main"): tabs share one browser context, so the
// console's session cookie is seen by the demo store's tab.
//   goto {url} / reload / eval {js} / click {selector} / fill {selector, value} / select {selector, value}
//   type {selector, text} / press {key} / wait {selector, state, timeout}
//   text {selector}                 innerText of the first match
//   download {selector}             click, wait for the download: {name, text}
//   axe                             axe-core run: violations [{id, impact, help, nodes}]
//   screenshot {path}               full-page PNG
//   log                             console lines, page errors, confirm/alert messages (all accepted)
//   close
'use strict';

const readline = require('node:readline');
const { chromium } = require('playwright-core');
const { AxeBuilder } = require('@axe-core/playwright');

const CHROMIUM = process.env.KAIROS_CHROMIUM || '/usr/bin/chromium';

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const tabs = new Map();
  const consoleLines = [];
  const pageErrors = [];
  const dialogs = [];
  const tab = async (name) => {
    if (!tabs.has(name)) {
      const page = await context.newPage();
      page.setDefaultTimeout(15000);
      page.on('console', (m) => consoleLines.push(`${name} ${m.type()}: ${m.text()}`.slice(0, 1000)));
      page.on('pageerror', (err) => pageErrors.push(`${name}: ${String(err && err.stack || err).slice(0, 2000)}`));
      // confirm() and alert() are answered yes / OK, and kept for the test.
      page.on('dialog', (d) => { dialogs.push(d.message()); d.accept().catch(() => {}); });
      tabs.set(name, page);
    }
    return tabs.get(name);
  };
  const ops = {
    goto: async (p, { url }) => { await p.goto(url, { waitUntil: 'load' }); return p.url(); },
    reload: async (p) => { await p.reload({ waitUntil: 'load' }); return p.url(); },
    eval: (p, { js }) => p.evaluate(js),
    click: (p, { selector }) => p.click(selector),
    fill: (p, { selector, value }) => p.fill(selector, value),
    select: (p, { selector, value }) => p.selectOption(selector, value),
    type: (p, { selector, text }) => p.locator(selector).pressSequentially(text, { delay: 20 }),
    press: (p, { key }) => p.keyboard.press(key),
    wait: (p, { selector, state, timeout }) => p.waitForSelector(selector, { state: state || 'visible', timeout: timeout || 15000 }).then(() => true),
    text: (p, { selector }) => p.locator(selector).first().innerText(),
    download: async (p, { selector }) => {
      const [download] = await Promise.all([p.waitForEvent('download'), p.click(selector)]);
      const file = await download.path();
      return { name: download.suggestedFilename(), text: require('node:fs').readFileSync(file, 'utf8') };
    },
    axe: async (p) => {
      const result = await new AxeBuilder({ page: p }).analyze();
      return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
    },
    screenshot: (p, { path }) => p.screenshot({ path, fullPage: true }).then(() => path),
    log: () => ({ console: consoleLines, pageErrors, dialogs }),
  };
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.op === 'close') break;
    try {
      const value = await ops[cmd.op](await tab(cmd.tab || 'main'), cmd);
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: true, value: value === undefined ? null : value }) + '\n');
    } catch (err) {
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: false, error: String(err && err.stack || err) }) + '\n');
    }
  }
  await context.close().catch(() => {});
  await browser.close().catch(() => {});
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
