// Parsers for the /proc files the dumper reads. Pure text -> typed values, so each one is unit
// tested on captured text; the readers below are thin wrappers that add the pid to any error.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { CrrError } from '../errors.js';

/** A /proc read that failed: names the pid and the file, keeps errno's code. */
export class ProcError extends CrrError {
  readonly pid: number;
  readonly file: string;
  readonly code: string | undefined;
  constructor(pid: number, file: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException)?.code;
    const what = code === 'ENOENT' || code === 'ESRCH' ? 'no such process' : String((cause as Error)?.message ?? cause);
    super(`pid ${pid}: cannot read /proc/${pid}/${file}: ${what}`, code === 'ENOENT' || code === 'ESRCH' ? 3 : 1, { cause });
    this.pid = pid;
    this.file = file;
    this.code = code;
  }
}

export function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch (e) {
    throw new ProcError(pid, file, e);
  }
}

export function readProcBytes(pid: number, file: string): Buffer {
  try {
    return readFileSync(`/proc/${pid}/${file}`);
  } catch (e) {
    throw new ProcError(pid, file, e);
  }
}

export function readProcLink(pid: number, file: string): string {
  try {
    return readlinkSync(`/proc/${pid}/${file}`);
  } catch (e) {
    throw new ProcError(pid, file, e);
  }
}

/** Thread ids of a process, ascending (the main thread, whose tid is the pid, first). */
export function listThreads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
  } catch (e) {
    throw new ProcError(pid, 'task', e);
  }
}

/** Children of every thread of a process, in the order the kernel lists them. */
export function listChildren(pid: number, tids: number[] = listThreads(pid)): number[] {
  const out: number[] = [];
  for (const tid of tids) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // thread exited meanwhile
      throw new ProcError(pid, `task/${tid}/children`, e);
    }
    for (const w of text.trim().split(/\s+/)) if (w) out.push(Number(w));
  }
  return out;
}

/** The fields of /proc/PID/stat the dump needs (numbered as in proc(5)). */
export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** The controlling terminal's device number (0: none), and its foreground process group. */
  ttyNr: number;
  tpgid: number;
  flags: number;
  nice: number;
  numThreads: number;
  startCode: bigint;
  endCode: bigint;
  startStack: bigint;
  rtPriority: number;
  policy: number;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  exitCode: number;
}

export function parseStat(text: string): ProcStat {
  // comm may hold spaces and parentheses: it ends at the *last* ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const f = text.slice(close + 2).trim().split(' ');
  // f[0] is field 3 (state): field n is f[n - 3].
  const n = (i: number) => Number(f[i - 3]);
  const b = (i: number) => BigInt(f[i - 3] ?? '0');
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: f[0]!,
    ppid: n(4),
    pgid: n(5),
    sid: n(6),
    ttyNr: n(7),
    tpgid: n(8),
    flags: n(9),
    nice: n(19),
    numThreads: n(20),
    startCode: b(26),
    endCode: b(27),
    startStack: b(28),
    rtPriority: n(40),
    policy: n(41),
    startData: b(45),
    endData: b(46),
    startBrk: b(47),
    argStart: b(48),
    argEnd: b(49),
    envStart: b(50),
    envEnd: b(51),
    exitCode: n(52),
  };
}

/** /proc/PID/status as key -> raw value text. */
export function parseStatus(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

/** The ids and masks of /proc/PID/status, decoded. */
export interface ProcStatus {
  state: string;
  umask: number;
  uids: number[]; // real, effective, saved, fs
  gids: number[];
  groups: number[];
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: number;
  seccomp: number;
  sigPnd: bigint;
  shdPnd: bigint;
  sigBlk: bigint;
}

export function decodeStatus(text: string): ProcStatus {
  const m = parseStatus(text);
  const hex = (k: string) => BigInt('0x' + (m.get(k) ?? '0'));
  const nums = (k: string) => (m.get(k) ?? '').split(/\s+/).filter(Boolean).map(Number);
  return {
    state: (m.get('State') ?? '?').charAt(0),
    umask: parseInt(m.get('Umask') ?? '0', 8),
    uids: nums('Uid'),
    gids: nums('Gid'),
    groups: nums('Groups'),
    capInh: hex('CapInh'),
    capPrm: hex('CapPrm'),
    capEff: hex('CapEff'),
    capBnd: hex('CapBnd'),
    capAmb: hex('CapAmb'),
    noNewPrivs: Number(m.get('NoNewPrivs') ?? 0),
    seccomp: Number(m.get('Seccomp') ?? 0),
    sigPnd: hex('SigPnd'),
    shdPnd: hex('ShdPnd'),
    sigBlk: hex('SigBlk'),
  };
}

/** One line of /proc/PID/maps. */
export interface MapsLine {
  start: bigint;
  end: bigint;
  read: boolean;
  write: boolean;
  exec: boolean;
  shared: boolean;
  offset: bigint;
  dev: string; // "major:minor" in hex, as printed
  inode: number;
  path: string;
}

export function parseMaps(text: string): MapsLine[] {
  const out: MapsLine[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const perms = m[3]!;
    out.push({
      start: BigInt('0x' + m[1]),
      end: BigInt('0x' + m[2]),
      read: perms[0] === 'r',
      write: perms[1] === 'w',
      exec: perms[2] === 'x',
      shared: perms[3] === 's',
      offset: BigInt('0x' + m[4]),
      dev: m[5]!,
      inode: Number(m[6]),
      path: m[7] ?? '',
    });
  }
  return out;
}

export interface SmapsVma {
  /** VmFlags mnemonics. */
  flags: string[];
  /** Whether any page is resident or swapped out (Rss + Swap > 0): a VMA with none has nothing to dump. */
  touched: boolean;
}

/** VmFlags and whether pages are there, of every VMA in /proc/PID/smaps, keyed by start address. */
export function parseSmaps(text: string): Map<bigint, SmapsVma> {
  const out = new Map<bigint, SmapsVma>();
  let current: SmapsVma | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ /.exec(line);
    if (head) {
      current = { flags: [], touched: false };
      out.set(BigInt('0x' + head[1]), current);
    } else if (current && line.startsWith('VmFlags:')) {
      current.flags = line.slice(8).trim().split(/\s+/).filter(Boolean);
    } else if (current && (line.startsWith('Rss:') || line.startsWith('Swap:')) && !/:\s+0 kB/.test(line)) {
      current.touched = true;
    }
  }
  return out;
}

export const RLIM_INFINITY = 0xffffffffffffffffn;

/** /proc/PID/limits in RLIMIT_* order (the kernel prints them in that order). */
export function parseLimits(text: string): Array<{ cur: bigint; max: bigint }> {
  const out: Array<{ cur: bigint; max: bigint }> = [];
  for (const line of text.split('\n').slice(1)) {
    if (!line.trim()) continue;
    // Names have spaces; the two values are the first two columns at offset 26 and 47.
    const cols = line.slice(26).trim().split(/\s+/);
    const v = (s: string | undefined) => (s === 'unlimited' ? RLIM_INFINITY : BigInt(s ?? '0'));
    out.push({ cur: v(cols[0]), max: v(cols[1]) });
  }
  return out;
}

/** /proc/PID/fdinfo/N: pos, flags (octal in the file), mnt_id, ino and any other keys. */
export interface FdInfo {
  pos: bigint;
  flags: number;
  mntId: number;
  ino: number;
  raw: Map<string, string>;
}

export function parseFdinfo(text: string): FdInfo {
  const raw = parseStatus(text);
  return {
    pos: BigInt(raw.get('pos') ?? '0'),
    flags: parseInt(raw.get('flags') ?? '0', 8),
    mntId: Number(raw.get('mnt_id') ?? -1),
    ino: Number(raw.get('ino') ?? 0),
    raw,
  };
}

/** /proc/PID/auxv: native u64 (key, value) pairs up to and without AT_NULL. */
export function parseAuxv(buf: Buffer): bigint[] {
  const out: bigint[] = [];
  for (let off = 0; off + 16 <= buf.length; off += 16) {
    const key = buf.readBigUInt64LE(off);
    if (key === 0n) break;
    out.push(key, buf.readBigUInt64LE(off + 8));
  }
  return out;
}

/** One POSIX timer from /proc/PID/timers. */
export interface ProcTimer {
  id: number;
  signal: number;
  sigevValue: bigint;
  notify: string;
  notifyTid: number;
  clockId: number;
}

export function parseTimers(text: string): ProcTimer[] {
  const out: ProcTimer[] = [];
  for (const block of text.split(/(?=^ID:)/m)) {
    const m = parseStatus(block);
    if (!m.has('ID')) continue;
    const sig = /^(\d+)\/([0-9a-fx]+)/i.exec(m.get('signal') ?? '');
    const notify = /^(\w+)\/(?:pid|tid)\.(\d+)/.exec(m.get('notify') ?? '');
    out.push({
      id: Number(m.get('ID')),
      signal: Number(sig?.[1] ?? 0),
      sigevValue: BigInt(sig ? (sig[2]!.startsWith('0x') ? sig[2]! : '0x' + sig[2]) : '0'),
      notify: notify?.[1] ?? 'none',
      notifyTid: Number(notify?.[2] ?? 0),
      clockId: Number(m.get('ClockID') ?? 0),
    });
  }
  return out;
}
