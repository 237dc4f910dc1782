// Deleted files (ghosts): the ghost program holds a deleted file open at an offset and another
// mapped. The dump keeps both in ghost-file images (remap-fpath sends their files.img entries
// there); the restore makes them beside their old paths, every fd and mapping opens them, and
// they are unlinked again before the tree runs. A deleted file over the ghost limit is refused.
// A ghost image in CRIU's chunked layout restores too, and a deleted working directory. The
// restored fds and cwd name them by their old paths.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { summariseCheckpoint } from '../src/cli/commands/show.js';
import { dump } from '../src/dump/index.js';
import { imageKindForFile, openCheckpoint } from '../src/images/index.js';
import { writeImage } from '../src/images/writer.js';
import { dumpProgram, restoreProgram, roundTrip } from './lib/program-roundtrip.js';
import { requestCheck, startProgram } from './lib/programs.js';
import { startPython } from './lib/python-program.js';

t.test('the self-check notices a changed deleted file', async (t) => {
  const prog = await startProgram(t, 'ghost', [], { env: { CRR_SELFTEST_BREAK: 'content' } });
  const r = await requestCheck(prog.pid, prog.resultFile);
  t.notOk(r.pass, r.text);
});

t.test('a deleted file held open and one held mapped come back deleted, with their bytes and offset', async (t) => {
  const prog = await startProgram(t, 'ghost');
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const remaps = [...checkpoint.image('remap-fpath.img').entries()].map((e) => e.decode());
  t.equal(remaps.length, 2, 'remap-fpath: the open file and the mapped one');
  const ghosts = [...checkpoint.imageFiles.keys()].filter((name) => name.startsWith('ghost-file-'));
  t.equal(ghosts.length, 2, `ghost images: ${ghosts.join(', ')}`);
  const sizes = ghosts.map((g) => Number(checkpoint.image(g).entries().next().value!.decode()['size'])).sort((a, b) => a - b);
  t.same(sizes, [8192, 10000], 'each ghost holds the whole file');
  const fd20 = summariseCheckpoint(imagesDir).tasks[0]!.fds.find((fd) => fd.fd === 20);
  t.match(fd20?.what, /\/ghost-data \(deleted\)$/, 'crr show DIR: fd 20 is the deleted ghost-data');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.equal(readlinkSync(`/proc/${rt.result.rootHostPid}/fd/20`), `${join(prog.dir, 'ghost-data')} (deleted)`, 'fd 20 names the file by its old path, as before the dump');
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'fd 20 deleted, at its offset, bytes and mapping intact');
  t.same(readdirSync(prog.dir).filter((f) => f.includes('crr-ghost')), [], 'the made files are unlinked again');
});

t.test('a file made with O_TMPFILE (never linked) comes back at its fd with its bytes and offset', async (t) => {
  const prog = await startProgram(t, 'ghost', ['tmpfile']);
  const rt = await roundTrip(t, prog);
  t.equal((await rt.check()).text, 'PASS', 'fd 21: unlinked, its 300 bytes, at offset 300, writable');
});

t.test('a deleted file over the ghost limit is refused, naming pid and fd', async (t) => {
  const prog = await startProgram(t, 'ghost', ['big']);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-ghost-big-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: new RegExp(`pid ${prog.pid}: fd 20 is a deleted file of 2097152 bytes, over the ghost limit of 1048576 \\(--ghost-limit\\)`) });
  t.notOk(existsSync(join(imagesDir, 'inventory.img')), 'no checkpoint');
  t.ok((await requestCheck(prog.pid, prog.resultFile)).pass, 'the program runs on');
});

t.test('a larger ghost limit takes it', async (t) => {
  const prog = await startProgram(t, 'ghost', ['big']);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-ghost-big-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  const pids = prog.tree();
  await dump({ pid: prog.pid, imagesDir, ghostLimit: 4 << 20 });
  t.ok(pids.length > 0 && existsSync(join(imagesDir, 'remap-fpath.img')), 'dumped with its ghosts');
});

t.test("a ghost in CRIU's chunked layout (offset and length per chunk) comes back with the same bytes", async (t) => {
  const prog = await startProgram(t, 'ghost');
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const name = [...checkpoint.imageFiles.keys()].find((n) => n.startsWith('ghost-file-') && Number(checkpoint.image(n).entries().next().value!.decode()['size']) === 10000)!;
  const [head] = [...checkpoint.image(name).entries()];
  const bytes = Buffer.from(head!.payload!);
  // The second half first: each chunk lands at its own offset.
  writeImage(join(imagesDir, name), imageKindForFile(name)!, [
    { entry: { ...head!.decode(), chunks: true } },
    { entry: { len: 5000, off: 5000 }, payload: bytes.subarray(5000) },
    { entry: { len: 5000, off: 0 }, payload: bytes.subarray(0, 5000) },
  ]);
  t.equal(openCheckpoint(imagesDir).image(name).entries().next().value!.decode()['chunks'], true, 'the image is chunked now');
  const rt = await restoreProgram(t, prog, imagesDir);
  t.same(await rt.check(), { pass: true, text: 'PASS' }, 'the program reads every byte of it as before');
});

t.test('a deleted working directory and a deleted directory held open come back deleted, by their old names', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'crr-ghost-cwd-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const gone = join(base, 'gone');
  const held = join(base, 'held');
  const setUp = [
    `os.mkdir(${JSON.stringify(gone)}, 0o750)`, `os.chmod(${JSON.stringify(gone)}, 0o750)`, `os.chdir(${JSON.stringify(gone)})`, `os.rmdir(${JSON.stringify(gone)})`,
    `os.mkdir(${JSON.stringify(held)})`, `os.dup2(os.open(${JSON.stringify(held)}, os.O_RDONLY), 40)`, `os.rmdir(${JSON.stringify(held)})`,
  ];
  const check = ['st = os.stat(".")', 'open(result, "w").write(repr([os.readlink("/proc/self/cwd"), st.st_nlink, oct(st.st_mode & 0o7777), os.readlink("/proc/self/fd/40")]))'];
  const { prog, go, result } = await startPython(t, [], setUp, check, 'a program whose cwd was removed');
  const imagesDir = await dumpProgram(t, prog);
  t.ok(readdirSync(imagesDir).some((f) => f.startsWith('ghost-file-')), 'the directory is a ghost');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), `['${gone} (deleted)', 0, '0o750', '${held} (deleted)']`, 'its cwd and fd 40 are the removed directories again');
  t.same(readdirSync(base), [], 'nothing made is left behind');
});
