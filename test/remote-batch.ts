// The remote batch builder: data layout in the scratch area, splitting into stub-sized segments,
// stop-on-error flags, and result checks that name the syscall, errno and task.
import t from 'tap';
import { NativeError } from '../src/errors.js';
import { STUB_CMD_SIZE, STUB_DATA_OFFSET, STUB_MAX_COMMANDS, STUB_STOP_ON_ERROR } from '../src/actors/stub.js';
import { DATA_CAPACITY, RemoteBatch, type BatchTracer } from '../src/restore/remote.js';
import { isSyscallError, signed, SYS } from '../src/restore/remote-sys.js';

const SCRATCH = 0x7000_0000_0000n;

t.test('put returns aligned addresses in the data area and layout holds the bytes', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  const a = b.put(Buffer.from([1, 2, 3]));
  const s = b.putString('sleep');
  t.equal(a, SCRATCH + BigInt(STUB_DATA_OFFSET));
  t.equal(s, a + 8n, 'next chunk 8-byte aligned');
  b.call(SYS.prctl, [15, s]);
  const [seg] = b.layout();
  t.same([...seg!.data.subarray(0, 3)], [1, 2, 3]);
  t.equal(seg!.data.subarray(8, 14).toString('latin1'), 'sleep\0');
});

t.test('commands stop on error unless tolerated or checked by value', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  b.call(SYS.munmap, [1, 2]);
  b.call(SYS.rseq, [0, 0, 1, 0], { tolerate: [22] });
  b.call(SYS.preadv, [3, 0, 1, 0, 0], { expect: 4096n });
  t.same(b.layout()[0]!.commands.map((c) => c.flags), [STUB_STOP_ON_ERROR, 0, 0]);
});

t.test('a batch splits into segments at the command limit and at the data capacity', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  for (let i = 0; i < STUB_MAX_COMMANDS + 10; i++) b.call(SYS.getpid, []);
  t.same(b.layout().map((s) => s.commands.length), [STUB_MAX_COMMANDS, 10]);
  const d = new RemoteBatch(SCRATCH);
  const half = Math.floor(DATA_CAPACITY / 2) + 8;
  d.reserve(half, 1);
  const first = d.put(Buffer.alloc(half));
  d.call(SYS.getpid, [first]);
  d.reserve(half, 1);
  const second = d.put(Buffer.alloc(half));
  d.call(SYS.getpid, [second]);
  t.equal(d.layout().length, 2, 'second chunk did not fit: new segment');
  t.equal(second, first, 'each segment starts its data area afresh');
  t.throws(() => d.reserve(DATA_CAPACITY + 1), RangeError);
});

function fakeTracer(results: bigint[][], log: Array<{ data: number; commands: number }>): BatchTracer {
  let n = 0;
  return {
    runBatch: async (_pid, batch) => {
      if (batch.data) log.push({ data: batch.data.bytes.length, commands: -1 });
      log.push({ data: -1, commands: batch.list.length / STUB_CMD_SIZE });
      const r = results[n++]!;
      return { results: r, executed: r.length };
    },
  };
}

t.test('run: results in order across segments; data written before each segment', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  for (let i = 0; i < STUB_MAX_COMMANDS + 1; i++) b.call(SYS.getpid, []);
  b.putString('x');
  const log: Array<{ data: number; commands: number }> = [];
  const first = Array.from({ length: STUB_MAX_COMMANDS }, (_, i) => BigInt(i));
  const got = await b.run(fakeTracer([first, [99n]], log), 42);
  t.equal(got.length, STUB_MAX_COMMANDS + 1);
  t.equal(got[STUB_MAX_COMMANDS], 99n);
  t.same(log.map((l) => l.commands), [STUB_MAX_COMMANDS, -1, 1], 'segment 2 data written before it runs');
});

t.test('run: a failed command is a NativeError with syscall, errno name, task and purpose', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  b.call(SYS.getpid, []);
  b.call(SYS.mmap, [0x1000, 0x1000, 3, 0x32, -1, 0], { what: 'map VMA 0x1000-0x2000', expect: 0x1000n });
  b.call(SYS.getpid, []);
  const err = await b.run(fakeTracer([[7n, -12n]], []), 4242, { pid: 17288 }).catch((e) => e);
  t.ok(err instanceof NativeError);
  t.equal(err.syscall, 'mmap');
  t.equal(err.code, 'ENOMEM');
  t.equal(err.errno, 12);
  t.equal(err.pid, 17288);
  t.match(err.message, /map VMA 0x1000-0x2000/);

  const short = new RemoteBatch(SCRATCH);
  short.call(SYS.preadv, [3, 0, 1, 0, 0], { expect: 8192n, what: 'read pages' });
  const e2 = await short.run(fakeTracer([[4096n]], []), 1).catch((e) => e);
  t.equal(e2.syscall, 'preadv');
  t.match(e2.message, /returned 4096, expected 8192/);

  const tolerated = new RemoteBatch(SCRATCH);
  tolerated.call(SYS.rseq, [0, 0, 1, 0], { tolerate: [22] });
  t.same(await tolerated.run(fakeTracer([[-22n]], []), 1), [-22n], 'tolerated errno passes');
});

t.test('a purpose given as a function of the args is made only when its command fails', async (t) => {
  let made = 0;
  const what = (args: readonly (number | bigint)[]) => {
    made += 1;
    return `set the action of signal ${args[0]}`;
  };
  const shared = { what };
  const b = new RemoteBatch(SCRATCH);
  b.call(SYS.rt_sigaction, [1, 0, 0, 8], shared);
  b.call(SYS.rt_sigaction, [10, 0, 0, 8], shared);
  t.same(await b.run(fakeTracer([[0n, 0n]], []), 1), [0n, 0n]);
  t.equal(made, 0, 'not made for commands that succeed');
  const failing = new RemoteBatch(SCRATCH);
  failing.call(SYS.rt_sigaction, [1, 0, 0, 8], shared);
  failing.call(SYS.rt_sigaction, [10, 0, 0, 8], shared);
  const err = await failing.run(fakeTracer([[0n, -22n]], []), 1, { pid: 5 }).catch((e) => e);
  t.ok(err instanceof NativeError);
  t.equal(err.code, 'EINVAL');
  t.equal(err.syscall, 'rt_sigaction');
  t.match(err.message, /set the action of signal 10/, 'the failed command\'s own args');
  t.equal(made, 1);
});

t.test('an owner set on the batch names the failed command; the stub stopping early is EPROTO', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  b.owner = 'mm';
  b.call(SYS.prctl, [35, 1]);
  b.owner = 'sigact';
  b.call(SYS.rt_sigaction, [1, 0, 0, 8]);
  await b.run(fakeTracer([[0n, -14n]], []), 1).catch(() => undefined);
  t.equal(b.failedOwner, 'sigact');
  const short = new RemoteBatch(SCRATCH);
  short.call(SYS.getpid, []);
  short.call(SYS.getpid, []);
  const err = await short.run({ runBatch: async () => ({ results: [3n], executed: 1 }) }, 1).catch((e) => e);
  t.equal(err.code, 'EPROTO');
  t.match(err.message, /1 of 2 commands ran/);
});

t.test('packed arguments: numbers up to 2^53 and bigints (negative ones wrap) give the same bytes', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  b.call(SYS.mmap, [0x7fff_1234_5000, 0x7fff_1234_5000n, -1, -1n, 0xffff_ffff_ffff_ffffn, 0]);
  let list: Buffer | undefined;
  await b.run({ runBatch: async (_pid, batch) => ((list = batch.list), { results: [0n], executed: 1 }) }, 1);
  const words = Array.from({ length: 6 }, (_, i) => list!.readBigUInt64LE(8 + i * 8));
  t.same(words, [0x7fff_1234_5000n, 0x7fff_1234_5000n, 0xffff_ffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn, 0n]);
  t.equal(list!.readUInt32LE(0), SYS.mmap);
  t.equal(list!.readUInt32LE(56), STUB_STOP_ON_ERROR);
});

t.test('after the command list grows, a failed command is still found with its args and owner', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  b.owner = 'memory';
  for (let i = 0; i < 100; i++) b.call(SYS.munmap, [0x1000 * (i + 1), 0x1000]);
  b.owner = 'sigact';
  b.call(SYS.rt_sigaction, [12, 0, 0, 8], { what: (args) => `set the action of signal ${args[0]}` });
  b.owner = 'mm';
  b.call(SYS.prctl, [35, 1]);
  const results = [...Array.from({ length: 100 }, () => 0n), -22n];
  const err = await b.run(fakeTracer([results], []), 1).catch((e) => e);
  t.equal(err.syscall, 'rt_sigaction');
  t.match(err.message, /signal 12/);
  t.equal(b.failedOwner, 'sigact');
  const cmds = b.layout()[0]!.commands;
  t.equal(cmds.length, 102);
  t.same([cmds[99]!.nr, Number(cmds[99]!.args[0]), Number(cmds[99]!.args[1])], [SYS.munmap, 0x64000, 0x1000], 'packed commands kept across growth');
});

t.test('args are packed when a command is added: one array may be reused for the next', async (t) => {
  const b = new RemoteBatch(SCRATCH);
  const args = [0, 0, 0, 8];
  for (const sig of [1, 2, 3]) {
    args[0] = sig;
    args[1] = 0x7000_0004_9000 + sig * 32;
    b.call(SYS.rt_sigaction, args);
  }
  t.same(b.layout()[0]!.commands.map((c) => [Number(c.args[0]), Number(c.args[1]), Number(c.args[3])]), [1, 2, 3].map((sig) => [sig, 0x7000_0004_9000 + sig * 32, 8]));
});

t.test('signed: a result in the signed range as it is, an unsigned register value as its two\'s complement', async (t) => {
  t.equal(signed(-12n), -12n);
  t.equal(signed(0x7fff_ffff_ffff_ffffn), 0x7fff_ffff_ffff_ffffn);
  t.equal(signed(0xffff_ffff_ffff_fff4n), -12n);
  t.equal(signed(0x8000_0000_0000_0000n), -0x8000_0000_0000_0000n);
  t.equal(signed((1n << 64n) + 5n), 5n, 'bits above 64 are dropped');
  t.ok(isSyscallError(0xffff_ffff_ffff_f001n), '-4095 unsigned');
  t.ok(isSyscallError(-1n));
  t.notOk(isSyscallError(-4096n), 'below -4095 is an address, not an errno');
  t.notOk(isSyscallError(0n));
});
