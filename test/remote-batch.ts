// The remote batch builder: data layout in the scratch area, splitting into stub-sized segments,
// stop-on-error flags, and result checks that name the syscall, errno and task.
import t from 'tap';
import { NativeError } from '../src/errors.js';
import { STUB_DATA_OFFSET, STUB_MAX_COMMANDS, STUB_STOP_ON_ERROR } from '../src/actors/stub.js';
import { DATA_CAPACITY, RemoteBatch, type BatchTracer } from '../src/restore/remote.js';
import { SYS } from '../src/restore/remote-sys.js';

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
      log.push({ data: -1, commands: batch.commands.length });
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
