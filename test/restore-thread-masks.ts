// Blocked signal masks per thread across a dump and restore: the signals program's worker thread
// blocks SIGUSR1 on top of the main thread's set. New threads set their own masks as they start
// (resources/threads.ts), the main thread gets its mask by ptrace (resources/regs.ts): each
// restored thread must show exactly its dumped SigBlk.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';

const sigBlk = (pid: number, tid: number) => readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^SigBlk:\s*(\S+)$/m)?.[1];
const nsTid = (pid: number, tid: number) => Number(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^NSpid:.*\s(\d+)$/m)?.[1]);

t.test('every thread comes back with its own blocked mask', async (t) => {
  const prog = await startProgram(t, 'signals');
  const tids = readdirSync(`/proc/${prog.pid}/task`).map(Number);
  const before = new Map(tids.map((tid) => [tid, sigBlk(prog.pid, tid)]));
  t.equal(before.size, 2, 'main thread and worker');
  t.not(before.get(prog.pid), before.get(tids.find((tid) => tid !== prog.pid)!), 'the two masks differ (the worker blocks SIGUSR1 too)');
  const dir = await dumpProgram(t, prog);
  const rt = await restoreProgram(t, prog, dir);
  const host = rt.result.rootHostPid;
  const after = new Map(readdirSync(`/proc/${host}/task`).map(Number).map((tid) => [nsTid(host, tid), sigBlk(host, tid)]));
  t.same([...after.keys()].sort(), [...before.keys()].sort(), 'the same TIDs');
  for (const [tid, mask] of before) t.equal(after.get(tid), mask, `thread ${tid}: SigBlk ${mask}`);
  t.equal((await rt.check()).text.trim(), 'PASS', 'and the program still passes its own check');
});
