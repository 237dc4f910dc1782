// fileMismatch (src/restore/files.ts) compares a mapped file's build-id with the image's; the
// build-id read is kept per path with the stat it was read under, so a file rewritten in place
// (same size, new bytes) is read again and a changed build-id is still refused.
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBuildId } from '../src/images/build-id.js';
import { fileMismatch, type RegFile } from '../src/restore/files.js';

t.test('a build-id changed in place is seen on the next check', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-buildid-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const program = join(dir, 'true');
  copyFileSync('/bin/true', program);
  const id = readBuildId(program);
  if (!id) return t.skip('/bin/true has no build-id here');
  const st = statSync(program);
  const recorded: RegFile = { id: 1, name: program, flags: 0, pos: 0n, mode: st.mode, size: BigInt(st.size), buildId: id };
  t.equal(fileMismatch(recorded), undefined, 'matches');
  t.equal(fileMismatch(recorded), undefined, 'matches again (kept build-id)');

  // Same size, one byte of the build-id note flipped: another build of the program.
  const bytes = readFileSync(program);
  const words = Buffer.alloc(id.length * 4);
  id.forEach((word, i) => words.writeUInt32LE(word >>> 0, i * 4)); // stored as little-endian u32 words
  const at = bytes.indexOf(words);
  t.ok(at > 0, 'the build-id bytes are in the file');
  bytes[at] = bytes[at]! ^ 0xff;
  await new Promise((resolve) => setTimeout(resolve, 20)); // a ctime tick later
  writeFileSync(program, bytes);
  t.equal(statSync(program).size, st.size, 'same size');
  t.match(fileMismatch(recorded)?.detail ?? '', /different build-id/, 'the new build-id is read and refused');
  t.same(fileMismatch({ ...recorded, buildId: readBuildId(program) }), undefined, 'the new build-id matches itself');
});
