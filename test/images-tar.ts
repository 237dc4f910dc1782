// The tmpfs archives (src/images/tar.ts): what is written (device nodes too) reads back the
// same, GNU tar reads it too, and a name leaving the archive's root or a corrupt archive is a clear ImageError.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../src/errors.js';
import { readTarGz, writeTarGz, type TarEntry } from '../src/images/tar.js';

const entries: TarEntry[] = [
  { path: 'sub', type: 'dir', mode: 0o750, uid: 1, gid: 2, mtime: 1_700_000_000 },
  { path: 'sub/a.txt', type: 'file', mode: 0o640, uid: 1000, gid: 1000, mtime: 1_700_000_001, data: Buffer.from('hello\n') },
  { path: 'link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 1_700_000_002, target: 'sub/a.txt' },
  { path: `${'d'.repeat(90)}/${'f'.repeat(90)}`, type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: 3, data: Buffer.alloc(1000, 7) },
  { path: 'null', type: 'chardev', mode: 0o666, uid: 0, gid: 0, mtime: 4, major: 1, minor: 3 },
  { path: 'loop9', type: 'blockdev', mode: 0o660, uid: 0, gid: 6, mtime: 5, major: 7, minor: 9 },
];

t.test('an archive reads back entry for entry, and GNU tar lists it', async (t) => {
  const bytes = writeTarGz(entries);
  t.same(readTarGz(bytes, 'x').map((e) => ({ ...e, ...(e.data ? { data: Buffer.from(e.data) } : {}) })), entries);
  const dir = mkdtempSync(join(tmpdir(), 'crr-tar-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a.tar.gz'), bytes);
  const listed = spawnSync('tar', ['tzf', join(dir, 'a.tar.gz')], { encoding: 'utf8' });
  t.equal(listed.status, 0, listed.stderr);
  t.same(listed.stdout.trim().split('\n'), ['sub/', 'sub/a.txt', 'link', entries[3]!.path, 'null', 'loop9']);
  const verbose = spawnSync('tar', ['tvzf', join(dir, 'a.tar.gz')], { encoding: 'utf8' }).stdout;
  t.match(verbose, /^crw-rw-rw- .* 1,3 .* null$/m, 'GNU tar reads the device numbers');
  t.match(verbose, /^brw-rw---- .* 7,9 .* loop9$/m);
});

t.test("GNU tar's archive of a directory (`-C DIR .`, as CRIU writes a tmpfs) reads, its root entry left out", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-tar-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  writeFileSync(join(tree, 'sub', 'a.txt'), 'hello\n');
  symlinkSync('sub/a.txt', join(tree, 'link'));
  const made = spawnSync('tar', ['--create', '--gzip', '--numeric-owner', '-C', tree, '-f', join(dir, 'gnu.tar.gz'), '.'], { encoding: 'utf8' });
  t.equal(made.status, 0, made.stderr);
  const read = readTarGz(readFileSync(join(dir, 'gnu.tar.gz')), 'gnu').map((e) => [e.path, e.type, e.data ? String(e.data) : e.target]);
  t.same(read.sort(), [['link', 'symlink', 'sub/a.txt'], ['sub', 'dir', undefined], ['sub/a.txt', 'file', 'hello\n']]);
});

t.test('names leaving the root and broken archives are ImageErrors', async (t) => {
  t.throws(() => readTarGz(writeTarGz([{ ...entries[1]!, path: '../escape' }]), 'x'), ImageError);
  t.throws(() => readTarGz(writeTarGz([{ ...entries[1]!, path: 'sub/../../escape' }]), 'x'), ImageError);
  t.throws(() => readTarGz(Buffer.from('not gzip'), 'x'), ImageError);
  t.throws(() => writeTarGz([{ ...entries[1]!, path: 'n'.repeat(120) }]), /too long for a tar archive/);
});
