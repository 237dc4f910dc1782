// Image framing on hand-made bytes: head magics, u32-length entries, lazy decode, payloads after
// entries, and every framing error naming the file and byte offset.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../src/errors.js';
import { COMMON_MAGIC, SERVICE_MAGIC, imageKindByName, type ImageKind } from '../src/images/schema.js';
import { encodeEntry } from '../src/images/codec.js';
import { MAX_ENTRY_BYTES, parseImage, readImage } from '../src/images/reader.js';
import { ImageWriter, encodeImage, writeImage } from '../src/images/writer.js';

function kind(name: string): ImageKind {
  const k = imageKindByName(name);
  if (!k) throw new Error(`schema has no ${name}`);
  return k;
}

const PSTREE = kind('PSTREE');
const tasks = [
  { pid: 10, ppid: 0, pgid: 10, sid: 10, threads: [10, 11] },
  { pid: 12, ppid: 10, pgid: 10, sid: 10, threads: [12] },
  { pid: 13, ppid: 10, pgid: 13, sid: 10, threads: [13] },
];

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** The few assertions the helper needs, so it takes any tap test object. */
interface Asserts {
  type(v: unknown, c: new (...args: never[]) => unknown): unknown;
  equal(a: unknown, b: unknown, message?: string): unknown;
  match(a: unknown, b: RegExp): unknown;
  fail(message: string): unknown;
}

function expectImageError(t: Asserts, fn: () => unknown, offset: number, match: RegExp, file = 'x.img'): void {
  try {
    fn();
    t.fail(`expected an ImageError matching ${match}`);
  } catch (err) {
    t.type(err, ImageError);
    const e = err as ImageError;
    t.equal(e.file, file, 'names the file');
    t.equal(e.offset, offset, `offset ${offset}`);
    t.match(e.message, match);
    t.equal(e.exitCode, 2);
  }
}

t.test('encodeImage writes head magics then length-framed entries', async (t) => {
  const bytes = encodeImage(PSTREE, tasks.map((entry) => ({ entry })));
  t.equal(bytes.readUInt32LE(0), COMMON_MAGIC);
  t.equal(bytes.readUInt32LE(4), PSTREE.magic);
  let at = 8;
  for (const task of tasks) {
    const message = Buffer.from(encodeEntry(PSTREE.message, task));
    t.equal(bytes.readUInt32LE(at), message.length, 'u32 LE length');
    t.same(bytes.subarray(at + 4, at + 4 + message.length), message);
    at += 4 + message.length;
  }
  t.equal(at, bytes.length, 'nothing after the last entry');
});

t.test('parseImage frames entries lazily and decodes them on demand', async (t) => {
  const bytes = encodeImage(PSTREE, tasks.map((entry) => ({ entry })));
  const image = parseImage('x.img', PSTREE, bytes);
  t.equal(image.count, 3);
  t.equal(image.entriesOffset, 8);
  t.equal(image.size, bytes.length);
  const lazies = [...image.entries()];
  t.same(lazies.map((e) => e.index), [0, 1, 2]);
  t.equal(lazies[0]!.offset, 8);
  t.equal(lazies[1]!.offset, 8 + 4 + lazies[0]!.length);
  const decoded = image.all();
  t.same(decoded.map((e) => Number(e['pid'])), [10, 12, 13]);
  t.same((decoded[0]!['threads'] as unknown[]).map(Number), [10, 11]);
  t.equal(lazies[2]!.decode(), lazies[2]!.decode(), 'decoded once, then cached');
});

t.test('a bad message is only an error when that entry is decoded', async (t) => {
  const good = encodeImage(PSTREE, tasks.slice(0, 1).map((entry) => ({ entry })));
  const junk = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const bytes = Buffer.concat([good, u32(junk.length), junk]);
  const image = parseImage('x.img', PSTREE, bytes);
  t.equal(image.count, 2, 'framing is fine');
  t.equal(Number(image.entry(0).decode()['pid']), 10);
  expectImageError(t, () => image.entry(1).decode(), good.length, /valid .* message of 6 bytes/);
});

t.test('head checks: common, service, own-magic-only, wrong and missing magics', async (t) => {
  const bytes = encodeImage(PSTREE, tasks.map((entry) => ({ entry })));
  const wrongHead = Buffer.from(bytes);
  wrongHead.writeUInt32LE(0x12345678, 0);
  expectImageError(t, () => parseImage('x.img', PSTREE, wrongHead), 0, /common head magic 0x54564319.*found 0x12345678/);
  const wrongOwn = Buffer.from(bytes);
  wrongOwn.writeUInt32LE(kind('CORE').magic, 4);
  expectImageError(t, () => parseImage('x.img', PSTREE, wrongOwn), 4, /PSTREE magic.*the magic of CORE/);
  const noHead = bytes.subarray(4);
  expectImageError(t, () => parseImage('x.img', PSTREE, noHead), 0, /older than img_version 2/);
  expectImageError(t, () => parseImage('x.img', PSTREE, bytes.subarray(0, 6)), 4, /file ends after 6 bytes/);
  expectImageError(t, () => parseImage('x.img', PSTREE, Buffer.alloc(0)), 0, /common head magic/);

  const stats = kind('STATS');
  t.equal(stats.head, 'service');
  const statsBytes = encodeImage(stats, []);
  t.same([statsBytes.readUInt32LE(0), statsBytes.readUInt32LE(4)], [SERVICE_MAGIC, stats.magic]);
  t.equal(parseImage('x.img', stats, statsBytes).count, 0);

  const inventory = kind('INVENTORY');
  t.equal(inventory.head, 'none');
  const inv = encodeImage(inventory, [{ entry: { img_version: 2 } }]);
  t.equal(inv.readUInt32LE(0), inventory.magic, 'inventory starts with its own magic');
  t.equal(parseImage('x.img', inventory, inv).only()['img_version'], 2);
});

t.test('inventory versions other than 2 are refused as unsupported', async (t) => {
  const inventory = kind('INVENTORY');
  const v1 = encodeImage(inventory, [{ entry: { img_version: 1 } }]);
  expectImageError(t, () => parseImage('x.img', inventory, v1), 4, /img_version 2.*found 1: unsupported/);
  expectImageError(t, () => parseImage('x.img', inventory, encodeImage(inventory, [])), 4, /inventory entry/);
});

t.test('entry framing errors: short length, length past the end, absurd length', async (t) => {
  const bytes = encodeImage(PSTREE, tasks.map((entry) => ({ entry })));
  const image = parseImage('x.img', PSTREE, bytes);
  const last = image.entry(2);
  expectImageError(t, () => parseImage('x.img', PSTREE, bytes.subarray(0, last.offset + 2)), last.offset, /4-byte entry length.*only 2/);
  expectImageError(t, () => parseImage('x.img', PSTREE, bytes.subarray(0, bytes.length - 1)), last.offset, /entry of \d+ bytes.*left in the file/);
  const huge = Buffer.concat([bytes, u32(MAX_ENTRY_BYTES + 1)]);
  expectImageError(t, () => parseImage('x.img', PSTREE, huge), bytes.length, /at most 67108864/);
  const max = Buffer.concat([bytes, u32(0xffffffff)]);
  expectImageError(t, () => parseImage('x.img', PSTREE, max), bytes.length, /at most/);
});

t.test('only() wants exactly one entry', async (t) => {
  const none = parseImage('x.img', PSTREE, encodeImage(PSTREE, []));
  expectImageError(t, () => none.only(), 8, /exactly one .*found 0/);
  const two = parseImage('x.img', PSTREE, encodeImage(PSTREE, tasks.slice(0, 2).map((entry) => ({ entry }))));
  expectImageError(t, () => two.only(), two.entry(1).offset, /found 2/);
  const one = parseImage('x.img', PSTREE, encodeImage(PSTREE, tasks.slice(0, 1).map((entry) => ({ entry }))));
  t.equal(Number(one.only()['pid']), 10);
});

t.test('payloads after entries (pipes-data) are framed and checked', async (t) => {
  const pipes = kind('PIPES_DATA');
  t.ok(pipes.payloadBytes, 'pipes-data carries a payload');
  const data = Buffer.from('hello');
  const bytes = encodeImage(pipes, [
    { entry: { pipe_id: 7, bytes: data.length, size: 65536 }, payload: data },
    { entry: { pipe_id: 8, bytes: 0, size: 4096 } },
  ]);
  const image = parseImage('x.img', pipes, bytes);
  t.equal(image.count, 2);
  t.same(Buffer.from(image.entry(0).payload!), data);
  t.equal(image.entry(1).payload!.length, 0);
  t.equal(image.entry(1).offset, image.entry(0).offset + 4 + image.entry(0).length + data.length, 'skips the payload');
  const second = image.entry(1).offset;
  expectImageError(t, () => parseImage('x.img', pipes, bytes.subarray(0, second - 2)), second - 5, /5 payload bytes.*only 3/);
  t.throws(() => encodeImage(pipes, [{ entry: { pipe_id: 7, bytes: 9, size: 1 }, payload: data }]), ImageError, 'payload must match the count');
});

t.test('a SysV message queue entry carries its messages: each a length, an ipc_msg and its bytes padded to 8', async (t) => {
  const msgs = kind('IPCNS_MSG');
  const record = (mtype: number, text: string) => {
    const head = encodeEntry('ipc_msg', { mtype: BigInt(mtype), msize: text.length });
    const data = Buffer.alloc(Math.ceil(text.length / 8) * 8);
    data.write(text);
    return Buffer.concat([u32(head.length), head, data]);
  };
  const messages = Buffer.concat([record(5, 'first'), record(9, 'second one')]);
  const desc = { key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 32768 };
  const bytes = encodeImage(msgs, [
    { entry: { desc, qbytes: 16384, qnum: 2 }, payload: messages },
    { entry: { desc: { ...desc, id: 32769 }, qbytes: 16384, qnum: 0 } },
  ]);
  const image = parseImage('ipcns-msg-3.img', msgs, bytes);
  t.equal(image.count, 2, 'the messages are the first entry\'s payload, not entries');
  t.same(Buffer.from(image.entry(0).payload!), messages);
  t.equal(image.entry(1).decode()['qnum'], 0);
  expectImageError(t, () => parseImage('x.img', msgs, bytes.subarray(0, image.entry(0).offset + 4 + image.entry(0).length + 20)), image.entry(0).offset + 4 + image.entry(0).length, /the payload entry 0 describes.*only 20 bytes/);
  t.throws(() => encodeImage(msgs, [{ entry: { desc, qbytes: 16384, qnum: 3 }, payload: messages }]), ImageError, 'qnum must match the records');
});

t.test('files: writeImage/readImage, the streaming writer, unknown names, raw images', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-framing-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'pstree.img');
  writeImage(path, PSTREE, tasks.map((entry) => ({ entry })));
  t.same(readFileSync(path), encodeImage(PSTREE, tasks.map((entry) => ({ entry }))));
  t.equal(readImage(path).kind, PSTREE, 'kind from the file name');

  const streamed = join(dir, 'streamed.img');
  const writer = new ImageWriter(streamed, PSTREE);
  for (const task of tasks) writer.append(task);
  t.equal(writer.size, readFileSync(path).length);
  writer.close();
  t.same(readFileSync(streamed), readFileSync(path), 'streaming writer writes the same bytes');

  const odd = join(dir, 'nonsense-1.img');
  writeFileSync(odd, readFileSync(path));
  expectImageError(t, () => readImage(odd), 0, /known CRIU image name/, odd);
  expectImageError(t, () => readImage(join(dir, 'core-1.img')), 0, /readable image file.*ENOENT/, join(dir, 'core-1.img'));
  expectImageError(t, () => readImage(dir, PSTREE), 0, /regular file/, dir);

  const pages = join(dir, 'pages-1.img');
  writeFileSync(pages, Buffer.alloc(4096));
  expectImageError(t, () => readImage(pages), 0, /raw page data/, pages);
  const raw = new ImageWriter(join(dir, 'pages-2.img'), kind('PAGES'));
  raw.appendRaw(Buffer.alloc(8192, 1));
  raw.close();
  t.equal(readFileSync(join(dir, 'pages-2.img')).length, 8192, 'raw images have no head');
});
