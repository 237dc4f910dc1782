#!/usr/bin/env node
// Entry point for `npx crr`. It runs dist-cjs/, the CommonJS copy of the compiled CLI that
// `npm run build:ts` makes after dist/ (scripts/build-cjs.mjs; the library is dist/'s ES
// modules): on Node 20 CommonJS loads about twice as fast and can use a V8 code cache
// (src/cli/code-cache.ts), and loading the modules is most of a short command's time. When
// dist/ was compiled after dist-cjs/ (tsc run by hand), the CLI runs dist/ as it is.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
// msgpackr's native string extractor (msgpackr-extract) costs ~25 ms to load and only pays off
// on large strings; the helper channel carries small messages, so the CLI runs without it.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
// Loading the modules and a first restore allocate ~10 MB: V8's young generation, doubling from
// 1 MB, took 7 scavenges (11-16 ms of pauses) to get there; growing it 16-fold takes 3 (7.5 ms).
// Its largest size (and so the memory a big restore keeps) is unchanged.
setFlagsFromString('--semi-space-growth-factor=16');

function commonJsIsCurrent() {
  const built = (path) => statSync(new URL(path, import.meta.url)).mtimeMs;
  try {
    return built('../dist-cjs/package.json') >= built('../dist/index.js');
  } catch {
    return false;
  }
}

let main;
if (commonJsIsCurrent()) {
  const require = createRequire(import.meta.url);
  require('../dist-cjs/cli/code-cache.js').installCodeCache();
  ({ main } = require('../dist-cjs/cli/main.js'));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
