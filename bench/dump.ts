// Benchmark (not a test): `crr dump` of one process holding 1 GiB of dirty anonymous memory,
// against its floors in the same run: a bare process_vm_readv of the same memory (16 MiB chunks,
// a fresh Buffer each, and into one reused buffer), a bare write of as many bytes to a file in
// the same directory, and the pages stage alone (writePages) with either reader.
// Run: node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/dump.ts [MiB] [DIR]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { tracer } from '../src/actors/tracer.js';
import { parseMaps } from '../src/dump/proc.js';
import { readerInto, writePages } from '../src/dump/pages.js';
import { open } from 'node:fs/promises';

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

// 1. Bare process_vm_readv of the largest anonymous mapping (the bytearray), then the pages
// stage alone into a file with each reader.
const pid1 = await startHog();
const chunk = 16 << 20;
let readMs = 0;
let readIntoMs = 0;
let readBytes = 0;
const stage: Record<string, number> = {};
try {
  const big = parseMaps(readFileSync(`/proc/${pid1}/maps`, 'utf8')).filter((m) => m.inode === 0).sort((a, b) => Number(b.end - b.start - (a.end - a.start)))[0]!;
  let t0 = performance.now();
  for (let a = big.start; a < big.end; a += BigInt(chunk)) {
    const len = Number(big.end - a < BigInt(chunk) ? big.end - a : BigInt(chunk));
    readBytes += tracer.processVmReadv(pid1, [{ addr: a, len }]).length;
  }
  readMs = performance.now() - t0;
  const reused = Buffer.allocUnsafeSlow(chunk);
  const into = readerInto(pid1);
  t0 = performance.now();
  for (let a = big.start; a < big.end; a += BigInt(chunk)) {
    const len = Number(big.end - a < BigInt(chunk) ? big.end - a : BigInt(chunk));
    into([{ addr: a, len }], reused);
  }
  readIntoMs = performance.now() - t0;
  const runs = [{ vaddr: big.start, nrPages: Number((big.end - big.start) / 4096n), flags: 4 }];
  const dir = mkdtempSync(join(base, 'crr-bench-pages-'));
  try {
    for (const [name, reader] of [['fresh buffers', (iovs: Array<{ addr: bigint; len: number }>) => tracer.processVmReadv(pid1, iovs)], ['reused buffers', { into }]] as const) {
      const t = performance.now();
      await writePages(join(dir, 'pages.img'), runs, reader);
      stage[name] = performance.now() - t;
      rmSync(join(dir, 'pages.img'));
    }
    // The write floor: the same byte count from one reused buffer, 2 writes in flight.
    const fh = await open(join(dir, 'floor.img'), 'w');
    const buf = Buffer.alloc(4 << 20, 0x5a);
    const t = performance.now();
    const inFlight: Promise<unknown>[] = [];
    for (let off = 0; off < readBytes; off += buf.length) {
      if (inFlight.length >= 2) await inFlight.shift();
      inFlight.push(fh.write(buf, 0, Math.min(buf.length, readBytes - off), off));
    }
    await Promise.all(inFlight);
    stage['write floor'] = performance.now() - t;
    await fh.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
  console.log(`process_vm_readv only:  ${readMs.toFixed(0)} ms, ${mbps(readBytes, readMs)} MB/s (fresh Buffer per 16 MiB)`);
  console.log(`  into a reused buffer:  ${readIntoMs.toFixed(0)} ms, ${mbps(readBytes, readIntoMs)} MB/s`);
  for (const [name, ms] of Object.entries(stage)) console.log(`${name.padEnd(23)} ${ms.toFixed(0)} ms, ${mbps(readBytes, ms)} MB/s${name === 'write floor' ? ' (4 MiB writes, 2 in flight, no reads)' : ' (pages stage alone: read + write)'}`);
  console.log(`crr dump (whole):       ${r.ms.toFixed(0)} ms, ${mbps(r.pagesBytes, r.ms)} MB/s of pages written to ${base}`);
} finally {
  kill(pid2);
  rmSync(dir, { recursive: true, force: true });
}
