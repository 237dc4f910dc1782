// procLimits keeps the last parse of a /proc/PID/limits text (crr's and the launcher's are the
// same text every restore); it must still see a file whose limits changed.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownHardLimits, procLimits } from '../src/resources/rlimits.js';

const header = 'Limit                     Soft Limit           Hard Limit           Units     \n';
const file = (nofile: string, stack: string) =>
  header + `Max stack size            ${stack}              unlimited            bytes     \nMax open files            ${nofile}                 524288               files     \n`;

t.test('parses, reuses an unchanged text and sees a changed one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-limits-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'limits');
  writeFileSync(path, file('1024', '8388608'));
  const first = procLimits(path);
  t.same(first.get('NOFILE'), { cur: 1024n, max: 524288n });
  t.same(first.get('STACK'), { cur: 8388608n, max: (1n << 64n) - 1n }, 'unlimited is RLIM_INFINITY');
  t.equal(procLimits(path), first, 'the same text is not parsed again');
  writeFileSync(path, file('4096', '8388608'));
  t.same(procLimits(path).get('NOFILE'), { cur: 4096n, max: 524288n }, 'a changed limit is seen');
});

t.test("crr's own hard limits come from /proc/self/limits", async (t) => {
  const own = ownHardLimits();
  t.equal(own.size, 16, 'all sixteen limits');
  t.equal(own.get('NOFILE'), procLimits('/proc/self/limits').get('NOFILE')!.max);
});
