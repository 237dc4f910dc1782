// Issue 5's round trips: every self-checking test program (docs/TEST-PROGRAMS.md) is dumped by
// crr (which kills it), restored, and asked to check itself: in a fresh PID namespace twice in a
// row from the same images, and detached (criu -d) at its original PIDs. Every restored process
// is killed and waited out by PID, whatever the outcome.
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tracer } from '../src/actors/tracer.js';
import { readImage } from '../src/images/reader.js';
import { restore, type RestoreResult } from '../src/restore/index.js';
import { bufferFeatures } from '../src/restore/remote-regs.js';
import { dumpProgram } from './lib/program-roundtrip.js';
import { killTree, requestCheck, startProgram, type Running } from './lib/programs.js';

interface Case {
  name: string;
  args: string[];
  /** How long the check may take (nanosleep finishes its sleep first; tree gathers 18 answers). */
  checkMs: number;
}

const CASES: Case[] = [
  { name: 'mem-pattern', args: [], checkMs: 20_000 },
  { name: 'threads', args: ['8'], checkMs: 20_000 },
  { name: 'threads', args: ['16'], checkMs: 20_000 },
  { name: 'syscall-wait', args: ['read'], checkMs: 20_000 },
  { name: 'syscall-wait', args: ['nanosleep'], checkMs: 20_000 },
  { name: 'syscall-wait', args: ['futex'], checkMs: 20_000 },
  { name: 'syscall-wait', args: ['waitpid'], checkMs: 20_000 },
  { name: 'fds', args: [], checkMs: 20_000 },
  { name: 'sigstate', args: [], checkMs: 20_000 },
  { name: 'tree', args: [], checkMs: 30_000 },
  { name: 'counter', args: [], checkMs: 20_000 },
  { name: 'mlock', args: [], checkMs: 20_000 },
];

const only = process.env['CRR_RT_ONLY'];
const label = (c: Case) => [c.name, ...c.args].join(' ');

/**
 * The program's files as they were at dump time. A check writes to some of them (fds appends,
 * counter keeps counting), and restoring from the same images needs the files the images name,
 * as with criu: put them back (same inodes, so the images still match) before a second restore.
 */
function snapshotFiles(t: Tap.Test, prog: Running): () => void {
  const saved = mkdtempSync(join(tmpdir(), 'crr-rt-files-'));
  t.teardown(() => rmSync(saved, { recursive: true, force: true }));
  const names = readdirSync(prog.dir).filter((n) => n !== 'result' && !n.startsWith('result.tmp') && statSync(join(prog.dir, n)).isFile());
  for (const n of names) copyFileSync(join(prog.dir, n), join(saved, n));
  return () => {
    for (const n of names) copyFileSync(join(saved, n), join(prog.dir, n));
  };
}

async function checkRestored(t: Tap.Test, result: RestoreResult, prog: Running, c: Case, what: string): Promise<void> {
  const r = await requestCheck(result.rootHostPid, prog.resultFile, c.checkMs).catch((e: Error) => ({ pass: false, text: e.message }));
  t.equal(r.text, 'PASS', `${what}: ${label(c)} checks itself after restore`);
}

/** The tree sees a /proc of its PID namespace (in a mount namespace of its own), the host keeps its own. */
function procOfItsOwn(t: Tap.Test, result: RestoreResult): void {
  const host = result.rootHostPid;
  t.not(readlinkSync(`/proc/${host}/ns/mnt`), readlinkSync('/proc/self/ns/mnt'), 'restored in a mount namespace of its own');
  const stat = readFileSync(`/proc/${host}/root/proc/${result.rootPid}/stat`, 'utf8');
  t.match(stat, new RegExp(`^${result.rootPid} \\(`), 'its /proc lists it under its PID in the namespace');
  t.equal(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => / - proc /.test(l)).length, 1, 'no proc mount leaked to the host');
}

t.test('xstate buffers from PTRACE_GETREGSET name their features by XCR0 at sw_reserved[0]', async (t) => {
  const ptraceForm = Buffer.alloc(1024);
  ptraceForm.writeBigUInt64LE(0x2e7n, 464);
  t.equal(bufferFeatures(ptraceForm), 0x2e7n, 'ptrace form: XCR0');
  const signalForm = Buffer.alloc(1024);
  signalForm.writeUInt32LE(0x46505853, 464);
  signalForm.writeBigUInt64LE(7n, 472);
  t.equal(bufferFeatures(signalForm), 7n, 'signal-frame form: xfeatures after the magic');
  t.equal(bufferFeatures(Buffer.alloc(512)), 3n, 'a bare legacy area: x87 and SSE');
});

t.test('a dumped thread keeps the upper halves of its ymm registers, and its exit is not left in the tracer', async (t) => {
  if (only && !only.includes('threads')) return;
  const prog = await startProgram(t, 'threads', ['2']);
  const imagesDir = await dumpProgram(t, prog);
  const pstree = readImage(join(imagesDir, 'pstree.img')).all()[0] as { threads: number[] };
  // A thread's exit left queued in the tracer would be the first stop of the thread a restore at
  // the same TID creates (clone3 UNEXPECTED_STOP "killed 9").
  const left = (await tracer.listTracees()).map((e) => e.pid).filter((pid) => pstree.threads.includes(pid));
  t.same(left, [], 'the dump leaves no exit of a dumped thread queued in the tracer');
  for (const tid of pstree.threads.slice(1)) {
    const core = readImage(join(imagesDir, `core-${tid}.img`)).all()[0] as any;
    const ymmh = core.thread_info?.fpregs?.xsave?.ymmh_space as number[] | undefined;
    t.ok(ymmh && ymmh.slice(48, 64).some((w) => w !== 0), `thread ${tid}: ymm12..15 upper halves recorded`);
  }
});

for (const c of CASES) {
  if (only && !label(c).includes(only)) continue;

  t.test(`${label(c)}: dump, then restore twice in a row in fresh PID namespaces`, async (t) => {
    const prog = await startProgram(t, c.name, c.args);
    const imagesDir = await dumpProgram(t, prog);
    const putFilesBack = snapshotFiles(t, prog);
    for (const round of [1, 2]) {
      if (round === 2) putFilesBack();
      const result = await restore({ imagesDir, pidNamespace: true });
      t.teardown(() => result.kill());
      t.equal(result.hostPids.size, result.tasks.length, `restore ${round}: a host PID for every task`);
      t.equal(result.rootPid, prog.pid, `restore ${round}: the root has its dumped PID inside the namespace`);
      if (round === 1) procOfItsOwn(t, result);
      await checkRestored(t, result, prog, c, `restore ${round}`);
      await result.kill();
      await killTree([...result.hostPids.values()]);
    }
  });

  t.test(`${label(c)}: dump, then restore detached at the original PIDs`, async (t) => {
    const prog = await startProgram(t, c.name, c.args);
    const imagesDir = await dumpProgram(t, prog);
    const result = await restore({ imagesDir, detached: true });
    const hostPids = [...result.hostPids.values()];
    t.teardown(() => killTree(hostPids));
    t.equal(result.rootHostPid, prog.pid, 'the root is back at its PID');
    t.same([...result.hostPids.keys()].sort(), [...result.hostPids.values()].sort(), 'every task at its dumped PID');
    await checkRestored(t, result, prog, c, 'detached');
  });
}

