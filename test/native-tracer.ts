// The tracer thread against real tasks: seize/interrupt/stops, injected syscalls leaving the
// task as it was, regsets and masks, errno-named errors, 50 tracees at once, and EXITKILL when
// the process that traced them is SIGKILLed. Targets are grandchildren, killed by pid.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeError } from '../src/errors.js';
import { packCommands, STUB_CLONE_CHILD_LIST, STUB_DATA_OFFSET, stubCode } from '../src/actors/stub.js';
import { CLONE_THREAD_FLAGS, SYS } from '../src/restore/remote-sys.js';
import { packRegs } from '../src/restore/remote-threads.js';
import { NT_PRFPREG, NT_X86_XSTATE, TracerStopError, tracer } from '../src/actors/tracer.js';
import { pidGone, startTarget, targetBinary, waitGone, type Target } from './programs/native-target.js';

const SYS_getpid = 39;
const SYS_umask = 95;
const SYS_kill = 62;
const SIGUSR1 = 10;
const SYS_clone3 = SYS.clone3;
const SYS_gettid = 186;
const SYS_pause = 34;
const PTRACE_O_EXITKILL = 0x100000;

type Teardown = { teardown(fn: () => unknown): void };

async function traced(t: Teardown): Promise<Target> {
  const target = await startTarget();
  t.teardown(async () => {
    await tracer.kill(target.pid, 2000).catch(() => undefined);
    await target.stop();
  });
  await tracer.seize(target.pid);
  await tracer.interrupt(target.pid);
  return target;
}

t.test('seize, interrupt, inject getpid, detach: the task runs on as before', async (t) => {
  const target = await traced(t);
  const { pid } = target;
  t.match(await tracer.waitStop(pid, 2000), { kind: 'event', event: 'stop', pid });
  const before = await tracer.getRegs(pid);
  t.equal(before.orig_ax, 34n, 'stopped inside pause()');
  t.equal(await tracer.injectSyscall(pid, SYS_getpid), BigInt(pid));
  t.same(await tracer.getRegs(pid), before, 'registers put back');
  t.same(await tracer.listTracees(), [{ pid, pendingStops: 0, waiting: false, exited: false }]);
  await tracer.detach(pid);
  t.same(await tracer.listTracees(), []);
  process.kill(pid, 'SIGUSR1');
  t.equal(await target.nextLine(), 'pong 1', 'the signal handler still runs');
});

t.test('registers changed by a batch are restored by detach', async (t) => {
  const target = await traced(t);
  const { pid, scratch } = target;
  await tracer.waitStop(pid, 2000);
  const saved = await tracer.getRegs(pid);
  tracer.processVmWrite(pid, scratch, stubCode());
  await tracer.runBatch(pid, { scratch, commands: [{ nr: SYS_getpid }] });
  t.not((await tracer.getRegs(pid)).ip, saved.ip, 'the task sits in the stub');
  await tracer.detach(pid, { regs: saved });
  process.kill(pid, 'SIGUSR1');
  t.equal(await target.nextLine(), 'pong 1');
  process.kill(pid, 'SIGUSR1');
  t.equal(await target.nextLine(), 'pong 2');
});

t.test('regsets, signal mask, rseq and siginfo', async (t) => {
  const { pid } = await traced(t);
  await tracer.waitStop(pid, 2000);
  const xstate = await tracer.getRegset(pid, NT_X86_XSTATE);
  t.ok(xstate.length > 512, `xstate is ${xstate.length} bytes`);
  t.equal((await tracer.getRegset(pid, NT_PRFPREG)).length, 512);
  await tracer.setRegset(pid, NT_X86_XSTATE, xstate);
  t.same(await tracer.getRegset(pid, NT_X86_XSTATE), xstate);
  t.equal(await tracer.getSigmask(pid), 0n);
  await tracer.setSigmask(pid, 1n << BigInt(SIGUSR1 - 1));
  t.equal(await tracer.getSigmask(pid), 1n << BigInt(SIGUSR1 - 1));
  await tracer.setSigmask(pid, 0n);
  const rseq = await tracer.getRseqConfig(pid);
  t.equal(rseq.signature, 0x53053053, 'glibc registered rseq');
  t.ok(rseq.rseqAbiPointer > 0n);
  t.same(await tracer.peekSiginfo(pid, { shared: false }), [], 'nothing queued');
  const regs = await tracer.getRegs(pid);
  await tracer.setRegs(pid, { r15: 0x1234n });
  const edited = await tracer.getRegs(pid);
  t.equal(edited.r15, 0x1234n);
  t.equal(edited.ip, regs.ip, 'fields left out keep their values');
});

t.test('errors carry the errno name, errno, syscall and pid', async (t) => {
  const target = await traced(t);
  await tracer.waitStop(target.pid, 2000);
  const gone = await startTarget();
  await gone.stop();
  await t.rejects(tracer.seize(gone.pid), { code: 'ESRCH', errno: 3, syscall: 'ptrace(PTRACE_SEIZE)', pid: gone.pid });
  await t.rejects(tracer.getRegs(gone.pid), { code: 'ESRCH', pid: gone.pid });
  await t.rejects(tracer.seize(target.pid), { code: 'EPERM', pid: target.pid }, 'already traced');
  await t.rejects(tracer.seize(2), { code: 'EPERM', pid: 2 }, 'a kernel thread');
  const e = await tracer.seize(gone.pid).catch((x: unknown) => x);
  t.ok(e instanceof NativeError, 'a NativeError');
  t.throws(() => tracer.processVmRead(gone.pid, 0x1000n, 8), { code: 'ESRCH', syscall: 'process_vm_readv' });
  t.throws(() => tracer.processVmRead(target.pid, 0n, 8), { code: 'EFAULT', pid: target.pid });
  await t.rejects(tracer.waitStop(gone.pid), { code: 'ESRCH' }, 'not a tracee');
});

t.test('timeouts and unexpected stops are errors that describe the stop', async (t) => {
  const target = await traced(t);
  const { pid, scratch } = target;
  await tracer.waitStop(pid, 2000);
  await tracer.cont(pid);
  const started = Date.now();
  await t.rejects(tracer.waitStop(pid, 50), { code: 'ETIMEDOUT', pid });
  t.ok(Date.now() - started < 1000, 'the timeout fired on time');
  await tracer.interrupt(pid);
  await tracer.waitStop(pid, 2000);
  tracer.processVmWrite(pid, scratch, stubCode());
  const err = await tracer
    .runBatch(pid, { scratch, commands: [{ nr: SYS_kill, args: [pid, SIGUSR1] }, { nr: SYS_getpid }] })
    .catch((x: unknown) => x);
  t.ok(err instanceof TracerStopError, 'a TracerStopError');
  t.match(err, { code: 'UNEXPECTED_STOP', pid, stop: { kind: 'signal', signal: SIGUSR1 } });
  t.match(await tracer.kill(pid, 2000), { kind: 'killed', signal: 9 }, 'kill reaps as the tracer');
  t.ok(await waitGone(pid), 'gone');
});

t.test('50 tracees driven at once by the one tracer thread', async (t) => {
  const targets = await Promise.all(Array.from({ length: 50 }, () => traced(t)));
  await Promise.all(targets.map((x) => tracer.waitStop(x.pid, 5000)));
  for (const x of targets) tracer.processVmWrite(x.pid, x.scratch, stubCode());
  const bad: string[] = [];
  await Promise.all(
    targets.map(async (x, k) => {
      for (let round = 0; round < 5; round++) {
        // Each tracee gets its own mask sequence; results prove which task ran which command.
        const masks = Array.from({ length: 200 }, (_, i) => (k * 7 + round * 13 + i) % 512);
        const r = await tracer.runBatch(x.pid, { scratch: x.scratch, commands: masks.map((m) => ({ nr: SYS_umask, args: [m] })) });
        const ok = r.executed === 200 && r.results.slice(1).every((v, i) => v === BigInt(masks[i]!));
        if (!ok) bad.push(`tracee ${k} round ${round}`);
        const self = await tracer.runBatch(x.pid, { scratch: x.scratch, commands: [{ nr: SYS_getpid }] });
        if (self.results[0] !== BigInt(x.pid)) bad.push(`tracee ${k} getpid`);
        // The batch's data goes in by the tracer thread before its commands run.
        const mark = Buffer.from(`tracee ${k} round ${round}`);
        const at = x.scratch + BigInt(STUB_DATA_OFFSET) + BigInt(round * 64);
        await tracer.runBatch(x.pid, { scratch: x.scratch, commands: [{ nr: SYS_getpid }], data: { addr: at, bytes: mark } });
        if (!tracer.processVmRead(x.pid, at, mark.length).equals(mark)) bad.push(`tracee ${k} round ${round} data`);
      }
    }),
  );
  t.same(bad, [], 'every batch of every tracee came back right');
  t.equal((await tracer.listTracees()).length, 50);
});

/** clone3 of a plain thread (exit_signal 0, no set_tid) through the stub; args in the scratch data area. */
function cloneCommands(target: Target, count: number, childList?: (k: number) => bigint) {
  const data = target.scratch + BigInt(STUB_DATA_OFFSET);
  const args = Buffer.alloc(88);
  args.writeBigUInt64LE(BigInt(CLONE_THREAD_FLAGS), 0);
  tracer.processVmWrite(target.pid, data, args);
  return Array.from({ length: count }, (_, k) =>
    childList ? { nr: SYS_clone3, args: [data, 88, childList(k)], flags: STUB_CLONE_CHILD_LIST } : { nr: SYS_clone3, args: [data, 88] },
  );
}

async function stubbed(t: Teardown, options?: { traceClone: boolean }): Promise<Target> {
  const target = await startTarget();
  t.teardown(async () => {
    await tracer.kill(target.pid, 2000).catch(() => undefined);
    await target.stop();
  });
  await tracer.seize(target.pid, options);
  await tracer.interrupt(target.pid);
  await tracer.waitStop(target.pid, 2000);
  tracer.processVmWrite(target.pid, target.scratch, stubCode());
  return target;
}

/** Writes a stub list (header, then the commands) at `header` in the task. */
function writeList(pid: number, header: bigint, commands: Parameters<typeof packCommands>[0]) {
  const hdr = Buffer.alloc(64);
  hdr.writeBigUInt64LE(BigInt(commands.length), 0);
  tracer.processVmWrite(pid, header, Buffer.concat([hdr, packCommands(commands)]));
}

t.test('waitStop on an auto-attached thread the tracer has not reaped yet waits for its first stop', async (t) => {
  const target = await stubbed(t, { traceClone: true });
  const err = await tracer.runBatch(target.pid, { scratch: target.scratch, commands: cloneCommands(target, 1) }).catch((x: unknown) => x);
  t.match(err, { code: 'UNEXPECTED_STOP', stop: { kind: 'event', event: 'clone' } }, 'the clone event stops the batch');
  const tid = Number((err as TracerStopError).stop?.eventMsg);
  t.ok(tid > target.pid, `the new thread is ${tid}`);
  // Nothing else waits: the tracer must reap on behalf of a pid it only learns of here.
  t.match(await tracer.waitStop(tid, 2000), { kind: 'event', event: 'stop', pid: tid }, 'its first stop');
  t.ok((await tracer.listTracees()).some((x) => x.pid === tid), 'the thread is a tracee');
  await t.rejects(tracer.waitStop(1, 100), { code: 'ESRCH' }, 'a pid that is not a tracee still fails at once');
});

t.test('many threads run their own stub lists at once; bulk cpu state and detach', async (t) => {
  const target = await stubbed(t);
  const { pid, scratch } = target;
  // Threads made untraced, as restores make them: each parks in pause() from a list of its own.
  const headerOf = (k: number) => scratch + BigInt(STUB_DATA_OFFSET + 0x1000 + k * 256);
  for (let k = 0; k < 40; k++) writeList(pid, headerOf(k), [{ nr: SYS_pause, args: [k] }]);
  const made = await tracer.runBatch(pid, { scratch, commands: cloneCommands(target, 40, headerOf) });
  const tids = made.results.map(Number);
  t.equal(made.executed, 40);
  t.ok(tids.every((tid) => tid > pid), 'forty threads made');
  await tracer.seizeThreads(pid, tids, PTRACE_O_EXITKILL, 5000);
  // Each thread's list: umask(k) then gettid(); header k at its own place in the data area.
  const lists = tids.map((tid, k) => {
    writeList(pid, headerOf(k), [{ nr: SYS_umask, args: [k] }, { nr: SYS_gettid }]);
    return { tid, header: headerOf(k) };
  });
  await tracer.runThreadLists(pid, scratch, lists, 5000);
  const gettids = lists.map((l) => tracer.processVmRead(pid, l.header + 64n + 72n + 64n, 8).readBigInt64LE(0));
  t.same(gettids.map(Number), tids, 'every thread ran its own list (gettid is its own tid)');
  const executed = lists.map((l) => Number(tracer.processVmRead(pid, l.header + 8n, 8).readBigUInt64LE(0)));
  t.ok(executed.every((n) => n === 2), 'two commands each');
  // Bulk registers + xstate + masks: every thread gets its own r15 and mask.
  const regs = Buffer.concat(await Promise.all(tids.map(async (tid, k) => {
    const g = await tracer.getRegs(tid);
    g.r15 = BigInt(k + 1);
    return packRegs(g);
  })));
  const xstate = await tracer.getRegset(tids[0]!, NT_X86_XSTATE);
  await tracer.setThreadsCpu({ tids, regs, masks: tids.map((_, k) => BigInt(k) << 32n), xstate: Buffer.concat(tids.map(() => xstate)) });
  t.equal((await tracer.getRegs(tids[7]!)).r15, 8n, 'registers of thread 7');
  t.equal(await tracer.getSigmask(tids[9]!), (9n << 32n) & ~((1n << 8n) | (1n << 18n)) , 'mask of thread 9 (SIGKILL/SIGSTOP never blocked)');
  // An xstateOf of 0xffffffff leaves that thread's xstate as it is (a thread that inherited it).
  const roundUp = Buffer.from(xstate);
  roundUp.writeUInt32LE(0x1f80 | 0x4000, 24); // MXCSR: round towards +infinity
  const kept = (await tracer.getRegset(tids[1]!, NT_X86_XSTATE)).readUInt32LE(24);
  const xstateOf = Buffer.alloc(8);
  xstateOf.writeUInt32LE(0xffffffff, 4);
  await tracer.setThreadsCpu({ tids: tids.slice(0, 2), regs: regs.subarray(0, 2 * 216), masks: [0n, 0n], xstate: roundUp, xstateOf });
  t.equal((await tracer.getRegset(tids[0]!, NT_X86_XSTATE)).readUInt32LE(24), 0x1f80 | 0x4000, 'thread 0 got its new MXCSR');
  t.equal((await tracer.getRegset(tids[1]!, NT_X86_XSTATE)).readUInt32LE(24), kept, 'thread 1 (0xffffffff) kept its own');
  t.not(kept, 0x1f80 | 0x4000);
  await t.rejects(tracer.setThreadsCpu({ tids: [1], regs: regs.subarray(0, 216), masks: [0n] }), { code: 'ESRCH', pid: 1 });
});

t.test('detachAll lets the tracees run on', async (t) => {
  const target = await traced(t);
  await tracer.waitStop(target.pid, 2000);
  await tracer.detachAll([target.pid]);
  t.notOk((await tracer.listTracees()).some((x) => x.pid === target.pid), 'forgotten');
  process.kill(target.pid, 'SIGUSR1');
  t.equal(await target.nextLine(), 'pong 1');
  await t.rejects(tracer.detachAll([target.pid]), { code: 'ESRCH', syscall: 'ptrace(PTRACE_DETACH)' });
});

t.test('EXITKILL: tracees die with a SIGKILLed orchestrator', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-crash-'));
  const script = join(dir, 'crash.mjs');
  const addon = fileURLToPath(new URL('../build/Release/crr_native.node', import.meta.url));
  writeFileSync(script, `
    import { spawn } from 'node:child_process';
    import { createRequire } from 'node:module';
    const n = createRequire(import.meta.url)(${JSON.stringify(addon)});
    const pids = [];
    for (let i = 0; i < 3; i++) {
      const sh = spawn('sh', ['-c', '"$0" & wait', ${JSON.stringify(targetBinary())}], { stdio: ['ignore', 'pipe', 'inherit'] });
      const line = await new Promise((r) => sh.stdout.once('data', (d) => r(String(d))));
      const pid = Number(line.split(' ')[0]);
      await n.seize(pid, {});
      pids.push(pid, sh.pid);
    }
    console.log(pids.join(' '));
    setInterval(() => {}, 1000);
  `);
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const childExit = new Promise<void>((r) => child.once('exit', () => r()));
  const all: number[] = [];
  t.teardown(async () => {
    for (const pid of [child.pid!, ...all]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await childExit;
    for (const pid of all) await waitGone(pid);
  });
  const line = await new Promise<string>((r) => child.stdout!.once('data', (d) => r(String(d))));
  all.push(...line.trim().split(' ').map(Number));
  const tracees = all.filter((_, i) => i % 2 === 0);
  t.equal(tracees.length, 3);
  t.ok(tracees.every((pid) => !pidGone(pid)), 'tracees alive while traced');
  child.kill('SIGKILL');
  await childExit;
  for (const pid of tracees) t.ok(await waitGone(pid), `tracee ${pid} is gone`);
});
