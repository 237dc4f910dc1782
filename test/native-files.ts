// The addon's readSmallFiles (native/addon/files.cc): many small files read whole on a libuv
// worker, back to back, with a length or -errno per file; nothing thrown for a bad file.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../src/actors/native.js';

const ENOENT = 2;
const EISDIR = 21;
const EFBIG = 27;

t.test('files read whole, in order; a missing one, a directory and a too-large one get -errno', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const contents = ['first', '', 'x'.repeat(4095), 'third file'];
  const paths = contents.map((text, i) => {
    const path = join(dir, `f${i}`);
    writeFileSync(path, text);
    return path;
  });
  writeFileSync(join(dir, 'big'), 'y'.repeat(4096));
  mkdirSync(join(dir, 'sub'));
  const all = [...paths, join(dir, 'missing'), join(dir, 'sub'), join(dir, 'big'), paths[0]!];
  const { data, sizes } = await native.readSmallFiles(all, 4096);
  const lengths = Array.from({ length: all.length }, (_, i) => sizes.readInt32LE(i * 4));
  t.same(lengths, [5, 0, 4095, 10, -ENOENT, -EISDIR, -EFBIG, 5]);
  t.equal(data.toString(), contents.join('') + 'first', 'the bytes of the files read, back to back');
});

t.test('bad arguments are a TypeError or RangeError, at the call', async (t) => {
  t.throws(() => native.readSmallFiles('nope' as unknown as string[], 10), TypeError);
  t.throws(() => native.readSmallFiles([1 as unknown as string], 10), TypeError);
  t.throws(() => native.readSmallFiles([], 0), RangeError);
  const empty = await native.readSmallFiles([], 10);
  t.equal(empty.data.length + empty.sizes.length, 0, 'no files, nothing read');
});
