// The GNU build-id of an ELF file, as CRIU's reg_file_entry.build_id stores it (little-endian u32
// words). The dumper records it and the restorer checks it, so it lives with the format.
import { closeSync, openSync, readSync } from 'node:fs';

/**
 * The GNU build-id note of an ELF64 file as little-endian u32 words (how the format stores it),
 * or undefined for files that are not ELF or carry no build-id.
 */
export function readBuildId(path: string): number[] | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const hdr = Buffer.alloc(64);
    if (readSync(fd, hdr, 0, 64, 0) < 64) return undefined;
    if (hdr.readUInt32BE(0) !== 0x7f454c46 || hdr[4] !== 2 || hdr[5] !== 1) return undefined;
    const phoff = Number(hdr.readBigUInt64LE(32));
    const phentsize = hdr.readUInt16LE(54);
    const phnum = hdr.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const p = i * phentsize;
      if (ph.readUInt32LE(p) !== 4 /* PT_NOTE */) continue;
      const off = Number(ph.readBigUInt64LE(p + 8));
      const size = Number(ph.readBigUInt64LE(p + 32));
      if (size > 1 << 16) continue;
      const notes = Buffer.alloc(size);
      readSync(fd, notes, 0, size, off);
      const bid = findGnuBuildId(notes);
      if (bid) return bid;
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function findGnuBuildId(notes: Buffer): number[] | undefined {
  let o = 0;
  const align4 = (n: number) => (n + 3) & ~3;
  while (o + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(o);
    const descsz = notes.readUInt32LE(o + 4);
    const type = notes.readUInt32LE(o + 8);
    const name = notes.subarray(o + 12, o + 12 + namesz).toString('latin1');
    const desc = o + 12 + align4(namesz);
    if (type === 3 /* NT_GNU_BUILD_ID */ && name === 'GNU\0') {
      const words: number[] = [];
      for (let i = 0; i + 4 <= descsz; i += 4) words.push(notes.readUInt32LE(desc + i));
      return words;
    }
    o = desc + align4(descsz);
  }
  return undefined;
}
