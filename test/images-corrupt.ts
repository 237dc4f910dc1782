// A corruption suite generated from the fixtures: truncations at many offsets, bad magics, huge
// and off-by-one lengths, flipped bytes. Every case must end in an ImageError or a valid decode
// (all the way to crit JSON), quickly; from the CLI, exit 2 with one stderr line naming the file.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageError } from '../src/errors.js';
import { entryToCrit } from '../src/images/crit-json.js';
import { kindForPath, parseImage } from '../src/images/reader.js';
import { openCheckpoint } from '../src/images/checkpoint.js';
import { readPagemap } from '../src/images/pagemap.js';
import { SHARED } from './lib/shared-dir.js';
import { prng } from './lib/prng.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';
const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

interface Case {
  what: string;
  bytes: Buffer;
}

function* cases(original: Buffer, entryOffsets: number[], random: () => number): Generator<Case> {
  const step = Math.max(1, Math.floor(original.length / 150));
  for (let cut = 0; cut < original.length; cut += step) yield { what: `truncated at ${cut}`, bytes: original.subarray(0, cut) };
  for (const at of entryOffsets) {
    for (const cut of [at + 1, at + 3, at + 4, at + 5]) {
      if (cut < original.length) yield { what: `truncated at ${cut} (entry at ${at})`, bytes: original.subarray(0, cut) };
    }
    for (const length of [0xffffffff, 0x04000001, original.length, original.length - at - 3, 0]) {
      const bytes = Buffer.from(original);
      bytes.writeUInt32LE(length >>> 0, at);
      yield { what: `length ${length} at ${at}`, bytes };
    }
  }
  for (let i = 0; i < Math.min(8, original.length); i++) {
    const bytes = Buffer.from(original);
    bytes[i]! ^= 0x40;
    yield { what: `magic byte ${i} flipped`, bytes };
  }
  for (let n = 0; n < 120; n++) {
    const bytes = Buffer.from(original);
    const flips = 1 + Math.floor(random() * 4);
    const where: number[] = [];
    for (let f = 0; f < flips; f++) {
      const i = Math.floor(random() * bytes.length);
      bytes[i] = Math.floor(random() * 256);
      where.push(i);
    }
    yield { what: `bytes changed at ${where.join(',')}`, bytes };
  }
  yield { what: 'appended garbage', bytes: Buffer.concat([original, Buffer.from([1, 2, 3])]) };
}

/** Frames, decodes and prints every entry; returns how the case ended or throws a non-ImageError. */
function exercise(path: string, bytes: Buffer): 'decoded' | 'ImageError' {
  try {
    const image = parseImage(path, kindForPath(path), bytes);
    for (const lazy of image.entries()) entryToCrit(lazy.type, lazy.decode(), lazy.payload);
    return 'decoded';
  } catch (err) {
    if (err instanceof ImageError) return 'ImageError';
    throw err;
  }
}

t.test('every corrupted fixture image ends in an ImageError or a valid decode, quickly', async (t) => {
  const random = prng(0xc0ffee);
  let total = 0;
  const outcomes = { decoded: 0, ImageError: 0 };
  const started = Date.now();
  for (const dir of readdirSync(FIXTURES).sort()) {
    for (const name of readdirSync(join(FIXTURES, dir)).sort()) {
      if (/^pages-/.test(name)) continue;
      const path = join(FIXTURES, dir, name);
      const original = readFileSync(path);
      const offsets = [...parseImage(path, kindForPath(path), original).entries()].map((e) => e.offset);
      const bad: string[] = [];
      for (const c of cases(original, offsets, random)) {
        total++;
        const t0 = Date.now();
        try {
          outcomes[exercise(path, c.bytes)]++;
        } catch (err) {
          bad.push(`${c.what}: ${(err as Error).name}: ${(err as Error).message}`);
        }
        if (Date.now() - t0 > 2000) bad.push(`${c.what}: took ${Date.now() - t0} ms`);
      }
      t.same(bad, [], `${dir}/${name}: no uncaught errors or slow cases`);
    }
  }
  t.ok(total > 10000, `${total} cases`);
  t.ok(outcomes.ImageError > total / 4, `${outcomes.ImageError} ImageErrors, ${outcomes.decoded} valid decodes`);
  t.ok(Date.now() - started < 120_000, `whole suite in ${Date.now() - started} ms`);
});

t.test('a truncated entry is reported at the entry\'s offset', async (t) => {
  const path = join(FIXTURES, 'pipe', 'pstree.img');
  const original = readFileSync(path);
  const last = [...parseImage(path, kindForPath(path), original).entries()].at(-1)!;
  try {
    parseImage(path, kindForPath(path), original.subarray(0, original.length - 1));
    t.fail('expected an ImageError');
  } catch (err) {
    t.type(err, ImageError);
    t.equal((err as ImageError).offset, last.offset);
    t.equal((err as ImageError).file, path);
  }
});

t.test('the CLI turns a corrupt image into exit 2 and one stderr line naming the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-corrupt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(FIXTURES, 'pipe');
  const variants: Array<[string, (b: Buffer) => Buffer]> = [
    ['core-17446.img', (b) => b.subarray(0, b.length - 7)],
    ['mm-17446.img', (b) => (b.writeUInt32LE(0x55555555, 0), b)],
    ['files.img', (b) => (b.writeUInt32LE(0xfffffff0, 8), b)],
    ['inventory.img', (b) => (b.writeUInt32LE(0x1, 0), b)],
    ['pstree.img', () => Buffer.alloc(3)],
  ];
  for (const [name, corrupt] of variants) {
    const path = join(dir, name);
    writeFileSync(path, corrupt(Buffer.from(readFileSync(join(src, name)))));
    const r = spawnSync(process.execPath, [crr, 'show', path], { encoding: 'utf8' });
    t.equal(r.status, 2, `${name}: exit 2`);
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 1, `${name}: one line: ${r.stderr}`);
    t.ok(lines[0]!.includes(path), `${name}: names the file`);
    t.equal(r.stdout, '', `${name}: nothing on stdout`);
  }
  const unknown = join(dir, 'whatever.img');
  writeFileSync(unknown, readFileSync(join(src, 'pstree.img')));
  const r = spawnSync(process.execPath, [crr, 'show', unknown], { encoding: 'utf8' });
  t.equal(r.status, 2, 'unknown image name: exit 2');
  t.match(r.stderr, /whatever\.img.*known CRIU image name/);
});

t.test('a checkpoint with a broken or missing image: ImageError, and exit 2 from crr show DIR', async (t) => {
  const src = join(FIXTURES, 'pipe');
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), 'crr-ckpt-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
    return dir;
  };
  const missing = fresh();
  rmSync(join(missing, 'mm-17448.img'));
  t.throws(() => openCheckpoint(missing), { name: 'ImageError', message: /mm-17448\.img.*missing/ });
  let r = spawnSync(process.execPath, [crr, 'show', missing], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /mm-17448\.img/);
  t.equal(r.stderr.trimEnd().split('\n').length, 1);

  const noFile = fresh();
  // fdinfo-3 (sleep's fds) points at file ids that a shortened files.img no longer has.
  const files = readFileSync(join(src, 'files.img'));
  const kind = kindForPath(join(src, 'files.img'));
  const firstTwo = [...parseImage('files.img', kind, files).entries()][2]!.offset;
  writeFileSync(join(noFile, 'files.img'), files.subarray(0, firstTwo));
  t.throws(() => openCheckpoint(noFile), { name: 'ImageError', message: /fdinfo-\d\.img.*file id \d+ in files\.img/ });

  const twice = fresh();
  // fdinfo-3 with its entries written twice: every fd number appears again.
  const fdinfo = readFileSync(join(src, 'fdinfo-3.img'));
  const fdKind = kindForPath(join(src, 'fdinfo-3.img'));
  const entriesAt = parseImage('fdinfo-3.img', fdKind, fdinfo).entriesOffset;
  writeFileSync(join(twice, 'fdinfo-3.img'), Buffer.concat([fdinfo, fdinfo.subarray(entriesAt)]));
  t.throws(() => openCheckpoint(twice), { name: 'ImageError', message: /fdinfo-3\.img.*unique fd numbers.*fd 0 appears twice/ });

  const badPages = fresh();
  writeFileSync(join(badPages, 'pages-2.img'), Buffer.alloc(4096));
  t.throws(() => readPagemap(badPages, 17448), { name: 'ImageError', message: /pagemap-17448\.img.*pages-2\.img/ });
  r = spawnSync(process.execPath, [crr, 'show', badPages], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.equal(r.stderr.trimEnd().split('\n').length, 1);
});
