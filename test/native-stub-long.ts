// tracer.runBatch with more commands than the stub's list holds (STUB_MAX_COMMANDS): run as
// consecutive lists, results in order across the cut, stop-on-error ends the whole batch. A
// dumper's kcmp batch against every task seen so far grows past 4,096 beyond ~1,000 tasks.
import t from 'tap';
import * as stub from '../src/actors/stub.js';
import { tracer } from '../src/actors/tracer.js';
import { startTarget } from './programs/native-target.js';

const SYS_close = 3;
const SYS_umask = 95;
const EBADF = 9n;

t.test('a batch longer than one stub list runs whole, in order, and stops where a command failed', async (t) => {
  const target = await startTarget();
  t.teardown(async () => {
    await tracer.kill(target.pid, 2000).catch(() => undefined);
    await target.stop();
  });
  const { pid, scratch } = target;
  await tracer.seize(pid);
  await tracer.interrupt(pid);
  await tracer.waitStop(pid, 2000);
  tracer.processVmWrite(pid, scratch, stub.stubCode());

  const n = stub.STUB_MAX_COMMANDS * 2 + 10;
  // umask returns the previous mask: result i proves command i-1 ran just before it, across the cuts.
  const commands = Array.from({ length: n }, (_, i) => ({ nr: SYS_umask, args: [i % 512] }));
  const all = await tracer.runBatch(pid, { scratch, commands });
  t.equal(all.executed, n);
  t.equal(all.results.length, n);
  t.equal(all.results.slice(1).findIndex((r, i) => r !== BigInt(i % 512)), -1, 'result i is the mask set by command i-1');

  const failAt = stub.STUB_MAX_COMMANDS + 5;
  const stopping = commands.map((c, i) => (i === failAt ? { nr: SYS_close, args: [-1], flags: stub.STUB_STOP_ON_ERROR } : c));
  const stopped = await tracer.runBatch(pid, { scratch, commands: stopping });
  t.equal(stopped.executed, failAt + 1, 'nothing after the failed command ran');
  t.equal(stopped.results[failAt], -EBADF);
  const next = await tracer.runBatch(pid, { scratch, commands: [{ nr: SYS_umask, args: [0] }] });
  t.same(next.results, [BigInt((failAt - 1) % 512)], 'the last mask set is the one before the failure');
});
