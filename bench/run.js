// `npm run bench` (full) and `npm run bench -- --quick` (CI: small sizes, 3 runs, checks that the
// bench works, never fails on noise). For each workload: build it, dump it with crr's library,
// restore it once uncounted (a warm-up) and then several times (median, min, max, per-step
// breakdown), and measure the native floor of the same job in the same run; then print ratios and
// a pass/miss per target of issue 8.
// Plain ESM importing crr from dist/ (npm run build first); bench/native.js and bench/dump.ts
// run at the end as their own sections.
// Options: see USAGE (--help).
import { spawnSync } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPrograms, dropCaches, killPids, runFloor, startWorkload } from './lib/procs.js';
import { cliRestores, dumpWorkload, largestPagesFile, libraryRestores, loadCrr, oneLine, pagesBytes } from './lib/measure.js';
import { mbps, stepMedians, summary } from './lib/stats.js';
import { evaluateTargets, printReport } from './lib/report.js';

const root = fileURLToPath(new URL('../', import.meta.url));
// bin/crr.js's own test of which build it runs.
const { commonJsIsCurrent } = createRequire(import.meta.url)('../bin/common-js-current.js');
const USAGE = `usage: npm run bench -- [--quick] [--runs N] [--only REGEX] [--json FILE] [--no-extras]
  --quick      small sizes, 3 runs (what CI runs: checks the bench works, not its speed)
  --runs N     counted restores per workload (default 5, quick 3)
  --only REGEX only the workloads whose names match
  --json FILE  write every figure here (rewritten after each workload)
  --no-extras  skip the native and dump sections at the end`;
let args;
try {
  args = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'string' },
      'no-extras': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (err) {
  console.error(`bench: ${err.message}\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const quick = args.quick ?? false;
const runs = Number(args.runs ?? (quick ? 3 : 5));
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`bench: --runs takes a whole number of at least 1, not ${args.runs}\n${USAGE}`);
  process.exit(2);
}
const only = args.only ? new RegExp(args.only) : undefined;
const onRun = () => process.stdout.write('.');

// Variants re-restore a workload's dump with other options: the worker pool on and off
// (restore()'s `workersFrom`: decode images in piscina workers from this many tasks; 0 = never),
// the CLI instead of the library, and lazy pages (`lazyPages`: the time until the tree runs, its
// memory still to come; no target judges it).
const FULL = [ // cheap workloads first: a long run reports them early (--json is rewritten after each)
  { kind: 'tree', size: 1, variants: ['cli'] },
  { kind: 'tree', size: 100 },
  { kind: 'threads', size: 1 },
  { kind: 'threads', size: 100 },
  { kind: 'threads', size: 1000 },
  { kind: 'threads', size: 10000 },
  { kind: 'memory', size: 1024, variants: ['cold'] },
  // Not a workload of issue 8 (no target): memory the process keeps in transparent huge pages.
  { kind: 'memory', size: 1024, thp: true },
  { kind: 'memory', size: 4096, variants: ['cold', 'lazy'] },
  { kind: 'tree', size: 1000, variants: ['pool=on', 'pool=off', 'lazy'] },
  { kind: 'tree', size: 4000 },
];
const QUICK = [
  { kind: 'tree', size: 1, variants: ['cli'] },
  { kind: 'tree', size: 100, variants: ['pool=on', 'pool=off'] },
  { kind: 'threads', size: 1 },
  { kind: 'threads', size: 100 },
  { kind: 'memory', size: 64, variants: ['cold', 'lazy'] },
];

const WORKLOAD = {
  tree: { args: (n) => [n, 1], expect: (n) => ({ comm: 'tree', tasks: n, threads: 1 }) },
  threads: { args: (n) => [n], expect: (n) => ({ comm: 'threads', tasks: 1, threads: n }) },
  memory: { args: (n, w) => (w.thp ? [n, 'thp'] : [n]), expect: () => ({ comm: 'memory', tasks: 1, threads: 1 }) },
};

// Every restore task actor listens to the run's AbortSignal: thousands of listeners are expected.
setMaxListeners(0);

const livePids = new Set();
process.once('SIGINT', async () => {
  await killPids([...livePids], 5000);
  process.exit(130);
});

const nameOf = (w) => `${w.kind}-${w.size}${w.thp ? ' thp' : ''}`;

function floorFor(w, imagesDir, cold) {
  // Median of 3 at every size: a single tree-1000 floor read 532 ms as the first run after a dump
  // and 270 ms on the next five (memory new to the VM costs more, docs/PERFORMANCE.md).
  const repeats = quick ? 1 : 3;
  if (w.kind === 'tree') {
    const samples = Array.from({ length: repeats }, () => runFloor(root, 'tree', [w.size, 1]).ready_ms);
    return { label: 'fork+touch', ms: summary(samples).median };
  }
  if (w.kind === 'threads') {
    const samples = Array.from({ length: repeats }, () => runFloor(root, 'threads', [w.size]).ready_ms);
    return { label: 'pthread_create', ms: summary(samples).median };
  }
  const pages = largestPagesFile(imagesDir);
  if (!pages) throw new Error('the dump wrote no pages file');
  const fill = runFloor(root, 'fill', [pages, quick ? 1 : 3, ...(cold ? ['cold'] : [])]);
  const median = fill.repeats > 1 ? ` (median of ${fill.repeats})` : '';
  return { label: `${cold ? 'cold ' : ''}fill ${fill.fastest_fill}${median}`, mbps: fill.fastest_fill_mbps, fill };
}

function withFloor(row, w, imagesDir, cold) {
  try {
    row.floor = floorFor(w, imagesDir, cold);
  } catch (err) {
    row.floorError = oneLine(err);
  }
  return row;
}

function finishRow(row, r) {
  if (r.error) row.error = r.error;
  if (r.walls?.length && !r.error) row.restore = summary(r.walls);
  if (r.steps?.length) row.steps = stepMedians(r.steps);
  if (r.cpus?.length && !r.error) row.mainCpu = summary(r.cpus);
  if (r.incomplete) row.incomplete = r.incomplete;
  if (r.cli) row.cli = r.cli; // the CLI with the environment as is, and node -e 0 (report.js cliNotes)
  if (row.restore && row.floor && !row.lazy) {
    if (row.kind === 'memory') {
      row.memoryMbps = mbps(row.pagesBytes, row.restore.median);
      row.ratio = row.memoryMbps / row.floor.mbps;
    } else row.ratio = row.restore.median / row.floor.ms;
  }
  return row;
}

async function benchWorkload(crr, w) {
  const name = nameOf(w);
  const spec = WORKLOAD[w.kind];
  const expect = spec.expect(w.size);
  const dir = mkdtempSync(join(tmpdir(), `crr-bench-${name.replace(/ /g, '-')}-`));
  const imagesDir = join(dir, 'images');
  const rows = [];
  const base = { name, kind: w.kind, size: w.size, ...(w.thp ? { thp: true } : {}) };
  try {
    if (crr.error) return [{ ...base, error: crr.error }];
    let pids;
    try {
      pids = await startWorkload(join(root, 'bench/workloads/build', w.kind), spec.args(w.size, w), join(dir, 'ready'), 30000 + 20 * w.size);
      pids.forEach((p) => livePids.add(p));
      const dumped = await dumpWorkload(crr.lib, pids[0], imagesDir);
      base.dump = { ms: dumped.ms, pagesBytes: dumped.pagesBytes };
      // The dump's pages are still dirty in the page cache; their writeback would start some 30 s
      // later (vm.dirty_expire_centisecs) and take CPU from the restores being measured.
      spawnSync('sync', [], { stdio: 'ignore' });
    } catch (err) {
      return [withFloor({ ...base, error: `dump: ${oneLine(err)}` }, w, imagesDir, false)];
    } finally {
      if (pids) await killPids(pids);
      pids?.forEach((p) => livePids.delete(p));
    }
    base.pagesBytes = pagesBytes(imagesDir);
    const timeoutMs = 120000 + 50 * w.size;
    const first = withFloor({ ...base }, w, imagesDir, false);
    // One restore first, not counted: the library's figures are of a process that has restored
    // this workload before (code compiled, as in an embedder's long-lived process); the CLI row
    // is the cold case. Its time is printed beside.
    const warmup = await libraryRestores(crr.lib, imagesDir, 1, expect, { timeoutMs, onRun });
    if (warmup.error) {
      rows.push(finishRow(first, warmup));
      return rows;
    }
    first.warmupMs = warmup.walls[0];
    rows.push(finishRow(first, await libraryRestores(crr.lib, imagesDir, runs, expect, { timeoutMs, onRun })));
    for (const variant of w.variants ?? []) {
      const row = { ...base, name: `${name} ${variant}`, variant };
      if (variant === 'cli') {
        row.floor = first.floor;
        row.note = 'wall time from spawning node bin/crr.js to its "restored" line';
        // bin/crr.js runs dist/ (ES modules, no code cache) when dist-cjs/ is older: not the CLI as built.
        if (!commonJsIsCurrent()) row.note += '; WARNING: dist-cjs/ is older than dist/, so bin/crr.js ran dist/ (run npm run build:ts first)';
        rows.push(finishRow(row, await cliRestores(root, imagesDir, runs, expect, timeoutMs, onRun)));
      } else if (variant.startsWith('pool=')) {
        row.floor = first.floor;
        const extra = { workersFrom: variant === 'pool=on' ? 1 : 0 };
        row.note = `restore({ workersFrom: ${extra.workersFrom} })`;
        rows.push(finishRow(row, await libraryRestores(crr.lib, imagesDir, runs, expect, { extra, timeoutMs, onRun })));
      } else if (variant === 'lazy') {
        row.lazy = true;
        row.floor = first.floor;
        row.note = 'restore({ lazyPages: true }): until the tree runs; its memory comes after, from crr-lazy-pages';
        rows.push(finishRow(row, await libraryRestores(crr.lib, imagesDir, runs, expect, { extra: { lazyPages: true }, timeoutMs, onRun })));
      } else if (variant === 'cold') {
        if (!dropCaches()) {
          rows.push({ ...row, error: 'cannot drop caches here (echo 3 > /proc/sys/vm/drop_caches failed)' });
          continue;
        }
        withFloor(row, w, imagesDir, true);
        rows.push(finishRow(row, await libraryRestores(crr.lib, imagesDir, runs, expect, { beforeRun: dropCaches, timeoutMs, onRun })));
      }
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runExtra(label, args) {
  console.log(`\n== ${label}`);
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 600000 });
  const text = `${r.stdout ?? ''}`.trim();
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `${r.stderr ?? ''}`.trim().split('\n').pop();
    console.log(`not measured: ${label} exited ${r.status ?? r.signal}: ${why}`);
  }
  if (text) console.log(text);
  return { label, ok: r.status === 0, output: text };
}

function saveJson(extras) {
  if (!args.json) return;
  const uname = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
  const targets = evaluateTargets(rows);
  writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), kernel: uname, quick, runs, rows, targets, extras }, null, 2));
}

const started = performance.now();
buildPrograms(root);
const crr = await loadCrr(root);
const rows = [];
for (const w of quick ? QUICK : FULL) {
  if (only && !only.test(nameOf(w))) continue;
  const t0 = performance.now();
  process.stdout.write(`${nameOf(w)}: `);
  const got = await benchWorkload(crr, w);
  rows.push(...got);
  saveJson([]);
  console.log(` ${got.map((r) => (r.error ? 'not measured' : r.incomplete ? 'incomplete' : 'measured')).join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
const targets = evaluateTargets(rows);
saveJson([]);
printReport(rows, targets, { quick });
const extras = [];
if (!args['no-extras']) {
  extras.push(runExtra('bench/native.js: tracer round trips and stub batches', ['bench/native.js']));
  const loader = './node_modules/@tapjs/typescript/dist/esm/import.mjs';
  extras.push(runExtra(`bench/dump.ts: dump of ${quick ? 64 : 1024} MiB vs process_vm_readv`, [`--import=${loader}`, 'bench/dump.ts', String(quick ? 64 : 1024)]));
}
console.log(`\nbench ${quick ? 'quick' : 'full'} mode done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
saveJson(extras);
// The crr library keeps the tracer thread alive; the bench is done.
process.exit(0);
