// Benchmark (not a test): `crr dump` of one process holding 1 GiB of dirty anonymous memory,
// against a bare process_vm_readv of the same memory in 16 MiB chunks (no image writing).
// Run: node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/dump.ts [MiB] [DIR]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { tracer } from '../src/actors/tracer.js';
import { parseMaps } from '../src/dump/proc.js';

const mib = Number(process.argv[2] ?? 1024);
const base = process.argv[3] ?? tmpdir();

async function startHog(): Promise<number> {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'crr-bench-')), 'pid');
  const py = `import time\nb = bytearray(b'\\x5a') * (${mib} << 20)\nopen('${pidFile}.ready', 'w').close()\ntime.sleep(100000)\n`;
  spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; exec python3 -c "$1" </dev/null >/dev/null 2>&1', pidFile, py]);
  for (let i = 0; i < 3000; i++) {
    try {
      readFileSync(`${pidFile}.ready`);
      return Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      await sleep(10);
    }
  }
  throw new Error('memory hog did not start');
}

function kill(pid: number) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

// 1. Bare process_vm_readv of the largest anonymous mapping (the bytearray).
const pid1 = await startHog();
let readMs = 0;
let readBytes = 0;
try {
  const big = parseMaps(readFileSync(`/proc/${pid1}/maps`, 'utf8')).filter((m) => m.inode === 0).sort((a, b) => Number(b.end - b.start - (a.end - a.start)))[0]!;
  const chunk = 16 << 20;
  const t0 = performance.now();
  for (let a = big.start; a < big.end; a += BigInt(chunk)) {
    const len = Number(big.end - a < BigInt(chunk) ? big.end - a : BigInt(chunk));
    readBytes += tracer.processVmReadv(pid1, [{ addr: a, len }]).length;
  }
  readMs = performance.now() - t0;
} finally {
  kill(pid1);
}

// 2. A full dump of a fresh hog (killed at the end, as criu does by default).
const pid2 = await startHog();
const dir = mkdtempSync(join(base, 'crr-bench-dump-'));
try {
  const r = await dump({ pid: pid2, imagesDir: dir, onEvent: (e) => { if (e.type === "pages" || e.type === "stage") console.log(`  ${(performance.now()).toFixed(0)} ms: ${JSON.stringify(e)}`); } });
  const mbps = (bytes: number, ms: number) => ((bytes / 1e6) / (ms / 1000)).toFixed(0);
  console.log(`dirty anonymous memory: ${mib} MiB`);
  console.log(`process_vm_readv only:  ${readMs.toFixed(0)} ms, ${mbps(readBytes, readMs)} MB/s`);
  console.log(`crr dump (whole):       ${r.ms.toFixed(0)} ms, ${mbps(r.pagesBytes, r.ms)} MB/s of pages written to ${base}`);
} finally {
  kill(pid2);
  rmSync(dir, { recursive: true, force: true });
}
