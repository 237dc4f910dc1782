// `dump({ trace })` and `crr dump --trace`: the file is a valid Chrome trace with the dump's
// stages (freeze, collect, write, finish) in order on the orchestrator track, one process track
// per dumped live task (named after its comm) holding its freeze and collect stages in that
// order, threads as sub-tracks, and `crr trace --json` reads it back with every task. The dumped
// programs are left running (--leave-running); the program harness kills and reaps them by PID.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProgram, requestCheck } from './lib/programs.js';
import { dump } from '../src/dump/index.js';
import { main } from '../src/cli/main.js';
import { createDumpTrace } from '../src/trace/dump-adapter.js';
import { buildModel } from '../src/trace/analyze.js';
import { ORCHESTRATOR_PID, validateChromeTrace, type ChromeTrace, type TraceEvent } from '../src/trace/format.js';

type Span = TraceEvent & { dur: number };
const spansOf = (trace: ChromeTrace, pid: number, cat: string) =>
  trace.traceEvents.filter((e): e is Span => e.ph === 'X' && e.pid === pid && e.cat === cat).sort((a, b) => a.ts - b.ts);
const processNames = (trace: ChromeTrace) =>
  new Map(trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, String(e.args!.name)]));

function outDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'crr-trace-dump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function stateOf(pid: number): string {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2)[0]!;
}

t.test('dump({ trace }) of a 20-process tree: stages in order, one track per live task', async (t) => {
  const prog = await startProgram(t, 'tree');
  const live = prog.tree().filter((pid) => stateOf(pid) !== 'Z');
  const dir = outDir(t);
  const file = join(dir, 'trace.json');
  const result = await dump({ pid: prog.pid, imagesDir: join(dir, 'images'), leaveRunning: true, trace: file });
  const trace = JSON.parse(readFileSync(file, 'utf8')) as ChromeTrace;
  t.same(validateChromeTrace(trace), [], 'valid Chrome trace');
  t.equal(trace.otherData?.command, 'dump', 'otherData says it is a dump');

  const steps = spansOf(trace, ORCHESTRATOR_PID, 'step');
  t.same(steps.map((s) => s.name), ['freeze', 'collect', 'write', 'finish'], 'the dump stages, in order');
  for (let i = 1; i < steps.length; i++) t.ok(Math.abs(steps[i]!.ts - steps[i - 1]!.ts - steps[i - 1]!.dur) < 1, `${steps[i]!.name} starts where ${steps[i - 1]!.name} ends`);
  const total = steps.reduce((sum, s) => sum + s.dur, 0) / 1000;
  t.ok(total <= result.ms && total >= result.ms * 0.5, `stages add up to ${total.toFixed(1)} of the dump's ${result.ms.toFixed(1)} ms`);

  const names = processNames(trace);
  t.same([...names.keys()].filter((pid) => pid !== ORCHESTRATOR_PID).sort((a, b) => a - b), live.slice().sort((a, b) => a - b), 'one track per live task');
  const [freeze, collect] = steps;
  for (const pid of live) {
    t.match(names.get(pid), new RegExp(`^task ${pid} \\(.+\\)$`), `task ${pid} named with its comm`);
    const stages = spansOf(trace, pid, 'stage');
    t.same(stages.map((s) => s.name), ['freeze', 'collect'], `task ${pid}: freeze then collect`);
    t.ok(stages[0]!.ts >= freeze!.ts - 1 && stages[0]!.ts + stages[0]!.dur <= freeze!.ts + freeze!.dur + 1, `task ${pid}: its freeze inside the freeze stage`);
    t.ok(stages[1]!.ts >= collect!.ts - 1 && stages[1]!.ts + stages[1]!.dur <= collect!.ts + collect!.dur + 1, `task ${pid}: its collect inside the collect stage`);
    const pages = spansOf(trace, pid, 'resource').filter((s) => s.args?.resource === 'pages');
    t.equal(pages.length, 1, `task ${pid}: one pages span`);
    t.ok(Number(pages[0]?.args?.bytes) > 0, `task ${pid}: pages span carries bytes`);
  }
  // Tasks are collected one after another: their collect stages do not overlap.
  const collects = live.map((pid) => spansOf(trace, pid, 'stage')[1]!).sort((a, b) => a.ts - b.ts);
  for (let i = 1; i < collects.length; i++) t.ok(collects[i]!.ts >= collects[i - 1]!.ts + collects[i - 1]!.dur - 1, `collect of ${collects[i]!.pid} after ${collects[i - 1]!.pid}`);

  const model = buildModel(trace);
  t.equal(model.command, 'dump');
  t.same(model.tasks.map((task) => task.pid), live.slice().sort((a, b) => a - b), 'the analyser sees every task');
  t.same(model.steps.map((s) => s.step), ['freeze', 'collect', 'write', 'finish']);
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `program passes after the dump: ${check.text}`);
});

t.test('crr dump --trace on a threaded program: threads as sub-tracks, crr trace reads it', async (t) => {
  const prog = await startProgram(t, 'threads', ['4']);
  const tids = readdirSync(`/proc/${prog.pid}/task`).map(Number).sort((a, b) => a - b);
  const dir = outDir(t);
  const file = join(dir, 'trace.json');
  t.equal(await main(['dump', '-t', String(prog.pid), '-D', join(dir, 'images'), '--leave-running', '--trace', file]), 0, 'crr dump exits 0');
  t.ok(existsSync(file), 'the trace file is written');
  const trace = JSON.parse(readFileSync(file, 'utf8')) as ChromeTrace;
  t.same(validateChromeTrace(trace), [], 'valid Chrome trace');
  const threadTracks = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === prog.pid).map((e) => e.tid);
  t.same(threadTracks.sort((a, b) => a - b), tids, `one sub-track per thread (${tids.length})`);
  const seizes = trace.traceEvents.filter((e) => e.ph === 'X' && e.pid === prog.pid && e.args?.resource === 'seize').map((e) => e.tid);
  t.same(seizes.sort((a, b) => a - b), tids, 'each thread seized on its own sub-track');

  let json = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => ((json += String(chunk)), true)) as typeof process.stdout.write;
  let code;
  try {
    code = await main(['trace', file, '--json']);
  } finally {
    process.stdout.write = write;
  }
  t.equal(code, 0, 'crr trace --json exits 0');
  const summary = JSON.parse(json) as { command: string; tasks: number; stages: Array<{ stage: string }> };
  t.equal(summary.command, 'dump');
  t.equal(summary.tasks, 1, 'one task');
  t.same(summary.stages.map((s) => s.stage), ['freeze', 'collect'], 'per-stage table of the dump');
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `program passes after the dump: ${check.text}`);
});

t.test('a failed dump still writes its trace, saying why', async (t) => {
  const dir = outDir(t);
  const file = join(dir, 'trace.json');
  await t.rejects(dump({ pid: 999999, imagesDir: join(dir, 'images'), trace: file }), /999999/);
  const trace = JSON.parse(readFileSync(file, 'utf8')) as ChromeTrace;
  t.same(validateChromeTrace(trace), [], 'valid Chrome trace');
  t.match(String(trace.otherData?.failed), /999999/, 'otherData.failed names the error');
  t.same(spansOf(trace, ORCHESTRATOR_PID, 'step').map((s) => s.name), ['freeze'], 'the stage it failed in is closed');
});

t.test('adapter on its own: spans start where the previous one of their kind ended', async (t) => {
  let clock = 0;
  const trace = createDumpTrace({ now: () => clock, threadGroup: (tid) => (tid === 11 ? 10 : tid), comm: (pid) => `p${pid}` });
  const at = (ms: number, e: Parameters<typeof trace.onEvent>[0]) => ((clock = ms), trace.onEvent(e));
  at(0, { type: 'stage', stage: 'freeze' });
  at(2, { type: 'seized', tid: 10 });
  at(3, { type: 'seized', tid: 11 });
  at(5, { type: 'seized', tid: 20 });
  at(6, { type: 'stage', stage: 'collect' });
  at(9, { type: 'pages', pid: 10, pages: 2, bytes: 8192, ms: 1 });
  at(10, { type: 'task', pid: 10, threads: 2, vmas: 3, fds: 4 });
  at(15, { type: 'pages', pid: 20, pages: 1, bytes: 4096, ms: 2 });
  at(16, { type: 'task', pid: 20, threads: 1, vmas: 1, fds: 0 });
  at(18, { type: 'stage', stage: 'write' });
  at(19, { type: 'stage', stage: 'finish' });
  at(20, { type: 'done', images: ['a', 'b'], ms: 20, left: 'running' });
  const out = trace.toChromeTrace();
  t.same(validateChromeTrace(out), []);
  const ms = (e: Span) => [e.name, e.ts / 1000, (e.ts + e.dur) / 1000];
  t.same(spansOf(out, ORCHESTRATOR_PID, 'step').map(ms), [['freeze', 0, 6], ['collect', 6, 18], ['write', 18, 19], ['finish', 19, 20]]);
  t.same(spansOf(out, 10, 'stage').map(ms), [['freeze', 0, 3], ['collect', 6, 10]]);
  t.same(spansOf(out, 20, 'stage').map(ms), [['freeze', 3, 5], ['collect', 10, 16]]);
  t.same(spansOf(out, 20, 'resource').filter((e) => e.args?.resource === 'pages').map(ms), [['pages', 13, 15]]);
  t.equal(processNames(out).get(10), 'task 10 (p10)');
  t.same(out.otherData, { tool: 'crr', command: 'dump', totalMs: 20, left: 'running', images: 2 });
});
