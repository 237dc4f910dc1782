#!/usr/bin/env node
// Entry point for `npx crr`: the compiled CLI lives in dist/ (built by scripts/setup.sh).
import { setFlagsFromString } from 'node:v8';
// msgpackr's native string extractor (msgpackr-extract) costs ~25 ms to load and only pays off
// on large strings; the helper channel carries small messages, so the CLI runs without it.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
// Loading the modules and a first restore allocate ~10 MB: V8's young generation, doubling from
// 1 MB, took 7 scavenges (11-16 ms of pauses) to get there; growing it 16-fold takes 3 (7.5 ms).
// Its largest size (and so the memory a big restore keeps) is unchanged.
setFlagsFromString('--semi-space-growth-factor=16');
const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
