// The image-kind table and the entry codec against every upstream CRIU fixture image:
// each file's kind is found by name and by magic, and every entry decodes and re-encodes
// to the same bytes. The framing is split here by hand so this test depends only on
// schema.ts and codec.ts.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { COMMON_MAGIC, IMAGE_KINDS, SERVICE_MAGIC, imageKindByMagic, imageKindByName, imageKindForFile } from '../src/images/schema.js';
import { decodeEntry, encodeEntry, type Entry } from '../src/images/codec.js';
import { SHARED } from './lib/shared-dir.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';

interface Framed {
  type: string;
  bytes: Uint8Array;
  payload: Uint8Array;
}

function splitImage(path: string, name: string): { kind: ReturnType<typeof imageKindForFile>; entries: Framed[]; headOk: boolean } {
  const buf = readFileSync(path);
  const kind = imageKindForFile(name);
  if (!kind || kind.head === 'raw') return { kind, entries: [], headOk: kind?.head === 'raw' };
  let off = 0;
  let headOk = true;
  if (kind.head === 'common' || kind.head === 'service') {
    headOk = buf.readUInt32LE(0) === (kind.head === 'common' ? COMMON_MAGIC : SERVICE_MAGIC);
    off = 4;
  }
  headOk &&= buf.readUInt32LE(off) === kind.magic && imageKindByMagic(buf.readUInt32LE(off)) === kind;
  off += 4;
  const entries: Framed[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32LE(off);
    const bytes = buf.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    const type = entries.length === 0 && kind.firstMessage ? kind.firstMessage : kind.message;
    const want = kind.payloadBytes ? kind.payloadBytes(decodeEntry(type, bytes)) : 0;
    entries.push({ type, bytes, payload: buf.subarray(off, off + want) });
    off += want;
  }
  return { kind, entries, headOk };
}

const files: Array<{ dir: string; name: string }> = [];
for (const dir of readdirSync(FIXTURES).sort()) {
  for (const name of readdirSync(join(FIXTURES, dir)).sort()) files.push({ dir, name });
}

t.test('every fixture image has a kind, found by name and by magic', async (t) => {
  t.ok(files.length > 60, `${files.length} fixture files`);
  for (const { dir, name } of files) {
    const { kind, headOk } = splitImage(join(FIXTURES, dir, name), name);
    t.ok(kind, `${dir}/${name} has a kind`);
    t.ok(headOk, `${dir}/${name}: head and type magic match ${kind?.magicName}`);
  }
});

t.test('each entry decodes and re-encodes byte for byte', async (t) => {
  let count = 0;
  for (const { dir, name } of files) {
    const { entries } = splitImage(join(FIXTURES, dir, name), name);
    for (const [i, e] of entries.entries()) {
      const entry = decodeEntry(e.type, e.bytes);
      const again = encodeEntry(e.type, entry);
      t.same(Buffer.from(again), Buffer.from(e.bytes), `${dir}/${name} entry ${i} (${e.type})`);
      count++;
    }
  }
  t.ok(count > 100, `${count} entries checked`);
});

t.test('entries use exact 64-bit values, bytes and proto2 presence', async (t) => {
  const core = splitImage(join(FIXTURES, 'sleep/core-17288.img'), 'core-17288.img').entries[0]!;
  const entry = decodeEntry(core.type, core.bytes);
  const tc = entry.tc as Entry;
  const rlimits = ((tc.rlimits as Entry).rlimits as Entry[])[0]!;
  t.equal(rlimits.cur, 18446744073709551615n, 'RLIM_INFINITY survives as a bigint');
  t.equal(typeof ((entry.thread_info as Entry).gpregs as Entry).ip, 'bigint');
  t.notOk(Object.hasOwn(tc, 'cg_set'), 'absent optional field is not an own property');
  t.ok(Object.hasOwn(tc, 'signals_s'), 'present empty sub-message is kept');
  const pipes = splitImage(join(FIXTURES, 'pipe/pipes-data.img'), 'pipes-data.img');
  t.equal(pipes.kind?.magicName, 'PIPES_DATA');
  t.equal(pipes.entries[0]!.payload.length, Number(decodeEntry('pipe_data_entry', pipes.entries[0]!.bytes).bytes));
  // -1 in a uint64 wraps like a C cast; a value that cannot be an integer is refused
  const wrapped = decodeEntry('rlimit_entry', encodeEntry('rlimit_entry', { cur: -1n, max: 5 }));
  t.same(wrapped, { cur: 18446744073709551615n, max: 5n });
  t.throws(() => encodeEntry('rlimit_entry', { cur: {}, max: 1n }));
});

t.test('malformed protobuf throws a plain Error naming the type', async (t) => {
  t.throws(() => decodeEntry('pstree_entry', Uint8Array.from([0x08])), /pstree_entry/);
  t.throws(() => decodeEntry('pstree_entry', Uint8Array.from([0x0a, 0x05, 0x01])), /pstree_entry/);
  t.throws(() => decodeEntry('no_such_entry', new Uint8Array()), /unknown message type/);
});

t.test('kind table lookups', async (t) => {
  const names = new Set<string>();
  for (const k of IMAGE_KINDS) {
    t.notOk(names.has(k.magicName), `${k.magicName} listed once`);
    names.add(k.magicName);
    t.equal(imageKindByName(k.magicName), k);
  }
  t.equal(imageKindForFile('pages-3.img')?.head, 'raw');
  t.equal(imageKindForFile('stats-restore')?.head, 'service');
  t.equal(imageKindForFile('pagemap-shmem-77.img')?.magicName, 'PAGEMAP');
  t.equal(imageKindForFile('tcp-stream-1a2b.img')?.magicName, 'TCP_STREAM');
  t.equal(imageKindForFile('route-3.img')?.unsupported !== undefined, true);
  t.equal(imageKindForFile('nonsense.img'), undefined);
  t.equal(imageKindByMagic(0x12345678), undefined);
  t.equal(imageKindByName('NOPE'), undefined);
});
