// Incremental dumps (CRIU's dump --prev-images-dir, crr dump --prev-images-dir): a checkpoint whose
// pagemap marks runs PE_PARENT keeps those pages in the checkpoint its "parent" link names, which
// may keep some in its own parent. crr's own incremental dump of mem-pattern is restored; the
// other layouts here are made from one real dump of mem-pattern (64 MiB of pattern
// with holes, guards and read-only pieces; every byte checked after the restore) by moving runs,
// or halves of runs, out of a copy's pages file and marking them PE_PARENT. Without the parent
// pages those bytes would come back as zeros and the check would fail.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { imageKindForFile, openCheckpoint, PAGE_SIZE, PE_PARENT, PE_PRESENT, readPagemap, type PagemapRun } from '../src/images/index.js';
import { writeImage } from '../src/images/writer.js';
import { restore } from '../src/restore/index.js';
import { formatSummary, summariseCheckpoint } from '../src/cli/commands/show.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startProgram, waitPidGone } from './lib/programs.js';
import { dump } from '../src/dump/index.js';
import type { Span } from '../src/resources/types.js';

interface Host {
  teardown(fn: () => unknown): void;
}

/** A copy of `from` whose runs `inParent` says are PE_PARENT (their bytes left out of its pages file), linked to `parent`. */
function incremental(t: Host, from: string, parent: string | undefined, inParent: (run: PagemapRun, index: number) => 'parent' | 'present' | 'split'): string {
  const dir = mkdtempSync(join(tmpdir(), 'crr-incremental-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('cp', ['-a', `${from}/.`, dir]);
  rmSync(join(dir, 'parent'), { force: true });
  const checkpoint = openCheckpoint(from);
  for (const task of checkpoint.tasks) {
    if (checkpoint.isZombie(task.pid)) continue;
    const pagemap = readPagemap(checkpoint, task.pid);
    const pages = readFileSync(checkpoint.path(pagemap.pagesFile));
    const kept: Buffer[] = [];
    const entries: Array<{ entry: Record<string, unknown> }> = [{ entry: { pages_id: pagemap.pagesId } }];
    const run = (vaddr: bigint, nrPages: number, flags: number, bytes?: Buffer) => {
      entries.push({ entry: { vaddr, nr_pages: nrPages, flags } });
      if (bytes) kept.push(bytes);
    };
    pagemap.runs.forEach((r, i) => {
      const bytes = r.flags & PE_PRESENT ? pages.subarray(r.pagesOffset, r.pagesOffset + r.nrPages * PAGE_SIZE) : undefined;
      const how = bytes ? inParent(r, i) : 'parent';
      if (how === 'present') return run(r.vaddr, r.nrPages, r.flags, bytes);
      if (how === 'parent' || r.nrPages < 2) return run(r.vaddr, r.nrPages, PE_PARENT);
      const half = Math.floor(r.nrPages / 2);
      run(r.vaddr, half, PE_PARENT);
      run(r.vaddr + BigInt(half * PAGE_SIZE), r.nrPages - half, PE_PRESENT, bytes!.subarray(half * PAGE_SIZE));
    });
    writeImage(join(dir, pagemap.pagemapFile), imageKindForFile(pagemap.pagemapFile)!, entries);
    writeFileSync(join(dir, pagemap.pagesFile), Buffer.concat(kept));
  }
  if (parent) symlinkSync(parent, join(dir, 'parent'));
  return dir;
}

t.test('a checkpoint with its parent: PE_PARENT runs and halves of runs come from the parent pages file', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const full = await dumpProgram(t, prog);
  const child = incremental(t, full, full, (_, i) => (i % 3 === 0 ? 'parent' : i % 3 === 1 ? 'split' : 'present'));
  const pagemap = readPagemap(openCheckpoint(child), prog.pid);
  t.ok(pagemap.runs.some((r) => r.flags === PE_PARENT), 'the child has PE_PARENT runs');
  t.ok(pagemap.parents.length === 1 && pagemap.parents[0]!.runs.length > 0, 'resolved in the parent pages file');
  t.match(formatSummary(summariseCheckpoint(child)), `an incremental dump: the pages it did not store are in its parent checkpoint ${full}`, 'crr show names the parent');
  const rt = await restoreProgram(t, prog, child);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'every byte is back');
});

t.test('a chain of three: pages a parent keeps in its own parent', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const full = await dumpProgram(t, prog);
  const parent = incremental(t, full, full, (_, i) => (i % 2 === 0 ? 'parent' : 'present'));
  const child = incremental(t, full, parent, (_, i) => (i % 3 === 0 ? 'present' : 'split'));
  const { parents } = readPagemap(openCheckpoint(child), prog.pid);
  t.same(parents.map((p) => p.pagesPath.startsWith(full) || p.pagesPath.startsWith(parent)), parents.map(() => true), 'pages files of both ancestors');
  t.equal(new Set(parents.map((p) => p.pagesPath)).size, 2, 'two ancestor pages files');
  const rt = await restoreProgram(t, prog, child);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'every byte is back');
});

t.test('a parent that is missing, lacks pages or comes back in its own chain is an ImageError before anything is made', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const full = await dumpProgram(t, prog);
  const orphan = incremental(t, full, undefined, (_, i) => (i === 0 ? 'parent' : 'present'));
  await t.rejects(restore({ imagesDir: orphan, pidNamespace: true }), { stage: 'load', message: /expected a parent checkpoint \(the "parent" link of an incremental dump\) for its PE_PARENT runs \(.*parent: ENOENT\)/ }, 'no parent link');
  const pagemap = readPagemap(openCheckpoint(full), prog.pid);
  const first = pagemap.runs[0]!;
  const withoutFirst = incremental(t, full, undefined, () => 'present');
  writeImage(join(withoutFirst, pagemap.pagemapFile), imageKindForFile(pagemap.pagemapFile)!, [
    { entry: { pages_id: pagemap.pagesId } },
    ...pagemap.runs.slice(1).map((r) => ({ entry: { vaddr: r.vaddr, nr_pages: r.nrPages, flags: r.flags } })),
  ]);
  writeFileSync(join(withoutFirst, pagemap.pagesFile), readFileSync(join(full, pagemap.pagesFile)).subarray(first.nrPages * PAGE_SIZE));
  const lacking = incremental(t, full, withoutFirst, (_, i) => (i === 0 ? 'parent' : 'present'));
  await t.rejects(restore({ imagesDir: lacking, pidNamespace: true }), { stage: 'load', message: new RegExp(`expected pages of pid ${prog.pid} at 0x${first.vaddr.toString(16)} in a parent checkpoint \\(PE_PARENT\\)`) }, 'pages no ancestor holds');
  const loop = incremental(t, full, undefined, (_, i) => (i === 0 ? 'parent' : 'present'));
  symlinkSync('.', join(loop, 'parent'));
  await t.rejects(restore({ imagesDir: loop, pidNamespace: true }), { stage: 'load', message: /expected a chain of parent checkpoints that ends/ }, 'a parent link to itself');
});

t.test('a chain of three restored with lazy pages: the server brings pages from all three pages files', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const full = await dumpProgram(t, prog);
  const parent = incremental(t, full, full, (_, i) => (i % 2 === 0 ? 'parent' : 'present'));
  const child = incremental(t, full, parent, (_, i) => (i % 3 === 0 ? 'present' : 'split'));
  const spans: Span[] = [];
  const rt = await restoreProgram(t, prog, child, { lazyPages: true, onSpan: (s) => spans.push(s) });
  const server = rt.result.lazyPages;
  t.teardown(() => {
    if (server && existsSync(`/proc/${server.pid}`)) process.kill(server.pid, 'SIGKILL');
  });
  const handed = spans.find((s) => s.name === 'lazy pages')?.bytes ?? 0;
  t.ok(handed >= 60 << 20, `the pattern's pages are left to the server (${handed} bytes)`);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'every byte is back');
  t.equal(await server!.exited, 0, 'the server exits 0');
});

t.test('crr dump --prev-images-dir: pages unchanged since the parent dump stay there, the restore reads them there', async (t) => {
  const prog = await startProgram(t, 'mem-pattern');
  const first = mkdtempSync(join(tmpdir(), 'crr-incremental-first-'));
  const second = mkdtempSync(join(tmpdir(), 'crr-incremental-second-'));
  t.teardown(() => [first, second].forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  await dump({ pid: prog.pid, imagesDir: first, leaveRunning: true });
  const pids = prog.tree();
  await dump({ pid: prog.pid, imagesDir: second, prevImagesDir: relative(second, first) });
  for (const pid of pids) await waitPidGone(pid);
  t.equal(readlinkSync(join(second, 'parent')), relative(second, first), 'the parent link, as given');
  const whole = readPagemap(openCheckpoint(first), prog.pid);
  const incremental = readPagemap(openCheckpoint(second), prog.pid);
  const inParent = incremental.runs.filter((r) => r.flags & PE_PARENT).reduce((n, r) => n + r.nrPages, 0) * PAGE_SIZE;
  t.ok(inParent > 0.9 * whole.presentBytes, `${inParent} of ${whole.presentBytes} bytes left in the parent`);
  t.ok(incremental.presentBytes < 0.1 * whole.presentBytes, `${incremental.presentBytes} bytes written again`);
  const rt = await restoreProgram(t, prog, second);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'every byte is back');
  await t.rejects(dump({ pid: rt.result.rootHostPid, imagesDir: join(second, 'again'), prevImagesDir: 'no-such-dir' }), { name: 'UsageError', message: /--prev-images-dir no-such-dir: .*no-such-dir/ }, 'a parent that is not there');
});
