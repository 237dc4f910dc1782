// The pagemap reader on every fixture (PRESENT pages add up to each pages-N.img, slices read the
// right bytes) and on hand-made bad pagemaps (past the pages file, unaligned, overlapping, compat).
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../src/errors.js';
import { imageKindByName } from '../src/images/schema.js';
import { openCheckpoint } from '../src/images/checkpoint.js';
import { PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, openPages, readPagemap } from '../src/images/pagemap.js';
import { writeImage } from '../src/images/writer.js';
import { SHARED } from './lib/shared-dir.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';
const dirs = readdirSync(FIXTURES).sort();

t.test('PRESENT runs add up to each pages-N.img and slices read back the file', async (t) => {
  for (const name of dirs) {
    const dir = join(FIXTURES, name);
    const checkpoint = openCheckpoint(dir);
    const usedPages = new Set<string>();
    for (const task of checkpoint.tasks) {
      const pagemap = readPagemap(checkpoint, task.pid);
      const pagesPath = join(dir, pagemap.pagesFile);
      const size = statSync(pagesPath).size;
      const presentPages = pagemap.runs.filter((r) => r.flags & PE_PRESENT).reduce((n, r) => n + r.nrPages, 0);
      t.equal(presentPages * PAGE_SIZE, size, `${name}/${task.pid}: ${presentPages} pages = ${pagemap.pagesFile}`);
      t.equal(pagemap.presentBytes, size);
      t.notOk(usedPages.has(pagemap.pagesFile), 'each task has its own pages file');
      usedPages.add(pagemap.pagesFile);

      const whole = readFileSync(pagesPath);
      const pages = openPages(checkpoint, pagemap);
      t.teardown(() => pages.close());
      t.ok(pages.fd > 2, 'an open fd for preadv');
      let expectedOffset = 0;
      for (const run of pagemap.runs) {
        if (!(run.flags & PE_PRESENT)) continue;
        t.equal(run.pagesOffset, expectedOffset, 'runs are stored one after another');
        const data = pages.readRun(run);
        t.ok(data.equals(whole.subarray(run.pagesOffset, run.pagesOffset + run.nrPages * PAGE_SIZE)), `run at 0x${run.vaddr.toString(16)}`);
        expectedOffset += run.nrPages * PAGE_SIZE;
      }
      t.ok(pages.readSlice(0, size).equals(whole), 'one large slice of the whole file');
      t.ok(pages.readSlice(PAGE_SIZE + 100, 5000).equals(whole.subarray(PAGE_SIZE + 100, PAGE_SIZE + 5100)), 'an unaligned slice');
      t.throws(() => pages.readSlice(size - 10, 11), ImageError, 'a slice past the end is an ImageError');
      pages.close();
    }
    const allPages = [...checkpoint.imageFiles.keys()].filter((f) => /^pages-\d+\.img$/.test(f));
    t.same([...usedPages].sort(), allPages.sort(), `${name}: every pages file belongs to a task`);
  }
});

t.test('readPagemap also takes a directory path', async (t) => {
  const dir = join(FIXTURES, 'sleep');
  const pagemap = readPagemap(dir, 17288);
  t.equal(pagemap.pagesId, 1);
  t.ok(pagemap.runs.length > 3);
  t.equal(typeof pagemap.runs[0]!.vaddr, 'bigint');
});

/** A copy of the sleep fixture whose pagemap-17288.img we can rewrite. */
function scratchCopy(t: { teardown(fn: () => void): void }): string {
  const src = join(FIXTURES, 'sleep');
  const dir = mkdtempSync(join(tmpdir(), 'crr-pagemap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
  return dir;
}

const PAGEMAP = imageKindByName('PAGEMAP')!;
function writePagemap(dir: string, runs: Array<Record<string, unknown>>, pagesId = 1): void {
  const entries = [{ entry: { pages_id: pagesId } }, ...runs.map((r) => ({ entry: { compat_nr_pages: 0, ...r } }))];
  writeImage(join(dir, 'pagemap-17288.img'), PAGEMAP, entries);
}

function expectError(t: { type: Function; match: Function; fail: Function }, fn: () => unknown, re: RegExp): void {
  try {
    fn();
    t.fail(`expected ImageError ${re}`);
  } catch (err) {
    t.type(err, ImageError);
    t.match((err as Error).message, re);
  }
}

t.test('a pagemap pointing past pages-N.img names both files', async (t) => {
  const dir = scratchCopy(t);
  const size = statSync(join(dir, 'pages-1.img')).size;
  truncateSync(join(dir, 'pages-1.img'), size - PAGE_SIZE);
  expectError(t, () => readPagemap(dir, 17288), /pagemap-17288\.img.*PRESENT runs that fit in .*pages-1\.img.*need \d+ bytes, it holds/);
});

t.test('unaligned, overlapping and missing-pages pagemaps are ImageErrors', async (t) => {
  const dir = scratchCopy(t);
  writePagemap(dir, [{ vaddr: 0x1000n + 12n, nr_pages: 1, flags: PE_PRESENT }]);
  expectError(t, () => readPagemap(dir, 17288), /page-aligned vaddr.*0x100c/);
  writePagemap(dir, [
    { vaddr: 0x10000n, nr_pages: 4, flags: PE_PRESENT },
    { vaddr: 0x12000n, nr_pages: 1, flags: PE_PRESENT },
  ]);
  expectError(t, () => readPagemap(dir, 17288), /do not overlap.*0x12000 is inside the run at 0x10000/);
  writePagemap(dir, [{ vaddr: 0xfffffffffffff000n, nr_pages: 2, flags: PE_LAZY }]);
  expectError(t, () => readPagemap(dir, 17288), /inside the address space/);
  writePagemap(dir, [{ vaddr: 0x10000n, nr_pages: 1, flags: PE_PRESENT }], 9);
  expectError(t, () => readPagemap(dir, 17288), /pages-9\.img.*missing/);
  writePagemap(dir, [{ vaddr: 0x10000n, nr_pages: 0x7fffffff, flags: PE_PRESENT }]);
  expectError(t, () => readPagemap(dir, 17288), /fit in/);
});

t.test('runs without PRESENT take no room, PE_PARENT ones are found in the parent checkpoint; compat_nr_pages is honoured', async (t) => {
  const dir = scratchCopy(t);
  const parent = scratchCopy(t);
  writePagemap(parent, [
    { vaddr: 0x1f000n, nr_pages: 2, flags: PE_PRESENT },
    { vaddr: 0x21000n, nr_pages: 1, flags: PE_PRESENT },
  ]);
  symlinkSync(parent, join(dir, 'parent'));
  writePagemap(dir, [
    { vaddr: 0x10000n, nr_pages: 1, flags: PE_PRESENT },
    { vaddr: 0x20000n, nr_pages: 2, flags: PE_PARENT },
    { vaddr: 0x40000000n, compat_nr_pages: 2, flags: PE_PRESENT },
  ]);
  const pagemap = readPagemap(dir, 17288);
  t.same(
    pagemap.runs.map((r) => [r.vaddr, r.nrPages, r.flags, r.pagesOffset]),
    [
      [0x10000n, 1, PE_PRESENT, 0],
      [0x20000n, 2, PE_PARENT, PAGE_SIZE],
      [0x40000000n, 2, PE_PRESENT, PAGE_SIZE],
    ],
  );
  t.equal(pagemap.presentBytes, 3 * PAGE_SIZE);
  t.same(
    pagemap.parents.map((p) => [p.pagesPath, p.runs.map((r) => [r.vaddr, r.nrPages, r.pagesOffset])]),
    [[join(realpathSync(parent), 'pages-1.img'), [[0x20000n, 1, PAGE_SIZE], [0x21000n, 1, 2 * PAGE_SIZE]]]],
    'the PE_PARENT run: the second page of one parent run, then the next run',
  );
  writePagemap(dir, [{ vaddr: 0x10000n, nr_pages: 1, flags: PE_LAZY }]);
  expectError(t, () => readPagemap(dir, 17288), /pages stored here or in a parent checkpoint \(the run at 0x10000 has flags 2 \(lazy pages, criu --lazy-pages: not supported\)\)/);
});

t.test('readPagemap reads a task once per open checkpoint and gives it frozen', async (t) => {
  const fixtureDir = join(FIXTURES, dirs[0]!);
  const checkpoint = openCheckpoint(fixtureDir);
  const pid = checkpoint.tasks[0]!.pid;
  const first = readPagemap(checkpoint, pid);
  t.equal(readPagemap(checkpoint, pid), first, 'the same object again');
  t.not(readPagemap(openCheckpoint(fixtureDir), pid), first, 'another open checkpoint reads its own');
  t.ok(Object.isFrozen(first) && Object.isFrozen(first.runs));
  t.throws(() => (first.runs as unknown[]).push(first.runs[0]), TypeError);
});
