// Benchmark of the native layer (not a test): one injected syscall round trip, one batch
// round trip, and batches of 1/10/100/1000 syscalls through the stub, per call and per
// syscall. Needs a build (`npm run build`): imports from dist/. Run: node bench/native.js
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tracer } from '../dist/actors/tracer.js';
import { native } from '../dist/actors/native.js';
import { packCommands, stubCode } from '../dist/actors/stub.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const SYS_getpid = 39;

function startTarget() {
  const bin = join(mkdtempSync(join(tmpdir(), 'crr-bench-')), 'stub-target');
  const cc = spawnSync('gcc', ['-O2', '-I', join(root, 'native/stub'), '-o', bin, join(root, 'test/programs/stub-target.c')]);
  if (cc.status !== 0) throw new Error(String(cc.stderr));
  // A grandchild: libuv would reap ptrace stops of Node's own children.
  const sh = spawn('sh', ['-c', '"$0" & wait', bin], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve) =>
    sh.stdout.once('data', (d) => {
      const [pid, addr] = String(d).trim().split(' ');
      resolve({ pid: Number(pid), scratch: BigInt(`0x${addr}`), sh });
    }),
  );
}

async function measure(iterations, fn) {
  for (let i = 0; i < Math.min(200, iterations); i++) await fn(); // warm up
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  samples.sort();
  const mean = samples.reduce((a, b) => a + b, 0) / iterations;
  return { median: samples[iterations >> 1], p90: samples[Math.floor(iterations * 0.9)], mean };
}

const fmt = (us) => `${us.toFixed(2).padStart(9)} us`;
function row(label, r, perSyscall) {
  const extra = perSyscall !== undefined ? `   per syscall ${fmt(perSyscall)}` : '';
  console.log(`${label.padEnd(34)} median ${fmt(r.median)}  p90 ${fmt(r.p90)}${extra}`);
}

const target = await startTarget();
try {
  await tracer.seize(target.pid);
  await tracer.interrupt(target.pid);
  await tracer.waitStop(target.pid, 2000);
  tracer.processVmWrite(target.pid, target.scratch, stubCode());
  const { pid, scratch } = target;

  row('getSigmask (tracer round trip)', await measure(5000, () => tracer.getSigmask(pid)));
  row('injectSyscall getpid', await measure(3000, () => tracer.injectSyscall(pid, SYS_getpid)));
  row('runSyscall getpid (PTRACE_SYSCALL)', await measure(3000, () => tracer.runSyscall(pid, { scratch, nr: SYS_getpid })));
  const base = {};
  for (const n of [1, 10, 100, 1000]) {
    const commands = Array.from({ length: n }, () => ({ nr: SYS_getpid }));
    const list = packCommands(commands);
    const iterations = n >= 1000 ? 300 : 2000;
    // Raw: the list packed once, as a restore stage that reuses a batch would; then the client.
    const raw = await measure(iterations, () => native.runBatch(pid, { scratch, list }));
    base[n] = raw.median;
    row(`batch of ${n} (raw, packed once)`, raw, n > 1 ? (raw.median - base[1]) / (n - 1) : undefined);
    row(`batch of ${n} (client, packs each)`, await measure(iterations, () => tracer.runBatch(pid, { scratch, commands })));
  }
  console.log(`\none injected round trip ${fmt(base[1])} vs one syscall inside a batch ${fmt((base[1000] - base[1]) / 999)}`);
} finally {
  await tracer.kill(target.pid, 2000).catch(() => undefined);
  target.sh.kill('SIGKILL');
}
