// The remote-syscall stub: its binary layout agrees with stub.h and stub.ts, command packing,
// and its behaviour in a real task (results read back in order, stop-on-error, the bare entry).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as stub from '../src/actors/stub.js';
import { tracer } from '../src/actors/tracer.js';
import { startTarget, type Target } from './programs/native-target.js';

const SYS_getpid = 39;
const SYS_close = 3;
const SYS_umask = 95;
const EBADF = 9n;

t.test('stub.bin matches the layout of stub.h and stub.ts', async (t) => {
  const code = stub.stubCode();
  t.ok(code.length <= stub.STUB_CODE_SIZE, `code fits (${code.length} bytes)`);
  t.equal(code[stub.STUB_BATCH_TRAP_END - 1], 0xcc, 'int3 ends the batch entry');
  t.same([...code.subarray(stub.STUB_ENTRY_SYSCALL, stub.STUB_ENTRY_SYSCALL + 3)], [0x0f, 0x05, 0xcc]);
  const header = readFileSync(fileURLToPath(new URL('../native/stub/stub.h', import.meta.url)), 'utf8');
  const defines = new Map<string, number>();
  for (const m of header.matchAll(/^#define (CRR_STUB_\w+)[ \t]+(.+?)[ \t]*(?:\/\*.*)?$/gm)) {
    const expr = m[2]!.replace(/CRR_STUB_\w+/g, (n) => String(defines.get(n)));
    if (/^[\d\sx+*()a-fA-F-]+$/.test(expr)) defines.set(m[1]!, Function(`return (${expr})`)() as number);
  }
  const pairs: Array<[string, number]> = [
    ['ENTRY_BATCH', stub.STUB_ENTRY_BATCH], ['ENTRY_SYSCALL', stub.STUB_ENTRY_SYSCALL],
    ['BATCH_TRAP_END', stub.STUB_BATCH_TRAP_END], ['SYSCALL_TRAP_END', stub.STUB_SYSCALL_TRAP_END],
    ['CODE_SIZE', stub.STUB_CODE_SIZE], ['HEADER_OFFSET', stub.STUB_HEADER_OFFSET],
    ['HEADER_SIZE', stub.STUB_HEADER_SIZE], ['CMDS_OFFSET', stub.STUB_CMDS_OFFSET],
    ['CMD_SIZE', stub.STUB_CMD_SIZE], ['MAX_COMMANDS', stub.STUB_MAX_COMMANDS],
    ['DATA_OFFSET', stub.STUB_DATA_OFFSET], ['SCRATCH_SIZE', stub.STUB_SCRATCH_SIZE],
    ['STOP_ON_ERROR', stub.STUB_STOP_ON_ERROR],
  ];
  for (const [name, value] of pairs) t.equal(defines.get(`CRR_STUB_${name}`), value, name);
});

t.test('packCommands writes crr_stub_cmd structs', async (t) => {
  const buf = stub.packCommands([{ nr: 9, args: [1, -1n, 2n ** 63n, 0x1_0000_0001], flags: 1 }, { nr: 39 }]);
  t.equal(buf.length, 2 * stub.STUB_CMD_SIZE);
  t.equal(buf.readBigUInt64LE(0), 9n);
  t.equal(buf.readBigUInt64LE(8), 1n);
  t.equal(buf.readBigInt64LE(16), -1n);
  t.equal(buf.readBigUInt64LE(24), 2n ** 63n);
  t.equal(buf.readBigUInt64LE(32), 0x1_0000_0001n);
  t.equal(buf.readBigUInt64LE(56), 1n, 'flags');
  t.equal(buf.readBigInt64LE(64), 0n, 'result left for the stub');
  t.equal(buf.readBigUInt64LE(72), 39n);
  t.throws(() => stub.packCommands(Array.from({ length: stub.STUB_MAX_COMMANDS + 1 }, () => ({ nr: 39 }))), RangeError);
});

async function seizedWithStub(t: { teardown(fn: () => unknown): void }): Promise<Target> {
  const target = await startTarget();
  t.teardown(async () => {
    await tracer.kill(target.pid, 2000).catch(() => undefined);
    await target.stop();
  });
  await tracer.seize(target.pid);
  await tracer.interrupt(target.pid);
  await tracer.waitStop(target.pid, 2000);
  tracer.processVmWrite(target.pid, target.scratch, stub.stubCode());
  return target;
}

t.test('a batch runs in the task and every result comes back in order', async (t) => {
  const { pid, scratch } = await seizedWithStub(t);
  const one = await tracer.runBatch(pid, { scratch, commands: [{ nr: SYS_getpid }] });
  t.same(one, { results: [BigInt(pid)], executed: 1 });
  // umask returns the previous mask, so each result proves the one before it ran, in order.
  const commands = Array.from({ length: 1000 }, (_, i) => ({ nr: SYS_umask, args: [i % 512] }));
  const big = await tracer.runBatch(pid, { scratch, commands });
  t.equal(big.executed, 1000);
  t.equal(big.results.length, 1000);
  const wrong = big.results.slice(1).findIndex((r, i) => r !== BigInt(i % 512));
  t.equal(wrong, -1, 'result i is the mask set by command i-1');
  const again = await tracer.runBatch(pid, { scratch, commands: [{ nr: SYS_umask, args: [0o22] }] });
  t.same(again.results, [BigInt(999 % 512)]);
});

t.test('STOP_ON_ERROR stops after the failing command', async (t) => {
  const { pid, scratch } = await seizedWithStub(t);
  const commands = [
    { nr: SYS_getpid },
    { nr: SYS_close, args: [-1], flags: stub.STUB_STOP_ON_ERROR },
    { nr: SYS_getpid },
  ];
  const stopped = await tracer.runBatch(pid, { scratch, commands });
  t.same(stopped, { results: [BigInt(pid), -EBADF], executed: 2 });
  const carryOn = await tracer.runBatch(pid, { scratch, commands: commands.map((c) => ({ ...c, flags: 0 })) });
  t.same(carryOn, { results: [BigInt(pid), -EBADF, BigInt(pid)], executed: 3 });
  const empty = await tracer.runBatch(pid, { scratch, commands: [] });
  t.same(empty, { results: [], executed: 0 });
});

t.test('the bare entry runs one syscall and can stop at its exit', async (t) => {
  const { pid, scratch } = await seizedWithStub(t);
  t.equal(await tracer.runSyscall(pid, { scratch, nr: SYS_getpid }), BigInt(pid));
  t.equal(await tracer.runSyscall(pid, { scratch, nr: SYS_close, args: [-1] }), -EBADF);
  t.equal(await tracer.runSyscall(pid, { scratch, nr: SYS_getpid, stopAtExit: true }), BigInt(pid));
  const regs = await tracer.getRegs(pid);
  t.equal(regs.ip, scratch + BigInt(stub.STUB_ENTRY_SYSCALL + 2), 'left right after the syscall instruction');
  t.equal(regs.ax, BigInt(pid));
  await tracer.cont(pid);
  const trap = await tracer.waitStop(pid, 2000);
  t.match(trap, { kind: 'signal', signal: 5 }, 'then runs into the int3');
});
