// Protobuf codec for one image entry: bytes <-> Entry, through the static code that
// scripts/build-proto.mjs generates from proto/. An Entry is a plain object: 64-bit
// integers as bigint (exact), bytes as Uint8Array, enums as numbers, nested messages as
// Entry, repeated fields as arrays, and only the fields present on the wire as own
// properties, so decode -> encode gives back the same bytes.
import { createRequire } from 'node:module';
import meta, { type FieldMeta } from './gen/meta.js';
import { decodePlain } from './wire-decode.js';

export type Entry = Record<string, unknown>;
export type { FieldMeta };

interface StaticMessage {
  decode(reader: Uint8Array): Record<string, unknown>;
  encode(message: Record<string, unknown>): { finish(): Uint8Array };
  new (): Record<string, unknown>;
}

interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toString(): string;
}

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
// Unknown fields survive a round trip: protobufjs keeps them in $unknowns; an Entry
// carries them in a non-enumerable property so they never show up as data.
const UNKNOWNS = '$unknowns';

// protobufjs's static code (1.2 MB, ~60 ms to load) is only needed to encode and for messages
// the direct decoder leaves to it, so a restore usually never loads it: it is required at its
// first use (Node >= 20.19 requires an ES module synchronously; package.json's engines).
type Generated = typeof import('./gen/images.js');
let generated: Generated | undefined;

function protobufRoot(): Record<string, unknown> {
  generated ??= createRequire(import.meta.url)('./gen/images.js') as Generated;
  return generated as unknown as Record<string, unknown>;
}

const staticClasses = new Map<string, StaticMessage>();

function staticClass(type: string): StaticMessage {
  const known = staticClasses.get(type);
  if (known) return known;
  let node: unknown = protobufRoot();
  for (const part of type.split('.')) node = node == null ? undefined : (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`unknown message type ${type}`);
  staticClasses.set(type, node as unknown as StaticMessage);
  return node as unknown as StaticMessage;
}

/** Field table of a message type, in field-number order; throws for an unknown type. */
export function messageFields(type: string): readonly FieldMeta[] {
  const m = meta.messages[type];
  if (!m) throw new Error(`unknown message type ${type}`);
  return m.fields;
}

export function hasMessageType(type: string): boolean {
  return Object.hasOwn(meta.messages, type);
}

/** name -> number of an enum type (nested enums as "outer.inner"). */
export function enumValues(type: string): Readonly<Record<string, number>> {
  const e = meta.enums[type];
  if (!e) throw new Error(`unknown enum type ${type}`);
  return e;
}

function isLong(v: unknown): v is LongLike {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v;
}

/** A Long's exact value from its two 32-bit halves (no decimal string in between). */
function longToBigInt(v: LongLike): bigint {
  const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? bits : BigInt.asIntN(64, bits);
}

function longFromWire(v: unknown): bigint {
  if (isLong(v)) return longToBigInt(v);
  if (typeof v === 'number') return BigInt(v);
  return BigInt(String(v));
}

function bytesFromWire(v: unknown): unknown {
  return v instanceof Uint8Array ? new Uint8Array(v) : v;
}

/** How one field of a message type goes between wire and Entry; undefined convert: as is. */
interface FieldConverter {
  readonly name: string;
  readonly repeated: boolean;
  readonly convert: ((v: unknown) => unknown) | undefined;
}
type FieldInfo = ReturnType<typeof messageFields>[number];

/**
 * Per message type, each field's converter, worked out once: decoding or encoding 10,000 core
 * images re-derived it (a Set lookup per value, a closure per field) for every entry.
 */
function converterTable(pick: (field: FieldInfo) => ((v: unknown) => unknown) | undefined) {
  const tables = new Map<string, readonly FieldConverter[]>();
  return (type: string): readonly FieldConverter[] => {
    let fields = tables.get(type);
    if (!fields) {
      fields = messageFields(type).map((field) => ({ name: field.name, repeated: field.repeated, convert: pick(field) }));
      tables.set(type, fields);
    }
    return fields;
  };
}

const decoderOf = converterTable((field) =>
  field.kind === 'message'
    ? (v) => fromWire(field.type, v as Record<string, unknown>)
    : LONG_TYPES.has(field.type)
      ? longFromWire
      : field.type === 'bytes'
        ? bytesFromWire
        : undefined,
);

function fromWire(type: string, msg: Record<string, unknown>): Entry {
  const entry: Entry = {};
  for (const field of decoderOf(type)) {
    if (!Object.hasOwn(msg, field.name)) continue;
    const raw = msg[field.name];
    const convert = field.convert;
    // The decoded message is this call's own: its arrays can be kept rather than copied.
    if (convert === undefined) entry[field.name] = raw;
    else entry[field.name] = field.repeated ? (raw as unknown[]).map(convert) : convert(raw);
  }
  const unknowns = msg[UNKNOWNS];
  if (Array.isArray(unknowns) && unknowns.length) {
    Object.defineProperty(entry, UNKNOWNS, { value: unknowns, enumerable: false });
  }
  return entry;
}

/**
 * A 64-bit Entry value as protobufjs's writer takes it: a safe-integer number as is (its
 * LongBits.fromNumber gives the two's-complement bits), anything else as {low, high}, the
 * field's 64 bits (a C cast: -1 fits a uint64). Cheaper than a Long built from a wrapped bigint.
 */
function longToWire(name: string, v: unknown): unknown {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string') {
    const big = BigInt(v);
    return { low: Number(big & 0xffffffffn) | 0, high: Number((big >> 32n) & 0xffffffffn) | 0 };
  }
  throw new Error(`${name}: expected an integer, got ${typeof v}`);
}

const encoderOf = converterTable((field) =>
  field.kind === 'message' ? (v) => toWire(field.type, v as Entry) : LONG_TYPES.has(field.type) ? (v) => longToWire(field.name, v) : undefined,
);

function toWire(type: string, entry: Entry): Record<string, unknown> {
  const Cls = staticClass(type);
  const msg = new Cls();
  for (const field of encoderOf(type)) {
    if (!Object.hasOwn(entry, field.name)) continue;
    const raw = entry[field.name];
    if (raw === undefined) continue;
    const convert = field.convert;
    if (field.repeated) {
      if (!Array.isArray(raw)) throw new Error(`${type}.${field.name}: expected an array`);
      msg[field.name] = convert === undefined ? raw : raw.map(convert);
    } else {
      msg[field.name] = convert === undefined ? raw : convert(raw);
    }
  }
  const unknowns = (entry as Record<string, unknown>)[UNKNOWNS];
  if (Array.isArray(unknowns)) msg[UNKNOWNS] = unknowns;
  return msg;
}

/** Decodes one protobuf message of `type`; throws a plain Error on malformed input. */
export function decodeEntry(type: string, bytes: Uint8Array): Entry {
  return decodePlain(type, bytes, messageFields) ?? decodeByProtobufjs(type, bytes);
}

/** decodeEntry through protobufjs alone (the reference the direct decoder is tested against). */
export function decodeByProtobufjs(type: string, bytes: Uint8Array): Entry {
  const Cls = staticClass(type);
  let msg: Record<string, unknown>;
  try {
    msg = Cls.decode(bytes);
  } catch (err) {
    throw new Error(`${type}: ${(err as Error).message}`);
  }
  return fromWire(type, msg);
}

/** Encodes an Entry of `type`; fields absent from the Entry are not written (required ones get their default). */
export function encodeEntry(type: string, entry: Entry): Uint8Array {
  const Cls = staticClass(type);
  const bytes = Cls.encode(toWire(type, entry)).finish();
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
