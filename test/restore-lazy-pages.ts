// Lazy pages (restore({ lazyPages }), crr restore --lazy-pages): the tree runs before its private
// anonymous memory is in; crr-lazy-pages serves each page at its first touch, then copies the rest
// in the background and exits. The restored programs check every byte, with their memory changed
// (fork, mremap, MADV_DONTNEED, munmap, the kernel reading it) while pages are still missing.
import t from 'tap';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NativeError, StageError } from '../src/errors.js';
import { restore, type RestoreOptions } from '../src/restore/index.js';
import type { RestoreCtx } from '../src/restore/context.js';
import { registry } from '../src/resources/registry.js';
import type { ResourceKind, Stage } from '../src/resources/types.js';
import { startProgram } from './lib/programs.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { alive } from './lib/restore-images.js';
import type { Span } from '../src/resources/types.js';

/** Anonymous memory the process has in (kB, smaps_rollup). */
function anonymousKb(pid: number): number {
  return Number(/^Anonymous:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN);
}

/** The server must be gone by the end of the test, whatever happened. */
function reapServer(t: Tap.Test, pid: number | undefined): void {
  t.teardown(() => {
    if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  });
}

t.test('lazy-ops: the tree runs before its memory is in; fork, pipe, mremap, DONTNEED and munmap meet missing pages', async (t) => {
  const prog = await startProgram(t, 'lazy-ops');
  const imagesDir = await dumpProgram(t, prog);
  // The background copy waits, so the program's check meets pages still missing.
  process.env['CRR_LAZY_BACKGROUND_DELAY_MS'] = '3000';
  const spans: Span[] = [];
  const restored = await restoreProgram(t, prog, imagesDir, { lazyPages: true, onSpan: (s) => spans.push(s) }).finally(() => delete process.env['CRR_LAZY_BACKGROUND_DELAY_MS']);
  const handed = spans.find((s) => s.name === 'lazy pages');
  t.ok((handed?.bytes ?? 0) >= 40 << 20, `the trace shows the 40 MiB left to the server (${handed?.bytes} bytes)`);
  t.notOk(spans.some((s) => s.name === 'copy' || s.name === 'direct fill'), 'nothing of them filled by the restore');
  const server = restored.result.lazyPages;
  reapServer(t, server?.pid);
  t.ok(server && alive(server.pid), 'a lazy-pages server runs');
  const before = anonymousKb(restored.result.rootHostPid);
  t.ok(before < 8 * 1024, `the 40 MiB of patterns are not in yet (${before} kB anonymous)`);
  // The server holds the pages files open: the images may go once the restore has returned.
  rmSync(imagesDir, { recursive: true, force: true });
  t.equal((await restored.check()).text, 'PASS', 'every byte right: in a forked child, through a pipe, after mremap, DONTNEED and munmap');
  t.equal(await server!.exited, 0, 'the server exits 0 once the task is gone');
});

t.test('mem-pattern: holes, guard pages, read-only pages, heap and the background copy; the server writes to lazyPagesLog', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const imagesDir = await dumpProgram(t, prog);
  const lazyPagesLog = join(prog.dir, 'lazy.log');
  writeFileSync(lazyPagesLog, 'a line before\n');
  process.env['CRR_LAZY_STATS'] = '1'; // the server's last line: what it copied
  const restored = await restoreProgram(t, prog, imagesDir, { lazyPages: true, lazyPagesLog }).finally(() => delete process.env['CRR_LAZY_STATS']);
  const server = restored.result.lazyPages;
  reapServer(t, server?.pid);
  t.ok(server, 'a lazy-pages server was started');
  t.equal(await server!.exited, 0, 'the server copies every page in the background and exits 0');
  t.match(readFileSync(lazyPagesLog, 'utf8'), /^a line before\ncrr-lazy-pages: \d+ faults copied, \d+ zero pages, [1-9]\d+ bytes copied\n$/, 'its messages are appended to lazyPagesLog');
  const after = anonymousKb(restored.result.rootHostPid);
  t.ok(after >= 60 * 1024, `the task's memory is all in (${after} kB anonymous)`);
  t.equal((await restored.check()).text, 'PASS', 'mem-pattern checks every byte and protection');
});

/**
 * A lazy-pages restore of `imagesDir` with one more kind in `stage` (the resume stage unless
 * named), which notes the tasks' host PIDs in `hostPids` and then does `act`; what the restore
 * rejected with.
 */
async function failingRestore(
  imagesDir: string,
  hostPids: Set<number>,
  act: (ctx: RestoreCtx) => Promise<void>,
  { stage = 'resume', ...options }: { stage?: Stage } & Partial<RestoreOptions> = {},
): Promise<unknown> {
  const kind: ResourceKind<RestoreCtx> = {
    name: 'inject',
    stage,
    images: [],
    async restore(ctx) {
      for (const runtime of ctx.session.runtimes.values()) if (runtime.hostPid) hostPids.add(runtime.hostPid);
      await act(ctx);
    },
  };
  return restore({ ...options, imagesDir, pidNamespace: true, lazyPages: true, kinds: [...registry, kind] }).then(
    async (r) => {
      await r.kill();
      return undefined;
    },
    (err: unknown) => err,
  );
}

t.test('a lazyPagesLog that cannot be opened fails the restore, naming it, and no task is left', async (t) => {
  const prog = await startProgram(t, 'lazy-ops');
  const imagesDir = await dumpProgram(t, prog);
  const lazyPagesLog = join(prog.dir, 'no-such-dir', 'lazy.log');
  const hostPids = new Set<number>();
  const failed = await failingRestore(imagesDir, hostPids, async () => undefined, { stage: 'barrier', lazyPagesLog });
  t.type(failed, StageError, 'the restore fails with a StageError');
  t.match((failed as Error | undefined)?.message, new RegExp(`stage memory, task \\d+, resource memory, syscall open \\(ENOENT\\).*${lazyPagesLog.replace(/[.]/g, '[.]')}`), 'naming stage, task, resource, syscall, errno and the file');
  t.ok(hostPids.size > 0, 'the restore had made its tasks');
  for (const pid of hostPids) t.notOk(alive(pid), `task ${pid} is gone`);
});

t.test('a restore that fails after the memory stage leaves no lazy-pages server', async (t) => {
  const prog = await startProgram(t, 'lazy-ops');
  const imagesDir = await dumpProgram(t, prog);
  let serverPid: number | undefined;
  const hostPids = new Set<number>();
  const failed = await failingRestore(imagesDir, hostPids, async (ctx) => {
    serverPid = ctx.session.lazyPages?.pid;
    throw new NativeError({ code: 'EIO', errno: 5, syscall: 'injected', pid: ctx.pid, detail: 'failure injected in resume' });
  });
  reapServer(t, serverPid);
  t.type(failed, StageError, 'the restore fails with a StageError');
  t.ok(serverPid, 'a lazy-pages server had been started');
  for (let i = 0; i < 100 && serverPid && alive(serverPid); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(serverPid && alive(serverPid), 'the server is gone');
  for (const pid of hostPids) t.notOk(alive(pid), `task ${pid} is gone`);
});

t.test('a lazy-pages server gone before the restore ends fails the restore, and no task is left', async (t) => {
  const prog = await startProgram(t, 'lazy-ops');
  const imagesDir = await dumpProgram(t, prog);
  const hostPids = new Set<number>();
  const failed = await failingRestore(imagesDir, hostPids, async (ctx) => {
    const server = ctx.session.lazyPages;
    if (server && alive(server.pid)) {
      process.kill(server.pid, 'SIGKILL');
      await server.exited;
    }
  });
  t.type(failed, StageError, 'the restore fails with a StageError');
  t.match((failed as Error | undefined)?.message, /the lazy-pages server is gone before the restore ended .*the tree was killed/);
  t.ok(hostPids.size > 0, 'the restore had made its tasks');
  for (const pid of hostPids) t.notOk(alive(pid), `task ${pid} is gone`);
});

// Programs whose other state meets lazy memory: thread stacks and TLS (threads), a tree of
// processes each with a server space of its own (tree), signal frames and alternate stacks
// (sigstate), mlock()ed memory, which is filled before the tree runs (mlock).
for (const name of ['threads', 'tree', 'sigstate', 'mlock']) {
  t.test(`${name}: restored with lazy pages, checks itself`, async (t) => {
    const prog = await startProgram(t, name);
    const imagesDir = await dumpProgram(t, prog);
    const restored = await restoreProgram(t, prog, imagesDir, { lazyPages: true });
    reapServer(t, restored.result.lazyPages?.pid);
    t.ok(restored.result.lazyPages, 'a lazy-pages server was started');
    t.equal((await restored.check()).text, 'PASS', `${name} passes its check`);
    t.equal(await restored.result.lazyPages!.exited, 0, 'the server exits 0');
  });
}
