// A remote batch handed from one kind to the next (runOrHandOn / takeHanded / runHanded in
// src/restore/remote.ts): memory, mm and sigact of a task share one tracer round trip, the
// batch runs at once when the next kind does not act for the task, and a failed command is
// reported under the kind that added it.
import t from 'tap';
import { StageError } from '../src/errors.js';
import { STUB_CMD_SIZE } from '../src/actors/stub.js';
import type { RestoreCtx, TaskRuntime } from '../src/restore/context.js';
import { runHanded, runOrHandOn, takeHanded, type BatchTracer } from '../src/restore/remote.js';
import { SYS } from '../src/restore/remote-sys.js';
import { sigact } from '../src/resources/sigact.js';
import { mainThread } from '../src/resources/main-thread.js';

const SCRATCH = 0x7000_0000_0000n;
const PID = 42;

/** A tracer that records each batch and answers each command with `answer(nr)` (0 by default). */
function fakeTracer(answer: (nr: number) => bigint = () => 0n) {
  const runs: number[][] = [];
  const tracer: BatchTracer = {
    async runBatch(_pid, batch) {
      const nrs = Array.from({ length: batch.list.length / STUB_CMD_SIZE }, (_, i) => batch.list.readUInt32LE(i * STUB_CMD_SIZE));
      runs.push(nrs);
      const results = nrs.map(answer);
      const failed = results.findIndex((r) => r < 0n);
      return { results: failed < 0 ? results : results.slice(0, failed + 1), executed: failed < 0 ? results.length : failed + 1 };
    },
  };
  return { tracer, runs };
}

/** The context a kind `resource` gets for the task, whose memory stage runs `kinds` in order. */
function ctxFor(resource: string, kinds: string[], runtime: TaskRuntime, tracer: BatchTracer): RestoreCtx {
  const perTask = new Map([[PID, new Map([['memory', kinds]])]]);
  return { pid: PID, stage: 'memory', resource, plan: { tasks: [], stages: [], sharedObjects: [], perTask }, runtime, tracer } as unknown as RestoreCtx;
}

const runtime = (): TaskRuntime => ({ pid: PID, preopened: new Map(), seized: false, zombie: false });

t.test('memory, mm and sigact: one round trip, in their order', async (t) => {
  const { tracer, runs } = fakeTracer();
  const rt = runtime();
  const kinds = ['memory', 'mm', 'sigact', 'threads-other'];
  const memory = takeHanded(ctxFor('memory', kinds, rt, tracer), SCRATCH, 'address space', 1);
  memory.batch.call(SYS.munmap, [0, 4096]);
  t.equal(await runOrHandOn(ctxFor('memory', kinds, rt, tracer), memory, 'mm', PID), false, 'memory hands on');
  const mm = takeHanded(ctxFor('mm', kinds, rt, tracer), SCRATCH, 'mm fields', 2, 5000);
  mm.batch.call(SYS.prctl, [35, 14]);
  t.equal(await runOrHandOn(ctxFor('mm', kinds, rt, tracer), mm, 'sigact', PID), false, 'mm hands on');
  t.same(runs, [], 'nothing ran yet');
  const sigact = takeHanded(ctxFor('sigact', kinds, rt, tracer), SCRATCH, 'sigactions', 3);
  sigact.batch.call(SYS.rt_sigaction, [1, 0, 0, 8]);
  await runHanded(ctxFor('sigact', kinds, rt, tracer), sigact, PID);
  t.same(runs, [[SYS.munmap, SYS.prctl, SYS.rt_sigaction]], 'one batch with every kind part');
  t.equal(sigact.start, 1, 'the span starts with the first kind');
  t.same(sigact.parts, ['address space', 'mm fields', 'sigactions']);
  t.equal(sigact.timeoutMs, 5000, 'the longest timeout asked for');
  t.equal(rt.handed, undefined, 'nothing left handed on');
});

t.test('a batch runs at once when the next kind does not act for the task', async (t) => {
  const { tracer, runs } = fakeTracer();
  const rt = runtime();
  const kinds = ['memory', 'other', 'mm'];
  const memory = takeHanded(ctxFor('memory', kinds, rt, tracer), SCRATCH, 'address space', 1);
  memory.batch.call(SYS.munmap, [0, 4096]);
  t.equal(await runOrHandOn(ctxFor('memory', kinds, rt, tracer), memory, 'mm', PID), true, 'ran');
  t.same(runs, [[SYS.munmap]]);
  t.equal(rt.handed, undefined);
  const alone = takeHanded(ctxFor('memory', ['memory'], rt, tracer), SCRATCH, 'address space', 1);
  alone.batch.call(SYS.munmap, [0, 4096]);
  t.equal(await runOrHandOn(ctxFor('memory', ['memory'], rt, tracer), alone, 'mm', PID), true, 'a kinds list without mm: ran');
});

t.test('a failed command is reported under the kind that added it', async (t) => {
  const { tracer } = fakeTracer((nr) => (nr === SYS.prctl ? -22n : 0n));
  const rt = runtime();
  const kinds = ['memory', 'mm', 'sigact'];
  const memory = takeHanded(ctxFor('memory', kinds, rt, tracer), SCRATCH, 'address space', 1);
  memory.batch.call(SYS.munmap, [0, 4096]);
  await runOrHandOn(ctxFor('memory', kinds, rt, tracer), memory, 'mm', PID);
  const mm = takeHanded(ctxFor('mm', kinds, rt, tracer), SCRATCH, 'mm fields', 2);
  mm.batch.call(SYS.prctl, [35, 14], { what: 'set the mm layout' });
  await runOrHandOn(ctxFor('mm', kinds, rt, tracer), mm, 'sigact', PID);
  const sigact = takeHanded(ctxFor('sigact', kinds, rt, tracer), SCRATCH, 'sigactions', 3);
  sigact.batch.call(SYS.rt_sigaction, [1, 0, 0, 8]);
  const err = await runHanded(ctxFor('sigact', kinds, rt, tracer), sigact, PID).catch((e: unknown) => e);
  t.ok(err instanceof StageError, 'a StageError');
  t.equal((err as StageError).resource, 'mm', 'names mm, not sigact');
  t.equal((err as StageError).code, 'EINVAL');
  t.equal((err as StageError).syscall, 'prctl');
  t.match((err as StageError).message, /set the mm layout/);
});

t.test('sigact sets only the actions that are not the default, and hands on to main-thread: one batch', async (t) => {
  const { tracer, runs } = fakeTracer();
  const rt = { ...runtime(), hostPid: 4242, scratch: SCRATCH };
  const kinds = ['sigact', 'main-thread'];
  const dfl = { sigaction: 0n, flags: 0n, restorer: 0n, mask: 0n };
  // Entry 0 is SIGHUP, 1 SIGINT, 8 SIGUSR1 (SIGKILL is not listed), 9 SIGSEGV.
  // Defaults in each form the decoder may give: bigint zeros, number zeros, fields left out.
  const forms: Array<Record<string, bigint | number>> = [dfl, { sigaction: 0, flags: 0, restorer: 0, mask: 0 }, {}];
  const sigactions = Array.from({ length: 62 }, (_, i) => forms[i % 3]!);
  sigactions[1] = { ...dfl, sigaction: 1n }; // SIG_IGN
  sigactions[8] = { ...dfl, flags: 0x10000000n }; // SIG_DFL with SA_RESTART: not the default
  const core = { tc: { sigactions }, thread_core: { futex_rla: 0x1000n, futex_rla_len: 24 }, thread_info: { clear_tid_addr: 0x2000n } };
  const images = { core, cores: new Map([[PID, core]]) };
  const spans: Array<{ name?: string }> = [];
  const ctx = (resource: string) =>
    ({ ...ctxFor(resource, kinds, rt, tracer), images, session: {}, now: () => 0, record: (span: { name?: string }) => spans.push(span) }) as unknown as RestoreCtx;
  await sigact.restore(ctx('sigact'));
  t.same(runs, [], 'sigact hands its commands on');
  await mainThread.restore(ctx('main-thread'));
  t.equal(runs.length, 1, 'one tracer round trip for both kinds');
  t.same(runs[0]!.filter((nr) => nr === SYS.rt_sigaction).length, 2, 'an rt_sigaction only for SIGINT and SIGUSR1');
  t.ok(runs[0]!.includes(SYS.set_robust_list) && runs[0]!.includes(SYS.set_tid_address), "then the main thread's own state");
  t.same(spans.map((s) => s.name), ['sigactions', 'sigactions + main thread']);
});
