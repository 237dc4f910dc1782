// Where a dump's images go (src/dump/output.ts): images written by libuv workers several at a time
// land in DIR with their bytes, only at commit and inventory.img last; a write that fails is an
// ImageError naming the file, and an abandoned dump leaves nothing.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpOutput } from '../src/dump/output.js';
import { ImageError } from '../src/errors.js';
import { readImage } from '../src/images/reader.js';
import { imageKindForFile } from '../src/images/schema.js';

function scratchDir(t: Tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'crr-output-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('twenty images, written several to a job, land in DIR at commit with their entries', async (t) => {
  const dir = scratchDir(t);
  const out = new DumpOutput(dir);
  for (let pid = 1; pid <= 20; pid++) out.write(`fs-${pid}.img`, [{ cwd_id: pid, root_id: pid + 100 }]);
  out.write('inventory.img', [{ img_version: 2 }]);
  t.same(readdirSync(dir), ['.crr-partial'], 'nothing in DIR before the commit');
  const names = await out.commit();
  t.equal(names.at(-1), 'inventory.img', 'inventory.img moved last');
  t.same(readdirSync(dir).sort(), names.slice().sort(), 'every image in DIR, the partial directory gone');
  const cwd = (pid: number) => readImage(join(dir, `fs-${pid}.img`), imageKindForFile(`fs-${pid}.img`)!).only()['cwd_id'];
  t.same([1, 7, 20].map(cwd), [1, 7, 20], 'each with its own entry');
});

t.test('a write that fails is an ImageError naming its file; abandoning leaves nothing', async (t) => {
  const dir = scratchDir(t);
  const out = new DumpOutput(dir);
  out.write('fs-1.img', [{ cwd_id: 1, root_id: 2 }]);
  out.write('no-such-dir/fs-2.img', [{ cwd_id: 3, root_id: 4 }]);
  const err = await out.commit().catch((e: unknown) => e);
  t.ok(err instanceof ImageError, 'an ImageError');
  t.match(String(err), /no-such-dir\/fs-2\.img: at byte 0: expected a writable image file \(ENOENT\)/, 'naming the file');
  await out.abandon();
  t.notOk(existsSync(join(dir, '.crr-partial')), 'the partial directory removed');
  t.notOk(existsSync(join(dir, 'fs-1.img')), 'and no image moved into DIR');
});
