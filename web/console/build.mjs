// Builds the console (served at /) and the demo store (served at /demo/)
// into dist/, which crates/kairos-http/build.rs embeds into the binary:
//   dist/index.html, dist/console.js(.gz), dist/console.css(.gz)
//   dist/demo.html,  dist/demo.js(.gz),    dist/demo.css(.gz)
// then type-checks. Nothing third-party is bundled: the only packages are
// the build tools (esbuild, typescript).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

/** Same syntax level as the SDK: every browser with fetch and EventSource. */
const TARGET = ['es2019'];

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist');
const common = { bundle: true, target: TARGET, legalComments: 'none', logLevel: 'warning', minify: true, format: 'iife' };
await build({ ...common, entryPoints: ['src/console/main.ts'], outfile: 'dist/console.js' });
await build({ ...common, entryPoints: ['src/demo/main.ts'], outfile: 'dist/demo.js' });
for (const file of ['index.html', 'console.css', 'demo.html', 'demo.css']) copyFileSync(`static/${file}`, `dist/${file}`);
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });

// Precompressed copies for Content-Encoding: gzip.
for (const file of ['console.js', 'console.css', 'demo.js', 'demo.css']) {
  const raw = readFileSync(`dist/${file}`);
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(`dist/${file}.gz`, gz);
  console.log(`dist/${file}: ${raw.length} bytes, ${gz.length} gzipped`);
}
