#!/usr/bin/env node
// Entry point for `npx crr`: the compiled CLI lives in dist/ (built by scripts/setup.sh).
// msgpackr's native string extractor (msgpackr-extract) costs ~25 ms to load and only pays off
// on large strings; the helper channel carries small messages, so the CLI runs without it.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
