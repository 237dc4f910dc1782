// crit's `decode --pretty` view of one entry, and back: field names of the format, hex
// strings where a field (or an enclosing message) is marked hex, "A | B" flag names,
// enum names, dev_t as "major:minor", addresses as text, bytes as base64 (unix socket
// names as quoted-printable) and the raw payload after an entry as "extra".
import { enumValues, messageFields, type Entry, type FieldMeta } from './codec.js';

type Flags = ReadonlyArray<readonly [string, number]>;

const FLAG_TABLES: Record<string, Flags> = {
  'mmap.prot': [['PROT_READ', 0x1], ['PROT_WRITE', 0x2], ['PROT_EXEC', 0x4]],
  'mmap.flags': [['MAP_SHARED', 0x1], ['MAP_PRIVATE', 0x2], ['MAP_DROPPABLE', 0x08], ['MAP_ANON', 0x20], ['MAP_GROWSDOWN', 0x0100]],
  'mmap.status': [
    ['VMA_AREA_NONE', 0], ['VMA_AREA_REGULAR', 1 << 0], ['VMA_AREA_STACK', 1 << 1], ['VMA_AREA_VSYSCALL', 1 << 2],
    ['VMA_AREA_VDSO', 1 << 3], ['VMA_AREA_HEAP', 1 << 5], ['VMA_FILE_PRIVATE', 1 << 6], ['VMA_FILE_SHARED', 1 << 7],
    ['VMA_ANON_SHARED', 1 << 8], ['VMA_ANON_PRIVATE', 1 << 9], ['VMA_AREA_SYSVIPC', 1 << 10], ['VMA_AREA_SOCKET', 1 << 11],
    ['VMA_AREA_VVAR', 1 << 12], ['VMA_AREA_AIORING', 1 << 13], ['VMA_AREA_MEMFD', 1 << 14], ['VMA_AREA_SHSTK', 1 << 15],
    ['VMA_AREA_UPROBES', 1 << 17], ['VMA_UNSUPP', 2 ** 31],
  ],
  'rfile.flags': [
    ['O_WRONLY', 0o1], ['O_RDWR', 0o2], ['O_CREAT', 0o100], ['O_EXCL', 0o200], ['O_NOCTTY', 0o400], ['O_TRUNC', 0o1000],
    ['O_APPEND', 0o2000], ['O_NONBLOCK', 0o4000], ['O_DSYNC', 0o10000], ['FASYNC', 0o20000], ['O_DIRECT', 0o40000],
    ['O_LARGEFILE', 0o100000], ['O_DIRECTORY', 0o200000], ['O_NOFOLLOW', 0o400000], ['O_NOATIME', 0o1000000],
    ['O_CLOEXEC', 0o2000000],
  ],
  'pmap.flags': [['PE_PARENT', 1], ['PE_LAZY', 2], ['PE_PRESENT', 4]],
  'seals.flags': [['F_SEAL_SEAL', 1], ['F_SEAL_SHRINK', 2], ['F_SEAL_GROW', 4], ['F_SEAL_WRITE', 8], ['F_SEAL_FUTURE_WRITE', 0x10]],
};

// (criu).dict tables, keyed by table then by field name.
const DICTS: Record<string, Record<string, Record<number, string>>> = {
  gen: { task_state: { 1: 'Alive', 2: 'Dead', 3: 'Stopped', 6: 'Zombie' } },
  sk: {
    family: { 1: 'UNIX', 2: 'INET', 10: 'INET6', 16: 'NETLINK', 17: 'PACKET' },
    type: { 1: 'STREAM', 2: 'DGRAM', 3: 'RAW', 5: 'SEQPACKET', 10: 'PACKET' },
    state: {
      1: 'ESTABLISHED', 2: 'SYN_SENT', 3: 'SYN_RECV', 4: 'FIN_WAIT1', 5: 'FIN_WAIT2', 6: 'TIME_WAIT', 7: 'CLOSE',
      8: 'CLOSE_WAIT', 9: 'LAST_ACK', 10: 'LISTEN',
    },
    proto: { 0: 'IP', 6: 'TCP', 17: 'UDP', 136: 'UDPLITE' },
  },
};

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const MINOR_BITS = 20n;

function big(v: unknown): bigint {
  return typeof v === 'bigint' ? v : BigInt(v as number);
}

/** bigint only where a number would round. */
function jsonInt(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function hex(v: bigint): string {
  return v < 0n ? `0x-${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

function mapFlags(v: bigint, table: Flags): string {
  const names = table.filter(([, bit]) => (v & BigInt(bit)) !== 0n).map(([name]) => name);
  const known = table.reduce((acc, [, bit]) => acc | BigInt(bit), 0n);
  const rest = v & ~known;
  if (rest) names.push(hex(rest));
  return names.join(' | ');
}

function decodeDev(field: FieldMeta, v: bigint): string {
  if (field.opts?.odev) {
    const major = ((v >> 8n) & 0xfffn) | ((v >> 32n) & ~0xfffn);
    const minor = (v & 0xffn) | ((v >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  }
  return `${v >> MINOR_BITS}:${v & ((1n << MINOR_BITS) - 1n)}`;
}

function encodeDev(field: FieldMeta, s: string): bigint {
  const [major, minor] = s.split(':').map((x) => BigInt(x.trim()));
  if (major === undefined || minor === undefined) throw new Error(`${field.name}: bad device '${s}'`);
  if (field.opts?.odev) return ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
  return (major << MINOR_BITS) | minor;
}

function intToCrit(field: FieldMeta, v: bigint, isHex: boolean): unknown {
  if (isHex) return hex(v);
  const o = field.opts;
  if (o?.dev) return decodeDev(field, v);
  if (o?.flags) {
    const table = FLAG_TABLES[o.flags];
    return table ? mapFlags(v, table) : hex(v);
  }
  if (o?.dict) return DICTS[o.dict]?.[field.name]?.[Number(v)] ?? jsonInt(v);
  return jsonInt(v);
}

function enumName(field: FieldMeta, v: unknown): unknown {
  const values = enumValues(field.type);
  const name = Object.keys(values).find((k) => values[k] === v);
  return name ?? v;
}

function valueToCrit(field: FieldMeta, v: unknown, isHex: boolean): unknown {
  switch (field.kind) {
    case 'message':
      return messageToCrit(field.type, v as Entry, isHex);
    case 'enum':
      return enumName(field, v);
    default:
      break;
  }
  if (field.type === 'bytes') return field.opts?.conv === 'unix_name' ? qpEncode(v as Uint8Array) : base64Encode(v as Uint8Array);
  if (field.type === 'bool' || field.type === 'string') return v;
  if (field.type === 'double' || field.type === 'float') return v;
  return intToCrit(field, big(v), isHex);
}

function messageToCrit(type: string, entry: Entry, inheritedHex: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of messageFields(type)) {
    if (!Object.hasOwn(entry, field.name)) continue;
    const isHex = inheritedHex || field.opts?.hex === true;
    const v = entry[field.name];
    if (field.repeated) {
      const list = v as unknown[];
      if (list.length === 0) continue; // an empty repeated field is absent on the wire
      out[field.name] = field.opts?.ipadd ? [formatIp(list.map((x) => Number(x)))] : list.map((x) => valueToCrit(field, x, isHex));
    } else {
      out[field.name] = valueToCrit(field, v, isHex);
    }
  }
  return out;
}

function u16List(payload: Uint8Array, count: number): number[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return Array.from({ length: Math.min(count, payload.byteLength >> 1) }, (_, i) => view.getUint16(i * 2, true));
}

function extraToCrit(type: string, entry: Entry, payload: Uint8Array): unknown {
  switch (type) {
    case 'tcp_stream_entry': {
      const inq = Number(entry.inq_len ?? 0);
      return { inq: base64Encode(payload.subarray(0, inq)), outq: base64Encode(payload.subarray(inq)) };
    }
    case 'ipc_sem_entry':
      return u16List(payload, Number(entry.nsems ?? 0));
    case 'ipc_shm_entry':
      return base64Encode(payload.subarray(0, Number(entry.size ?? 0)));
    default:
      return base64Encode(payload);
  }
}

export function entryToCrit(type: string, entry: Entry, payload?: Uint8Array): unknown {
  const out = messageToCrit(type, entry, false);
  if (payload !== undefined) out.extra = extraToCrit(type, entry, payload);
  return out;
}

// ---- crit JSON -> Entry ----

function parseIntText(s: string): bigint {
  const t = s.trim().replace(/_/g, '');
  const neg = t.startsWith('-') || /^0x-/i.test(t);
  const body = t.replace(/^-/, '').replace(/^0x-/i, '0x');
  const v = BigInt(/^0[0-7]+$/.test(body) && body !== '0' ? `0o${body.slice(1)}` : body);
  return neg ? -v : v;
}

function unmapFlags(field: FieldMeta, s: string, table: Flags): bigint {
  if (s.trim() === '') return 0n;
  const byName = new Map(table);
  let v = 0n;
  for (const part of s.split('|').map((x) => x.trim())) {
    const bit = byName.get(part);
    v += bit !== undefined ? BigInt(bit) : parseIntText(part);
  }
  void field;
  return v;
}

function intFromCrit(field: FieldMeta, v: unknown): bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return big(v);
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v !== 'string') throw new Error(`${field.name}: expected an integer, got ${JSON.stringify(v)}`);
  const o = field.opts;
  if (o?.dev && v.includes(':')) return encodeDev(field, v);
  if (o?.flags && FLAG_TABLES[o.flags]) return unmapFlags(field, v, FLAG_TABLES[o.flags]!);
  if (o?.dict) {
    const names = DICTS[o.dict]?.[field.name] ?? {};
    const hit = Object.entries(names).find(([, name]) => name === v);
    if (hit) return BigInt(hit[0]);
  }
  try {
    return parseIntText(v);
  } catch {
    throw new Error(`${field.name}: '${v}' is not an integer`);
  }
}

function valueFromCrit(field: FieldMeta, v: unknown): unknown {
  if (field.kind === 'message') return messageFromCrit(field.type, v);
  if (field.kind === 'enum') {
    if (typeof v === 'number') return v;
    const n = enumValues(field.type)[String(v)];
    if (n === undefined) throw new Error(`${field.name}: unknown ${field.type} value ${JSON.stringify(v)}`);
    return n;
  }
  if (field.type === 'bytes') {
    if (typeof v !== 'string') throw new Error(`${field.name}: expected a string`);
    return field.opts?.conv === 'unix_name' ? qpDecode(v) : base64Decode(v);
  }
  if (field.type === 'bool') return Boolean(v);
  if (field.type === 'string') return String(v);
  if (field.type === 'double' || field.type === 'float') return Number(v);
  const n = intFromCrit(field, v);
  return LONG_TYPES.has(field.type) ? n : Number(n);
}

function messageFromCrit(type: string, json: unknown): Entry {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${type}: expected an object`);
  const src = json as Record<string, unknown>;
  const entry: Entry = {};
  for (const field of messageFields(type)) {
    if (!Object.hasOwn(src, field.name)) continue;
    const v = src[field.name];
    if (field.repeated) {
      if (!Array.isArray(v)) throw new Error(`${type}.${field.name}: expected an array`);
      if (field.opts?.ipadd && typeof v[0] === 'string') entry[field.name] = parseIp(v[0]).map((x) => (LONG_TYPES.has(field.type) ? BigInt(x) : x));
      else entry[field.name] = v.map((x) => valueFromCrit(field, x));
    } else {
      entry[field.name] = valueFromCrit(field, v);
    }
  }
  return entry;
}

function extraFromCrit(type: string, entry: Entry, extra: unknown): Uint8Array {
  if (type === 'tcp_stream_entry') {
    const e = extra as { inq?: string; outq?: string };
    const inq = base64Decode(e.inq ?? '');
    const outq = base64Decode(e.outq ?? '');
    const out = new Uint8Array(inq.length + outq.length);
    out.set(inq);
    out.set(outq, inq.length);
    return out;
  }
  if (type === 'ipc_sem_entry') {
    const list = extra as number[];
    const size = Math.ceil((list.length * 2) / 8) * 8;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    list.forEach((x, i) => view.setUint16(i * 2, x, true));
    return out;
  }
  if (type === 'ipc_shm_entry') {
    const data = base64Decode(String(extra));
    const size = Number(entry.size ?? data.length);
    const out = new Uint8Array(Math.ceil(size / 4) * 4);
    out.set(data.subarray(0, size));
    return out;
  }
  if (typeof extra !== 'string') throw new Error(`${type}: extra must be a base64 string`);
  return base64Decode(extra);
}

export function entryFromCrit(type: string, json: unknown): { entry: Entry; payload?: Uint8Array } {
  const entry = messageFromCrit(type, json);
  const extra = (json as Record<string, unknown>).extra;
  return extra === undefined ? { entry } : { entry, payload: extraFromCrit(type, entry, extra) };
}

/** JSON with crit's 4-space indent; bigints print as exact integers. */
export function stringifyCrit(value: unknown): string {
  const marks: string[] = [];
  const text = JSON.stringify(
    value,
    (_key, v) => {
      if (typeof v !== 'bigint') return v;
      marks.push(v.toString());
      return `\u0000big${marks.length - 1}\u0000`;
    },
    4,
  );
  return text.replace(/"\\u0000big(\d+)\\u0000"/g, (_m, i: string) => marks[Number(i)]!);
}

// ---- text forms crit uses (Python's base64.encodebytes, quopri, ipaddress) ----

/** base64 with a newline after every 76 characters and at the end, as encodebytes writes it. */
function base64Encode(bytes: Uint8Array): string {
  const flat = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let out = '';
  for (let i = 0; i < flat.length; i += 76) out += `${flat.slice(i, i + 76)}\n`;
  return out;
}

function base64Decode(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'base64'));
}

/** Quoted-printable as binascii.b2a_qp(istext) writes it: =XX escapes, soft breaks at 76. */
function qpEncode(bytes: Uint8Array): string {
  const lines: string[] = [];
  let line = '';
  const push = (piece: string): void => {
    if (line.length + piece.length > 75) {
      lines.push(`${line}=\n`);
      line = '';
    }
    line += piece;
  };
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    const atLineEnd = i + 1 === bytes.length || bytes[i + 1] === 0x0a;
    if (c === 0x0a) {
      lines.push(`${line}\n`);
      line = '';
    } else if (c === 0x3d || c < 0x20 || c > 0x7e || ((c === 0x20 || c === 0x09) && atLineEnd)) {
      if (c === 0x20 || c === 0x09 || c === 0x3d || c < 0x20 || c > 0x7e) push(`=${c.toString(16).toUpperCase().padStart(2, '0')}`);
    } else {
      push(String.fromCharCode(c));
    }
  }
  return lines.join('') + line;
}

function qpDecode(text: string): Uint8Array {
  const out: number[] = [];
  const src = text.replace(/=\r?\n/g, '');
  for (let i = 0; i < src.length; i++) {
    const ch = src[i]!;
    if (ch === '=' && /^[0-9A-Fa-f]{2}$/.test(src.slice(i + 1, i + 3))) {
      out.push(parseInt(src.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(src.charCodeAt(i) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

// An address is stored as u32 words in network byte order, read on a little-endian host.
function wordBytes(words: number[]): number[] {
  return words.flatMap((w) => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, (w >>> 24) & 0xff]);
}

function formatIp(words: number[]): string {
  const b = wordBytes(words.length === 1 ? words : words.slice(0, 4).concat([0, 0, 0, 0]).slice(0, 4));
  if (words.length === 1) return b.slice(0, 4).join('.');
  const hextets = Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16));
  // compress the longest run (2 or more) of zero groups, the first one on a tie
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (hextets[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && hextets[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (bestLen < 2) return hextets.join(':');
  return `${hextets.slice(0, best).join(':')}::${hextets.slice(best + bestLen).join(':')}`;
}

function parseIp(text: string): number[] {
  const bytesToWords = (b: number[]): number[] =>
    Array.from({ length: b.length / 4 }, (_, i) => (b[4 * i]! | (b[4 * i + 1]! << 8) | (b[4 * i + 2]! << 16) | (b[4 * i + 3]! << 24)) >>> 0);
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) return bytesToWords(text.split('.').map(Number));
  let head = text;
  let tailV4: number[] = [];
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    tailV4 = v4[1]!.split('.').map(Number);
    head = `${text.slice(0, v4.index)}:0:0`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const l = left ? left.split(':') : [];
  const r = right !== undefined && right !== '' ? right.split(':') : [];
  const groups = right !== undefined ? [...l, ...Array(8 - l.length - r.length).fill('0'), ...r] : l;
  if (groups.length !== 8) throw new Error(`bad IPv6 address '${text}'`);
  const bytes = groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [(n >> 8) & 0xff, n & 0xff];
  });
  if (tailV4.length) bytes.splice(12, 4, ...tailV4);
  return bytesToWords(bytes);
}
