#!/usr/bin/env node
// Entry point for `npx crr`. A CommonJS script (bin/package.json), like dist-cjs/, the CommonJS
// copy of the compiled CLI that it runs (`npm run build:ts` makes it after dist/, with
// scripts/build-cjs.mjs; the library is dist/'s ES modules): on Node 20 CommonJS loads about
// twice as fast and can use a V8 code cache (src/cli/code-cache.ts), and loading modules is most
// of a short command's time. When dist/ was compiled after dist-cjs/ (tsc run by hand), the CLI
// runs dist/ as it is.
'use strict';
const { setFlagsFromString } = require('node:v8');
const { commonJsIsCurrent } = require('./common-js-current.js');

// msgpackr's native string extractor (msgpackr-extract) costs ~25 ms to load and only pays off
// on large strings; the helper channel carries small messages, so the CLI runs without it.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
// Loading the modules and a first restore allocate ~10 MB: V8's young generation, doubling from
// 1 MB, took 7 scavenges (11-16 ms of pauses) to get there; growing it 16-fold takes 3 (7.5 ms).
// Its largest size (and so the memory a big restore keeps) is unchanged.
setFlagsFromString('--semi-space-growth-factor=16');

const run = ({ main }) => main(process.argv.slice(2)).then((code) => (process.exitCode = code));
if (commonJsIsCurrent()) {
  require('../dist-cjs/cli/code-cache.js').installCodeCache();
  run(require('../dist-cjs/cli/main.js'));
} else {
  import('../dist/cli/main.js').then(run);
}
