// crit's JSON view against upstream CRIU's own decoder: every entry of every fixture image,
// turned into crit form, equals what `crit decode --pretty` printed (only hex vs decimal
// notation is normalised), and crit form -> Entry -> bytes gives the original entry back.
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { COMMON_MAGIC, imageKindForFile } from '../src/images/schema.js';
import { decodeEntry, encodeEntry } from '../src/images/codec.js';
import { entryFromCrit, entryToCrit, stringifyCrit } from '../src/images/crit-json.js';
import { SHARED } from './lib/shared-dir.js';

const FIXTURES = SHARED + 'fixtures/criu-4.2';
const DECODED = SHARED + 'fixtures/criu-4.2-decoded';

interface Framed {
  type: string;
  bytes: Uint8Array;
  payload?: Uint8Array;
}

function frames(path: string, name: string): { magicName: string; entries: Framed[] } | undefined {
  const kind = imageKindForFile(name);
  if (!kind || kind.head === 'raw') return undefined;
  const buf = readFileSync(path);
  let off = kind.head === 'none' ? 4 : 8;
  if (kind.head === 'common' && buf.readUInt32LE(0) !== COMMON_MAGIC) throw new Error(`${name}: bad head`);
  const entries: Framed[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32LE(off);
    const bytes = buf.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    const type = entries.length === 0 && kind.firstMessage ? kind.firstMessage : kind.message;
    if (kind.payloadBytes) {
      const want = kind.payloadBytes(decodeEntry(type, bytes));
      entries.push({ type, bytes, payload: buf.subarray(off, off + want) });
      off += want;
    } else {
      entries.push({ type, bytes });
    }
  }
  return { magicName: kind.magicName, entries };
}

/** JSON.parse that keeps integers above 2^53 exact (as bigint). */
function parseExact(text: string): unknown {
  const marked = text.replace(/([:\[,]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"\\u0000$2"');
  return JSON.parse(marked, (_k, v) => (typeof v === 'string' && v.startsWith('\u0000') ? BigInt(v.slice(1)) : v));
}

/** Integers and crit's hex strings become one form; nothing else is loosened. */
function normalise(v: unknown): unknown {
  if (typeof v === 'number' || typeof v === 'bigint') return `#${BigInt(v)}`;
  if (typeof v === 'string' && /^0x[0-9a-f]+$/.test(v)) return `#${BigInt(v)}`;
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

const cases: Array<{ label: string; path: string; name: string; json: string }> = [];
for (const dir of readdirSync(FIXTURES).sort()) {
  for (const name of readdirSync(join(FIXTURES, dir)).sort()) {
    const json = join(DECODED, dir, `${name.replace(/\.img$/, '')}.json`);
    if (existsSync(json)) cases.push({ label: `${dir}/${name}`, path: join(FIXTURES, dir, name), name, json });
  }
}

t.test('entryToCrit matches crit decode --pretty on every fixture image', async (t) => {
  t.ok(cases.length > 60, `${cases.length} images with crit JSON`);
  for (const c of cases) {
    const framed = frames(c.path, c.name);
    const want = parseExact(readFileSync(c.json, 'utf8')) as { magic: string; entries: unknown[] };
    t.equal(framed?.magicName, want.magic, `${c.label}: magic`);
    const got = framed!.entries.map((e) => entryToCrit(e.type, decodeEntry(e.type, e.bytes), e.payload));
    // key order too: crit prints fields in field-number order
    t.same(normalise(got), normalise(want.entries), `${c.label}: entries`);
    t.same(got.map((e) => Object.keys(e as object)), want.entries.map((e) => Object.keys(e as object)), `${c.label}: field order`);
  }
});

t.test('crit JSON -> Entry -> bytes gives each fixture entry back', async (t) => {
  for (const c of cases) {
    const framed = frames(c.path, c.name)!;
    const want = parseExact(readFileSync(c.json, 'utf8')) as { entries: unknown[] };
    framed.entries.forEach((e, i) => {
      const viaOurs = entryFromCrit(e.type, entryToCrit(e.type, decodeEntry(e.type, e.bytes), e.payload));
      t.same(Buffer.from(encodeEntry(e.type, viaOurs.entry)), Buffer.from(e.bytes), `${c.label} #${i}: ours`);
      // crit's own JSON text -> Entry -> bytes: the inverse of crit decode
      const viaCrit = entryFromCrit(e.type, parseExact(stringifyCrit(want.entries[i])));
      t.same(Buffer.from(encodeEntry(e.type, viaCrit.entry)), Buffer.from(e.bytes), `${c.label} #${i}: crit's JSON`);
      if (e.payload) t.same(Buffer.from(viaCrit.payload ?? []), Buffer.from(e.payload), `${c.label} #${i}: payload`);
    });
  }
});

t.test('notations crit uses', async (t) => {
  const vma = {
    start: 0x1000n, end: 0x2000n, pgoff: 0n, shmid: 0n, prot: 5, flags: 0x22, status: (1 << 0) | (1 << 9) | (1 << 4),
    fd: -1n, fdflags: 0,
  };
  const crit = entryToCrit('vma_entry', vma) as Record<string, unknown>;
  t.equal(crit.start, '0x1000');
  t.equal(crit.prot, 'PROT_READ | PROT_EXEC');
  t.equal(crit.flags, 'MAP_PRIVATE | MAP_ANON');
  t.equal(crit.status, 'VMA_AREA_REGULAR | VMA_ANON_PRIVATE | 0x10', 'unknown bits stay visible as hex');
  t.equal(crit.fd, -1);
  t.same(entryFromCrit('vma_entry', crit).entry, vma);
  t.same(entryFromCrit('vma_entry', { ...crit, start: 4096, prot: 5 }).entry.start, 4096n, 'integers accepted where crit prints hex');

  const sk = entryToCrit('inet_sk_entry', {
    id: 1, ino: 2, family: 10, type: 1, proto: 6, state: 10, src_port: 80, dst_port: 0, flags: 0, backlog: 5,
    src_addr: [0, 0, 0, 0x01000000], dst_addr: [0x0100007f],
    fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 },
    opts: { so_sndbuf: 1, so_rcvbuf: 2, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n },
  }) as Record<string, unknown>;
  t.same([sk.family, sk.type, sk.proto, sk.state], ['INET6', 'STREAM', 'TCP', 'LISTEN']);
  t.same(sk.src_addr, ['::1']);
  t.same(sk.dst_addr, ['127.0.0.1']);
  const back = entryFromCrit('inet_sk_entry', sk).entry;
  t.same(back.src_addr, [0, 0, 0, 0x01000000]);
  t.same(back.dst_addr, [0x0100007f]);

  const unix = entryToCrit('unix_sk_entry', {
    id: 1, ino: 1, type: 1, state: 7, flags: 0, uflags: 0, backlog: 0, peer: 0,
    fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 },
    opts: { so_sndbuf: 1, so_rcvbuf: 2, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n },
    name: Uint8Array.from([0, 0x61, 0x3d, 0x62]),
  }) as Record<string, unknown>;
  t.equal(unix.name, '=00a=3Db', 'unix names are quoted-printable');
  t.same(entryFromCrit('unix_sk_entry', unix).entry.name, Uint8Array.from([0, 0x61, 0x3d, 0x62]));

  const ghost = entryToCrit('ghost_file_entry', { uid: 0, gid: 0, mode: 0o100644, dev: (8 << 20) | 1, rdev: 0x0801 }) as Record<string, unknown>;
  t.equal(ghost.dev, '8:1');
  t.equal(ghost.rdev, '8:1', 'old-format dev_t');
  t.same(entryFromCrit('ghost_file_entry', ghost).entry, { uid: 0, gid: 0, mode: 0o100644, dev: (8 << 20) | 1, rdev: 0x0801 });

  const pipe = entryToCrit('pipe_data_entry', { pipe_id: 1, bytes: 3 }, Uint8Array.from([1, 2, 3])) as Record<string, unknown>;
  t.equal(pipe.extra, 'AQID\n');
  t.same(entryFromCrit('pipe_data_entry', pipe).payload, Uint8Array.from([1, 2, 3]));

  t.equal(stringifyCrit({ a: 18446744073709551615n, b: [1] }), '{\n    "a": 18446744073709551615,\n    "b": [\n        1\n    ]\n}');
  t.throws(() => entryFromCrit('core_entry', { mtype: 'NO_SUCH_ARCH' }), /mtype/);
});
