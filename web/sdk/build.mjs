// Builds the Kairos browser SDK (`npm run build`):
//   dist/kairos.js   minified IIFE for <script> tags, sets window.kairos
//                    (what Kairos serves at /sdk/kairos.js)
//   dist/kairos.mjs  ES module for bundlers (the npm package's entry)
//   dist/kairos.js.gz  the same, gzipped (for Content-Encoding: gzip)
//   dist/types/      TypeScript declarations
// then type-checks, prints the gzipped size of dist/kairos.js and fails
// above the budget.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

/** Issue 15's budget: a site pays for every byte on every first visit. */
export const GZIP_BUDGET_BYTES = 12 * 1024;
/** ES2019 syntax: every browser with fetch keepalive and IntersectionObserver. */
const TARGET = ['es2019'];

rmSync('dist', { recursive: true, force: true });
const common = { bundle: true, target: TARGET, legalComments: 'none', logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/global.ts'], outfile: 'dist/kairos.js', format: 'iife', minify: true });
await build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/kairos.mjs', format: 'esm' });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });

const raw = readFileSync('dist/kairos.js');
const gzipped = gzipSync(raw, { level: 9 });
// Precompressed copy for a server to send with Content-Encoding: gzip.
writeFileSync('dist/kairos.js.gz', gzipped);
const gz = gzipped.length;
console.log(`dist/kairos.js: ${raw.length} bytes, ${gz} bytes gzipped (budget ${GZIP_BUDGET_BYTES})`);
if (gz > GZIP_BUDGET_BYTES) {
  console.error(`dist/kairos.js is ${gz} bytes gzipped, over the ${GZIP_BUDGET_BYTES}-byte budget`);
  process.exit(1);
}
