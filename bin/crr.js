#!/usr/bin/env node
// Entry point for `npx crr`: the compiled CLI lives in dist/ (built by scripts/setup.sh).
import { main } from '../dist/cli/main.js';
process.exitCode = await main(process.argv.slice(2));
