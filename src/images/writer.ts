// Writes CRIU image files in exactly the framing the reader checks: head magics, then per entry
// a u32 length, the protobuf message and any raw payload. The dumper and `crr encode` use it; a
// streaming form keeps large outputs (pagemap runs, pages-N.img) out of memory.
import { closeSync, openSync, writeSync } from 'node:fs';
import { ImageError } from '../errors.js';
import type { Entry, ImageKind } from './schema.js';
import { encodeEntry } from './codec.js';
import { MAX_ENTRY_BYTES, entryType, headWords } from './reader.js';

export interface EntryToWrite {
  entry: Entry;
  /** Raw bytes written right after the message (pipe data, socket queue, ghost contents). */
  payload?: Uint8Array;
}

function headBytes(kind: ImageKind): Buffer {
  const words = headWords(kind);
  const head = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => head.writeUInt32LE(w >>> 0, i * 4));
  return head;
}

/** One entry's framing: u32 length + message, then the payload; checked against the kind's own count. */
function frameEntry(name: string, kind: ImageKind, index: number, item: EntryToWrite): Buffer[] {
  const type = entryType(kind, index);
  let message: Uint8Array;
  try {
    message = encodeEntry(type, item.entry);
  } catch (err) {
    throw new ImageError(name, index, `an encodable ${type} entry #${index}`, (err as Error).message);
  }
  if (message.length > MAX_ENTRY_BYTES) {
    throw new ImageError(name, index, `an entry of at most ${MAX_ENTRY_BYTES} bytes`, `entry #${index} is ${message.length}`);
  }
  const length = Buffer.alloc(4);
  length.writeUInt32LE(message.length, 0);
  const parts = [length, Buffer.from(message.buffer, message.byteOffset, message.byteLength)];
  const payload = item.payload ?? new Uint8Array(0);
  const want = kind.payloadBytes ? kind.payloadBytes(item.entry, payload) : 0;
  if (payload.length !== want) {
    throw new ImageError(name, index, `${want} payload bytes after entry #${index}`, `given ${payload.length}`);
  }
  if (payload.length) parts.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
  return parts;
}

/** The bytes of a whole image. Errors name the kind (offset = entry index) since there is no file yet. */
export function encodeImage(kind: ImageKind, entries: Iterable<EntryToWrite>): Buffer {
  if (kind.head === 'raw') throw new ImageError(kind.magicName, 0, 'an image with entries', 'raw page data has none');
  const parts: Buffer[] = [headBytes(kind)];
  let index = 0;
  for (const item of entries) parts.push(...frameEntry(kind.magicName, kind, index++, item));
  return Buffer.concat(parts);
}

/** Appends entries to an image file as they come, for outputs too large to build in memory. */
export class ImageWriter {
  readonly path: string;
  readonly kind: ImageKind;
  private fd: number | undefined;
  private count = 0;
  private bytes = 0;

  constructor(path: string, kind: ImageKind) {
    this.path = path;
    this.kind = kind;
    try {
      this.fd = openSync(path, 'w', 0o600);
    } catch (err) {
      throw new ImageError(path, 0, 'a writable image file', (err as NodeJS.ErrnoException).code);
    }
    this.write(headBytes(kind));
  }

  /** Appends one entry (raw kinds: use appendRaw). */
  append(entry: Entry, payload?: Uint8Array): void {
    if (this.kind.head === 'raw') throw new ImageError(this.path, this.bytes, 'raw page data', 'entries cannot go in a raw image');
    for (const part of frameEntry(this.path, this.kind, this.count, { entry, payload })) this.write(part);
    this.count++;
  }

  /** Appends raw bytes: page data of a pages-N.img. */
  appendRaw(data: Uint8Array): void {
    if (this.kind.head !== 'raw') throw new ImageError(this.path, this.bytes, 'framed entries', 'raw bytes only go in a raw image');
    this.write(data);
  }

  /** Bytes written so far (the offset the next write lands at). */
  get size(): number {
    return this.bytes;
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private write(data: Uint8Array): void {
    if (this.fd === undefined) throw new ImageError(this.path, this.bytes, 'an open image writer', 'already closed');
    let done = 0;
    try {
      while (done < data.length) done += writeSync(this.fd, data, done, data.length - done);
    } catch (err) {
      throw new ImageError(this.path, this.bytes + done, 'room to write the image', (err as NodeJS.ErrnoException).code);
    }
    this.bytes += data.length;
  }
}

/** Writes a whole image file at once. */
export function writeImage(path: string, kind: ImageKind, entries: Iterable<EntryToWrite>): void {
  const writer = new ImageWriter(path, kind);
  try {
    for (const item of entries) writer.append(item.entry, item.payload);
  } finally {
    writer.close();
  }
}
