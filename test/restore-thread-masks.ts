// Blocked signal masks per thread across a dump and restore: the signals program's worker thread
// blocks SIGUSR1 on top of the main thread's set. Every thread gets its mask by PTRACE_SETSIGMASK
// (resources/regs.ts; new threads wait with all but SIGTRAP blocked until then): each restored
// thread must show exactly its dumped SigBlk.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { startProgram, waitFor } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

/** What a thread shows while glibc starts it: all signals but the two that cannot be blocked. */
const ALL_BLOCKED = 'fffffffffffbfeff';
const sigBlk = (pid: number, tid: number) => readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^SigBlk:\s*(\S+)$/m)?.[1];
const nsTid = (pid: number, tid: number) => Number(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^NSpid:.*\s(\d+)$/m)?.[1]);

t.test('every thread comes back with its own blocked mask', async (t) => {
  const prog = await startProgram(t, 'signals');
  const tids = readdirSync(`/proc/${prog.pid}/task`).map(Number);
  // glibc starts a thread with every signal blocked and sets the inherited mask as its first job:
  // the program may report ready before its worker got that far.
  const worker = tids.find((tid) => tid !== prog.pid)!;
  await waitFor('the worker to set its own mask', () => (sigBlk(prog.pid, worker) === ALL_BLOCKED ? undefined : true));
  const before = new Map(tids.map((tid) => [tid, sigBlk(prog.pid, tid)]));
  t.equal(before.size, 2, 'main thread and worker');
  t.not(before.get(prog.pid), before.get(worker), 'the two masks differ (the worker blocks SIGUSR1 too)');
  const dir = await dumpProgram(t, prog);
  const rt = await restoreProgram(t, prog, dir);
  const host = rt.result.rootHostPid;
  const after = new Map(readdirSync(`/proc/${host}/task`).map(Number).map((tid) => [nsTid(host, tid), sigBlk(host, tid)]));
  t.same([...after.keys()].sort(), [...before.keys()].sort(), 'the same TIDs');
  for (const [tid, mask] of before) t.equal(after.get(tid), mask, `thread ${tid}: SigBlk ${mask}`);
  t.equal((await rt.check()).text.trim(), 'PASS', 'and the program still passes its own check');
});
