// The UFFDIO_COPY done by crr's own threads through the task's userfaultfd (addon uffdCopy,
// src/resources/memory.ts copyFromHere): the chunks it is given, the errors it rejects with, and
// mem-pattern (64 MiB with holes, guards and read-only pieces) restored through it with one and
// with two threads: every byte checked by the program, nothing left registered, mapped or open;
// two restores at once never copy from crr at the same time (the other task copies for itself);
// a refused pidfd_getfd falls back to the task's own copies, a failed copy fails the restore
// naming the syscall, errno and address, with no restored process left.
import t from 'tap';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../src/actors/native.js';
import { StageError } from '../src/errors.js';
import { restore } from '../src/restore/index.js';
import { copyChunks, UFFD_COPY_CHUNK } from '../src/restore/remote-uffd.js';
import { dumpProgram } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import type { Span } from '../src/resources/types.js';

const CHUNK = BigInt(UFFD_COPY_CHUNK);

t.test('runs are cut into chunks that follow their file offsets', async (t) => {
  const runs = [
    { start: 0x100000n, end: 0x100000n + CHUNK + 0x3000n, fileOffset: 0x1000 },
    { start: 0x900000n, end: 0x901000n, fileOffset: 0x400000 },
  ];
  t.same(copyChunks(runs), [
    { dst: 0x100000n, fileOffset: 0x1000n, len: CHUNK },
    { dst: 0x100000n + CHUNK, fileOffset: 0x1000n + CHUNK, len: 0x3000n },
    { dst: 0x900000n, fileOffset: 0x400000n, len: 0x1000n },
  ]);
});

t.test('uffdCopy rejects with errno, syscall and the failing address', async (t) => {
  const path = join(tmpdir(), `crr-uffd-split-${process.pid}`);
  writeFileSync(path, Buffer.alloc(8192, 7));
  const fd = openSync(path, 'r');
  t.teardown(() => {
    closeSync(fd);
    unlinkSync(path);
  });
  const [a, b] = native.socketpair('stream');
  t.teardown(() => {
    native.close(a!);
    native.close(b!);
  });
  const pieces = new BigUint64Array([0x7000000000n, 0n, 4096n, 0x7000001000n, 4096n, 4096n]);
  // A socket is no userfaultfd: the first copy fails and names where.
  const notUffd = await native.uffdCopy(a!, fd, 8192, pieces, 2).then(() => undefined, (e: Error) => e);
  t.match(notUffd, { syscall: 'UFFDIO_COPY', code: 'ENOTTY', errno: 25 });
  t.ok([0x7000000000n, 0x7000001000n].includes((notUffd as Error & { address: bigint }).address), 'address is one of the pieces');
  const badSource = await native.uffdCopy(a!, 987654, 8192, pieces, 1).then(() => undefined, (e: Error) => e);
  t.match(badSource, { syscall: 'mmap', code: 'EBADF' });
  t.throws(() => native.uffdCopy(a!, fd, 4096, pieces, 1), TypeError, 'a piece past the source length is refused before any copy');
  t.throws(() => native.uffdCopy(a!, fd, 8192, pieces, 0), TypeError, 'at least one thread');
});

function userfaultfdsOfThisProcess(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('userfaultfd')) n++;
    } catch {
      // closed while listing (the readdir fd itself)
    }
  }
  return n;
}

t.test("mem-pattern filled by crr's threads: PASS, nothing left registered, mapped or open", async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const before = process.env['CRR_COPY_THREADS'];
  t.teardown(() => {
    if (before === undefined) delete process.env['CRR_COPY_THREADS'];
    else process.env['CRR_COPY_THREADS'] = before;
  });
  const uffdsBefore = userfaultfdsOfThisProcess();
  for (const threads of ['1', '2']) {
    process.env['CRR_COPY_THREADS'] = threads;
    const spans: Span[] = [];
    const result = await restore({ imagesDir, pidNamespace: true, onSpan: (s) => spans.push(s) });
    t.teardown(() => result.kill());
    const copy = spans.find((s) => s.name === 'copy');
    t.ok((copy?.bytes ?? 0) >= 60 << 20, `${threads} thread(s): crr's threads copied the 64 MiB region (${copy?.bytes} bytes)`);
    const smaps = readFileSync(`/proc/${result.rootHostPid}/smaps`, 'utf8');
    const flags = smaps.split('\n').filter((l) => l.startsWith('VmFlags:'));
    t.ok(flags.length > 0 && flags.every((l) => !/\bum\b/.test(l)), `${threads}: no VMA is left registered with a userfaultfd`);
    t.notOk(readFileSync(`/proc/${result.rootHostPid}/maps`, 'utf8').includes('pages-'), `${threads}: the task's copy source is unmapped`);
    t.notOk(readFileSync('/proc/self/maps', 'utf8').includes('pages-'), `${threads}: crr's copy source is unmapped`);
    t.equal(userfaultfdsOfThisProcess(), uffdsBefore, `${threads}: crr closed its copy of the userfaultfd`);
    const taskFds = readdirSync(`/proc/${result.rootHostPid}/fd`).map((fd) => readlinkSync(`/proc/${result.rootHostPid}/fd/${fd}`));
    t.notOk(taskFds.some((l) => l.includes('userfaultfd')), `${threads}: the task closed its userfaultfd`);
    const check = await requestCheck(result.rootHostPid, prog.resultFile, 20_000).catch((e: Error) => ({ pass: false, text: e.message }));
    t.equal(check.text, 'PASS', `${threads}: mem-pattern checks every byte and protection`);
    await result.kill();
  }
});

/** PIDs of processes running `comm` now. */
function pidsRunning(comm: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    })
    .map(Number);
}

t.test('a refused pidfd_getfd: the task copies; a failed copy: StageError, nothing left', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const { pidfdGetfd, uffdCopy } = native;
  t.teardown(() => Object.assign(native, { pidfdGetfd, uffdCopy }));

  // Refused only for a userfaultfd: the other fds crr takes from tasks still come.
  let refused = 0;
  native.pidfdGetfd = (pidfd, targetFd) => {
    const pid = /^Pid:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'))?.[1];
    if (!readlinkSync(`/proc/${pid}/fd/${targetFd}`).includes('userfaultfd')) return pidfdGetfd(pidfd, targetFd);
    refused++;
    throw Object.assign(new Error('pidfd_getfd failed: EPERM'), { code: 'EPERM', errno: 1, syscall: 'pidfd_getfd' });
  };
  const spans: Span[] = [];
  const result = await restore({ imagesDir, pidNamespace: true, onSpan: (s) => spans.push(s) });
  t.teardown(() => result.kill());
  t.equal(refused, 1, 'crr asked for the userfaultfd once and was refused');
  t.notOk(spans.some((s) => s.name === 'copy'), "no copy by crr's threads");
  t.ok((spans.find((s) => s.name === 'fill')?.bytes ?? 0) >= 60 << 20, 'the task filled the 64 MiB region itself');
  const check = await requestCheck(result.rootHostPid, prog.resultFile, 20_000).catch((e: Error) => ({ pass: false, text: e.message }));
  t.equal(check.text, 'PASS', 'mem-pattern checks every byte and protection');
  await result.kill();
  native.pidfdGetfd = pidfdGetfd;

  native.uffdCopy = async () => {
    throw Object.assign(new Error('UFFDIO_COPY failed: EEXIST (File exists)'), { code: 'EEXIST', errno: 17, syscall: 'UFFDIO_COPY', address: 0x7f1234500000n });
  };
  const before = new Set(pidsRunning('mem-pattern'));
  const error = await restore({ imagesDir, pidNamespace: true }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, StageError);
  t.match(error, { stage: 'memory', resource: 'memory', syscall: 'UFFDIO_COPY', code: 'EEXIST', errno: 17 });
  t.match((error as Error).message, /at 0x7f1234500000/, 'names the address it failed at');
  t.same(pidsRunning('mem-pattern').filter((p) => !before.has(p)), [], 'no restored process is left');
});

t.test("two restores at once: crr's threads copy for one task at a time, both PASS", async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const spans: Span[][] = [[], []];
  const results = await Promise.all(spans.map((list) => restore({ imagesDir, pidNamespace: true, onSpan: (s) => list.push(s) })));
  for (const r of results) t.teardown(() => r.kill());
  const copies = spans.flatMap((list) => list.filter((s) => s.name === 'copy'));
  t.ok(copies.length >= 1, `crr's threads copied for ${copies.length} of the 2 tasks`);
  if (copies.length === 2) t.ok(copies[0]!.end <= copies[1]!.start || copies[1]!.end <= copies[0]!.start, 'never at the same time');
  for (const [i, r] of results.entries()) {
    t.ok((spans[i]!.find((s) => s.name === 'fill')?.bytes ?? 0) >= 60 << 20, `restore ${i}: the 64 MiB region was filled`);
    const check = await requestCheck(r.rootHostPid, prog.resultFile, 20_000).catch((e: Error) => ({ pass: false, text: e.message }));
    t.equal(check.text, 'PASS', `restore ${i}: mem-pattern checks every byte and protection`);
    await r.kill();
  }
});
