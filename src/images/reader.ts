// Reads one CRIU image file: checks its head (head magic, then the image's own magic), frames its
// entries (u32 length + one protobuf message, plus the raw payload some kinds carry after an
// entry) and decodes each entry only when asked. Framing is checked up front, so a truncated or
// corrupt file is refused at open with the file and byte offset, before anything trusts it.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { ImageError } from '../errors.js';
import { COMMON_MAGIC, SERVICE_MAGIC, imageKindByMagic, imageKindForFile, type Entry, type ImageKind } from './schema.js';
import { decodeEntry } from './codec.js';

/** No single protobuf message in a real image comes near this; a larger length is corruption. */
export const MAX_ENTRY_BYTES = 64 * 1024 * 1024;
/** Entry images are read whole; page data (pages-N.img) is never read this way. */
export const MAX_IMAGE_BYTES = 1024 * 1024 * 1024;
/** The only image version with head magics, the one CRIU has written since 2013. */
export const SUPPORTED_IMG_VERSION = 2;

export interface LazyEntry {
  readonly index: number;
  /** Byte offset of the entry's u32 length in the file. */
  readonly offset: number;
  /** Length of the protobuf message (not counting the u32 and any payload). */
  readonly length: number;
  /** Message type name the entry is decoded as. */
  readonly type: string;
  /** The message bytes, a view into the file's buffer. */
  readonly bytes: Uint8Array;
  /** Raw data that follows the message (pipe contents, socket queue, ...), when the kind has any. */
  readonly payload?: Uint8Array;
  /** Decodes the message (once; later calls return the same object). */
  decode(): Entry;
}

export interface ImageFile {
  readonly path: string;
  readonly kind: ImageKind;
  readonly size: number;
  /** Byte offset of the first entry, right after the magics. */
  readonly entriesOffset: number;
  readonly count: number;
  entries(): Iterable<LazyEntry>;
  entry(index: number): LazyEntry;
  all(): Entry[];
  /** The one entry of an image that must hold exactly one (mm, ids, fs, inventory, ...). */
  only(): Entry;
}

/** The message type of the entry at `index`: a few kinds start with a different head message. */
export function entryType(kind: ImageKind, index: number): string {
  return index === 0 && kind.firstMessage ? kind.firstMessage : kind.message;
}

/** The magic words an image of this kind starts with, in file order. */
export function headWords(kind: ImageKind): number[] {
  switch (kind.head) {
    case 'common':
      return [COMMON_MAGIC, kind.magic];
    case 'service':
      return [SERVICE_MAGIC, kind.magic];
    case 'none':
      return [kind.magic];
    case 'raw':
      return [];
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** Most images (every thread core) are a few hundred bytes: read into this, then copied out. */
const smallRead = Buffer.allocUnsafe(64 * 1024);

/**
 * A file read whole by one pread into smallRead, when it is shorter (a regular file read short
 * has ended); undefined when it may be longer, empty or not a regular file (the fstat path
 * decides). No fstat first: its Stats, with four Dates, cost more than the read.
 */
function readSmall(fd: number, path: string): Buffer | undefined {
  let n: number;
  try {
    n = readSync(fd, smallRead, 0, smallRead.length, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new ImageError(path, 0, 'a regular file', 'not a regular file');
    return undefined;
  }
  return n > 0 && n < smallRead.length ? Buffer.from(smallRead.subarray(0, n)) : undefined;
}

/** Reads a whole file, refusing what is not a regular file; errors name the file. */
export function readWholeFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ImageError(path, 0, 'a readable image file', (err as NodeJS.ErrnoException).code);
  }
  try {
    const whole = readSmall(fd, path);
    if (whole) return whole;
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ImageError(path, 0, 'a regular file', 'not a regular file');
    if (st.size > MAX_IMAGE_BYTES) {
      throw new ImageError(path, 0, `an image of at most ${MAX_IMAGE_BYTES} bytes`, `the file has ${st.size}`);
    }
    const buf = Buffer.allocUnsafe(st.size);
    let done = 0;
    while (done < st.size) {
      const n = readSync(fd, buf, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === st.size ? buf : buf.subarray(0, done);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(path, 0, 'a readable image file', (err as NodeJS.ErrnoException).code);
  } finally {
    closeSync(fd);
  }
}

/** Checks the head of `buf` against `kind`; returns the offset of the first entry. */
function checkHead(path: string, kind: ImageKind, buf: Uint8Array): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const words = headWords(kind);
  for (let i = 0; i < words.length; i++) {
    const at = i * 4;
    const got = buf.length < at + 4 ? undefined : view.getUint32(at, true);
    if (got === words[i]) continue;
    const what = `${i === 0 && kind.head !== 'none' ? `${kind.head} head magic` : `${kind.magicName} magic`} ${hex(words[i]!)}`;
    if (got === undefined) throw new ImageError(path, at, what, `file ends after ${buf.length} bytes`);
    let detail = `found ${hex(got)}`;
    if (i === 0 && kind.head === 'common' && got === kind.magic) {
      detail = 'no head magic: an image older than img_version 2, which crr does not support';
    } else {
      const other = imageKindByMagic(got);
      if (other && other !== kind) detail += `, the magic of ${other.magicName}`;
    }
    throw new ImageError(path, at, what, detail);
  }
  return words.length * 4;
}

function decodeAt(path: string, type: string, offset: number, bytes: Uint8Array): Entry {
  try {
    return decodeEntry(type, bytes);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(path, offset, `a valid ${type} message of ${bytes.length} bytes`, (err as Error).message);
  }
}

function makeEntry(path: string, index: number, offset: number, type: string, bytes: Uint8Array): LazyEntry {
  let decoded: Entry | undefined;
  return {
    index,
    offset,
    length: bytes.length,
    type,
    bytes,
    decode() {
      decoded ??= decodeAt(path, type, offset, bytes);
      return decoded;
    },
  };
}

/** Frames every entry of `buf` from `start`; throws ImageError at the first bad length. */
function frameEntries(path: string, kind: ImageKind, buf: Uint8Array, start: number): LazyEntry[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const found: LazyEntry[] = [];
  let at = start;
  while (at < buf.length) {
    const index = found.length;
    const type = entryType(kind, index);
    if (buf.length - at < 4) {
      throw new ImageError(path, at, `a 4-byte entry length`, `only ${buf.length - at} bytes left`);
    }
    const length = view.getUint32(at, true);
    const left = buf.length - at - 4;
    if (length > MAX_ENTRY_BYTES) {
      throw new ImageError(path, at, `an entry length of at most ${MAX_ENTRY_BYTES}`, `found ${length}`);
    }
    if (length > left) {
      throw new ImageError(path, at, `a ${type} entry of ${length} bytes`, `only ${left} bytes left in the file`);
    }
    const entry = makeEntry(path, index, at, type, buf.subarray(at + 4, at + 4 + length));
    at += 4 + length;
    if (kind.payloadBytes) {
      const want = kind.payloadBytes(entry.decode(), buf.subarray(at));
      const room = buf.length - at;
      if (!Number.isSafeInteger(want) || want < 0 || want > room) {
        const what = Number.isSafeInteger(want) ? `${want} payload bytes after entry ${index}` : `the payload entry ${index} describes`;
        throw new ImageError(path, at, what, `only ${room} bytes left in the file`);
      }
      (entry as { payload?: Uint8Array }).payload = buf.subarray(at, at + want);
      at += want;
    }
    found.push(entry);
  }
  return found;
}

/**
 * The one entry of an image that must hold exactly one, decoded, with no framing kept: a restore
 * reads a core per thread, and each image's entry objects and closures were most of the garbage
 * of reading 10,000 of them. Anything but one plainly framed entry goes the parseImage way, which
 * words the error.
 */
export function readOnlyEntry(path: string, kind: ImageKind): Entry {
  return onlyEntryOf(path, kind, readWholeFile(path));
}

/** readOnlyEntry of a file already read whole into `buf`. */
export function onlyEntryOf(path: string, kind: ImageKind, buf: Buffer): Entry {
  if (kind.head !== 'raw' && !kind.payloadBytes) {
    const start = checkHead(path, kind, buf);
    const length = buf.length - start >= 4 ? buf.readUInt32LE(start) : -1;
    if (length >= 0 && length <= MAX_ENTRY_BYTES && start + 4 + length === buf.length) {
      return decodeAt(path, entryType(kind, 0), start, buf.subarray(start + 4));
    }
  }
  return parseImage(path, kind, buf).only();
}

/** Parses an image already in memory; `path` only names it in errors. */
export function parseImage(path: string, kind: ImageKind, buf: Uint8Array): ImageFile {
  if (kind.head === 'raw') {
    const what = kind.unsupported ?? 'raw page data: read it with openPages';
    throw new ImageError(path, 0, 'an image with entries', `${kind.magicName} is ${what}`);
  }
  const entriesOffset = checkHead(path, kind, buf);
  const list = frameEntries(path, kind, buf, entriesOffset);
  const image: ImageFile = {
    path,
    kind,
    size: buf.length,
    entriesOffset,
    count: list.length,
    entries: () => list.values(),
    entry(index) {
      const e = list[index];
      if (!e) throw new ImageError(path, buf.length, `an entry #${index}`, `the image has ${list.length}`);
      return e;
    },
    all: () => list.map((e) => e.decode()),
    only() {
      if (list.length !== 1) {
        throw new ImageError(path, list[1]?.offset ?? entriesOffset, `exactly one ${kind.message} entry`, `found ${list.length}`);
      }
      return list[0]!.decode();
    },
  };
  if (kind.magicName === 'INVENTORY') checkInventory(image);
  return image;
}

function checkInventory(image: ImageFile): void {
  const first = image.entries()[Symbol.iterator]().next();
  if (first.done) throw new ImageError(image.path, image.entriesOffset, 'an inventory entry', 'the image is empty');
  const version = Number(first.value.decode()['img_version']);
  if (version !== SUPPORTED_IMG_VERSION) {
    throw new ImageError(
      image.path,
      first.value.offset,
      `img_version ${SUPPORTED_IMG_VERSION}`,
      `found ${version}: unsupported image version`,
    );
  }
}

/** The image kind a file name stands for (core-1.img, pages-3.img, stats-dump, ...). */
export function kindForPath(path: string): ImageKind {
  const kind = imageKindForFile(basename(path));
  if (!kind) throw new ImageError(path, 0, 'a known CRIU image name', `unknown image '${basename(path)}'`);
  return kind;
}

/** Reads and frames the image at `path`; its kind comes from the file name unless given. */
export function readImage(path: string, kind: ImageKind = kindForPath(path)): ImageFile {
  return parseImage(path, kind, readWholeFile(path));
}
