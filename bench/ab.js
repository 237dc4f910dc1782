// A/B of one change that the code can switch by an environment variable: restores one checkpoint
// through the library over and over in this process, the variable set for every other restore,
// and compares the medians of wall time, machine CPU (/proc/stat) and this process's main-thread
// CPU. Alternating within one process cancels most of the host's drift, which on the shared
// 2-core VM moves restore times by 30% within minutes; separate processes per variant did not.
//   node bench/ab.js -D DIR --var NAME [--value V] [--pairs N]
// DIR: a checkpoint (crr dump or criu dump); restored in a fresh PID namespace each time.
import { readFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node bench/ab.js -D DIR --var NAME [--value V (default 1)] [--pairs N (default 10)]';
let args;
try {
  args = parseArgs({ options: { images: { type: 'string', short: 'D' }, var: { type: 'string' }, value: { type: 'string' }, pairs: { type: 'string' } } }).values;
} catch (err) {
  console.error(`ab: ${err.message}\n${USAGE}`);
  process.exit(2);
}
const pairs = Number(args.pairs ?? 10);
if (!args.images || !args.var || !Number.isInteger(pairs) || pairs < 1) {
  console.error(USAGE);
  process.exit(2);
}
setMaxListeners(0);
const { restore } = await import('../dist/index.js');

/** Busy CPU of the whole machine so far, in ms (user, nice, system, irq, softirq). */
function machineCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6]) * 10;
}
const mainThreadCpu = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;

const runs = { set: [], unset: [] };
// One uncounted pair first: the first restores of a process pay V8's compiler.
for (let i = 0; i < 2 * (pairs + 1); i++) {
  const set = i % 2 === 0;
  if (set) process.env[args.var] = args.value ?? '1';
  else delete process.env[args.var];
  const cpu0 = machineCpu();
  const main0 = mainThreadCpu();
  const t0 = performance.now();
  const signal = AbortSignal.timeout(300_000);
  setMaxListeners(0, signal);
  const restored = await restore({ imagesDir: args.images, pidNamespace: true, signal });
  const sample = { wall: performance.now() - t0, machine: machineCpu() - cpu0, main: mainThreadCpu() - main0 };
  await restored.kill();
  if (i >= 2) runs[set ? 'set' : 'unset'].push(sample);
}
const median = (samples, key) => samples.map((s) => s[key]).sort((a, b) => a - b)[samples.length >> 1].toFixed(0);
for (const [name, samples] of Object.entries(runs)) {
  const label = name === 'set' ? `${args.var}=${args.value ?? '1'}` : `${args.var} unset`;
  console.log(`${label.padEnd(24)} wall ${median(samples, 'wall')} ms, machine CPU ${median(samples, 'machine')} ms, main thread ${median(samples, 'main')} ms (${samples.length} restores)`);
}
