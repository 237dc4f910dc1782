// A direct protobuf wire -> Entry decoder for the messages crr reads by the thousand (a core image
// per thread): one pass over the bytes, no protobufjs message objects, no Long objects, so far
// less garbage. It gives exactly the Entry the protobufjs path (codec.ts) gives, or undefined
// whenever the input is anything but plain (an unknown field, a wrong wire type, a missing
// required field, a repeated singular message, bytes past the end, non-ASCII text outside a
// Buffer): the caller then decodes the protobufjs way, which keeps unknown fields and words
// every error as before.
import type { FieldMeta } from './gen/meta.js';

type Entry = Record<string, unknown>;

/** Thrown inside the decoder only: "not plain, let protobufjs do it" (no stack: it is cheap). */
const notPlain = Object.freeze({ notPlain: true });

interface Cursor {
  readonly buf: Uint8Array;
  pos: number;
}

function byte(c: Cursor, end: number): number {
  if (c.pos >= end) throw notPlain;
  return c.buf[c.pos++]!;
}

/** A varint's low 32 bits (int32, uint32, enum, bool, lengths, tags). */
function varint32(c: Cursor, end: number): number {
  let v = 0;
  for (let shift = 0; shift < 32; shift += 7) {
    const b = byte(c, end);
    v |= (b & 0x7f) << shift;
    if (b < 0x80) return v;
  }
  for (let i = 0; i < 5; i++) if (byte(c, end) < 0x80) return v; // bits past 32 are dropped, as protobufjs does
  throw notPlain;
}

/** Small values as bigints made once: registers and flags are mostly 0 or small, and a bigint is a heap object each. */
const SMALL_BIGINTS = Array.from({ length: 1024 }, (_, i) => BigInt(i));

/** A varint's 64 bits as an unsigned bigint. */
function varint64(c: Cursor, end: number): bigint {
  let lo = 0;
  let hi = 0;
  let b = 0;
  for (let i = 0; i < 4; i++) {
    b = byte(c, end);
    lo |= (b & 0x7f) << (i * 7);
    if (b < 0x80) return lo < 1024 ? SMALL_BIGINTS[lo]! : BigInt(lo >>> 0);
  }
  b = byte(c, end);
  lo |= (b & 0x7f) << 28;
  hi = (b & 0x7f) >> 4;
  if (b >= 0x80) {
    for (let i = 0; ; i++) {
      if (i === 5) throw notPlain;
      b = byte(c, end);
      hi |= (b & 0x7f) << (i * 7 + 3);
      if (b < 0x80) break;
    }
  }
  // Below 2^53 (user addresses, most registers) one BigInt from an exact Number: the
  // shift-and-or form makes three, the top cost of decoding 10,000 threads' registers.
  if (hi >>> 0 < 0x200000) return BigInt((hi >>> 0) * 0x1_0000_0000 + (lo >>> 0));
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function skipTo(c: Cursor, end: number, n: number): number {
  const to = c.pos + n;
  if (n < 0 || to > end) throw notPlain;
  return to;
}

type Read = (c: Cursor, end: number) => unknown;

const textDecoder = new TextDecoder();

function readString(c: Cursor, end: number): string {
  const to = skipTo(c, end, varint32(c, end) >>> 0);
  const { buf } = c;
  let ascii = true;
  for (let i = c.pos; i < to && ascii; i++) if (buf[i]! >= 0x80) ascii = false;
  // protobufjs decodes a Buffer with Node's decoder and a plain Uint8Array with its own: they
  // agree on ASCII; anything else is left to protobufjs unless this is a Buffer too.
  // A Buffer's latin1 slice is its ASCII text at a third of TextDecoder's per-call cost (every
  // thread core has a name: ~40 ms per 10,000 threads).
  let s: string;
  if (Buffer.isBuffer(buf)) s = buf.toString(ascii ? 'latin1' : 'utf8', c.pos, to);
  else if (ascii) s = textDecoder.decode(buf.subarray(c.pos, to));
  else throw notPlain;
  c.pos = to;
  return s;
}

const SCALARS: Record<string, { wire: number; read: Read }> = {
  uint32: { wire: 0, read: (c, e) => varint32(c, e) >>> 0 },
  int32: { wire: 0, read: (c, e) => varint32(c, e) | 0 },
  sint32: { wire: 0, read: (c, e) => { const v = varint32(c, e); return ((v >>> 1) ^ -(v & 1)) | 0; } },
  bool: { wire: 0, read: (c, e) => varint32(c, e) !== 0 }, // protobufjs reads a bool's low 32 bits too
  uint64: { wire: 0, read: varint64 },
  int64: { wire: 0, read: (c, e) => BigInt.asIntN(64, varint64(c, e)) },
  sint64: { wire: 0, read: (c, e) => { const v = varint64(c, e); return (v >> 1n) ^ -(v & 1n); } },
  fixed64: {
    wire: 1,
    read: (c, e) => {
      const at = c.pos;
      c.pos = skipTo(c, e, 8);
      const { buf } = c;
      const lo = (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
      const hi = (buf[at + 4]! | (buf[at + 5]! << 8) | (buf[at + 6]! << 16) | (buf[at + 7]! << 24)) >>> 0;
      return (BigInt(hi) << 32n) | BigInt(lo);
    },
  },
  string: { wire: 2, read: readString },
  bytes: {
    wire: 2,
    read: (c, e) => {
      const to = skipTo(c, e, varint32(c, e) >>> 0);
      const out = new Uint8Array(c.buf.subarray(c.pos, to));
      c.pos = to;
      return out;
    },
  },
};

interface WireField {
  readonly name: string;
  readonly index: number;
  readonly repeated: boolean;
  readonly wire: number;
  /** Scalars and enums; messages decode through `message`. */
  readonly read?: Read;
  readonly message?: string;
}

interface WireType {
  /** By field number (an array: a Map lookup per field was a tenth of the decode time). */
  readonly byId: ReadonlyArray<WireField | undefined>;
  readonly names: readonly string[];
  /** Makes the Entry from the values by field index (see entryBuilder). */
  readonly build: (values: unknown[]) => Entry;
  readonly required: readonly number[];
  /** protobufjs's message classes start every repeated field as an own empty array. */
  readonly repeated: readonly number[];
}

const types = new Map<string, WireType | null>();

/**
 * A function making a type's Entry: own properties in field order, only those present, like the
 * protobufjs path's entries. Generated per type so each store has one constant key (one loop
 * storing every type's names by index was a megamorphic keyed store: half the decode time).
 * Names go in as JSON string literals, so no field name can be code.
 */
function entryBuilder(names: readonly string[]): (values: unknown[]) => Entry {
  const body = names.map((name, i) => `if (v[${i}] !== undefined) e[${JSON.stringify(name)}] = v[${i}];`).join('\n');
  return new Function('v', `const e = {};\n${body}\nreturn e;`) as (values: unknown[]) => Entry;
}

/** The wire table of a message type, or null when it (or a message inside it) has a type this decoder does not read. */
function wireType(type: string, fieldsOf: (type: string) => readonly FieldMeta[]): WireType | null {
  const known = types.get(type);
  if (known !== undefined) return known;
  types.set(type, null); // a recursive type resolves to "not plain" while being built
  const byId: Array<WireField | undefined> = [];
  const fields = fieldsOf(type);
  if (fields.some((f) => !Number.isSafeInteger(f.id) || f.id < 1 || f.id > 4096)) return null; // a sparse array would be slow
  for (const [index, f] of fields.entries()) {
    if (f.kind === 'message') {
      if (!wireType(f.type, fieldsOf)) return null;
      byId[f.id] = { name: f.name, index, repeated: f.repeated, wire: 2, message: f.type };
      continue;
    }
    const scalar = f.kind === 'enum' ? SCALARS['int32'] : SCALARS[f.type];
    if (!scalar) return null;
    byId[f.id] = { name: f.name, index, repeated: f.repeated, wire: scalar.wire, read: scalar.read };
  }
  const table = {
    byId,
    names: fields.map((f) => f.name),
    build: entryBuilder(fields.map((f) => f.name)),
    required: fields.flatMap((f, i) => (f.required ? [i] : [])),
    repeated: fields.flatMap((f, i) => (f.repeated ? [i] : [])),
  };
  types.set(type, table);
  return table;
}

/**
 * The last few decoded sub-messages of each type, by their bytes. Thread cores of one process
 * repeat most of theirs byte for byte (creds, tls, FPU state of idle threads, sigaltstack...): an
 * identical one is the same frozen Entry again, which saves 10,000 threads most of their decode
 * and garbage. A few per type, not one: a core's three tls entries differ from each other and
 * recur in every thread. Frozen, so a consumer that would modify one (and so every thread's)
 * throws instead. A type that seldom repeats (registers) is no longer kept: freezing costs too.
 */
interface RecentSubs {
  readonly recent: Array<{ bytes: Uint8Array; entry: Entry }>;
  /** The oldest in `recent` once it is full: the next to be replaced. */
  next: number;
  hits: number;
  misses: number;
}
const RECENT_PER_TYPE = 4;
const recentSubs = new Map<string, RecentSubs>();

/** Below this many bytes a JS loop beats Buffer#compare's per-call checks (3x at 40 bytes). */
const SHORT_COMPARE = 128;

/**
 * Buffer#compare is a memcmp: a JS byte loop over each thread's ~1 KiB FPU state cost ~30 ms per
 * 10,000 cores; but most sub-messages compared (creds, sigaltstack, rseq, tls) are a few dozen bytes.
 */
function sameBytes(a: Uint8Array, b: Buffer, from: number, to: number): boolean {
  const n = a.length;
  if (n !== to - from) return false;
  if (n >= SHORT_COMPARE) return b.compare(a, 0, n, from, to) === 0;
  for (let i = 0; i < n; i++) if (a[i] !== b[from + i]) return false;
  return true;
}

/** Its sub-messages are frozen already (they came through subMessage); its arrays are not. */
function freezeEntry(entry: Entry): Entry {
  for (const v of Object.values(entry)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(entry);
}

function subMessage(type: string, c: Cursor, to: number): Entry {
  // Text decodes by whether the input is a Buffer (readString): only Buffers' are kept and reused.
  if (!Buffer.isBuffer(c.buf)) return decodeMessage(types.get(type)!, c, to);
  let subs = recentSubs.get(type);
  if (subs) {
    for (let k = 0; k < subs.recent.length; k++) {
      const { bytes, entry } = subs.recent[k]!;
      if (sameBytes(bytes, c.buf, c.pos, to)) {
        subs.hits++;
        return entry;
      }
    }
    if (++subs.misses > 32 && subs.hits * 4 < subs.misses) return decodeMessage(types.get(type)!, c, to);
  } else {
    subs = { recent: [], next: 0, hits: 0, misses: 0 };
    recentSubs.set(type, subs);
  }
  const sub = { bytes: c.buf.subarray(c.pos, to), entry: freezeEntry(decodeMessage(types.get(type)!, c, to)) };
  if (subs.recent.length < RECENT_PER_TYPE) {
    subs.recent.push(sub);
  } else {
    subs.recent[subs.next] = sub;
    subs.next = (subs.next + 1) % RECENT_PER_TYPE;
  }
  return sub.entry;
}

function decodeMessage(type: WireType, c: Cursor, end: number): Entry {
  const values: unknown[] = new Array(type.names.length);
  // Indexed loops: a for-of may allocate an iterator result per step until its code is optimized.
  for (let k = 0; k < type.repeated.length; k++) values[type.repeated[k]!] = [];
  while (c.pos < end) {
    const tag = varint32(c, end) >>> 0;
    const field = type.byId[tag >>> 3];
    if (!field) throw notPlain;
    const wire = tag & 7;
    if (field.message) {
      if (wire !== 2) throw notPlain;
      const to = skipTo(c, end, varint32(c, end) >>> 0);
      const sub = subMessage(field.message, c, to);
      c.pos = to;
      if (field.repeated) (values[field.index] as unknown[]).push(sub);
      else if (values[field.index] !== undefined) throw notPlain; // protobufjs merges the two
      else values[field.index] = sub;
      continue;
    }
    const read = field.read!;
    if (!field.repeated) {
      if (wire !== field.wire) throw notPlain;
      values[field.index] = read(c, end);
      continue;
    }
    const list = values[field.index] as unknown[];
    if (wire === 2 && field.wire !== 2) {
      const to = skipTo(c, end, varint32(c, end) >>> 0);
      while (c.pos < to) list.push(read(c, to));
    } else if (wire === field.wire) {
      list.push(read(c, end));
    } else {
      throw notPlain;
    }
  }
  for (let k = 0; k < type.required.length; k++) if (values[type.required[k]!] === undefined) throw notPlain;
  return type.build(values);
}

/** The Entry of one message, or undefined when protobufjs must decode it (see the file comment). */
export function decodePlain(type: string, bytes: Uint8Array, fieldsOf: (type: string) => readonly FieldMeta[]): Entry | undefined {
  const table = wireType(type, fieldsOf);
  if (!table) return undefined;
  try {
    return decodeMessage(table, { buf: bytes, pos: 0 }, bytes.length);
  } catch {
    return undefined; // not plain, or too deep for this stack: protobufjs says what is wrong
  }
}
