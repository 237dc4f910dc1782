// The barrier's scratch area (src/resources/barrier.ts batchWithScratch): first tried at the
// lowest hole among the image's VMAs alone, without reading the helper's maps; when the helper
// has a mapping there (map_scratch's MAP_FIXED_NOREPLACE says EEXIST), tried again at a hole
// that avoids its maps too. Helpers are destroyed (killed and reaped) in teardown.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { HelperBatchError } from '../src/actors/helper-errors.js';
import { spawnHelper } from '../src/actors/helper.js';
import { batchWithScratch } from '../src/resources/barrier.js';

const LOW = 0x10000000n;
const SIZE = 1 << 20;
const code = Buffer.from([0xcc]);

function mappedAt(hostPid: number, addr: bigint): boolean {
  return readFileSync(`/proc/${hostPid}/maps`, 'utf8')
    .split('\n')
    .some((line) => line.startsWith(`${addr.toString(16)}-`));
}

t.test('the first hole is free: one batch, no maps read', async (t) => {
  const root = await spawnHelper();
  t.teardown(() => root.destroy());
  const child = await root.fork();
  let batches = 0;
  const counting = { batch: (ops: Parameters<typeof child.batch>[0]) => (batches++, child.batch(ops)) };
  const { scratch, results } = await batchWithScratch(counting, [{ op: 'map_scratch', size: SIZE, code }], [{ start: LOW, end: LOW + 0x5000n }], child.hostPid);
  t.equal(batches, 1);
  t.ok(scratch > LOW + 0x5000n, `past the image's VMA: 0x${scratch.toString(16)}`);
  t.equal(BigInt(results[0] as number | bigint), scratch, 'map_scratch answered with that address');
  t.ok(mappedAt(child.hostPid, scratch), 'and the helper has it mapped');
});

t.test('the helper has a mapping in the first hole: EEXIST, then a hole past its maps', async (t) => {
  const root = await spawnHelper();
  t.teardown(() => root.destroy());
  const child = await root.fork();
  t.equal(BigInt(await child.request<number>('map_scratch', { addr: LOW, size: SIZE, code })), LOW, 'LOW taken in the helper');
  let batches = 0;
  const counting = { batch: (ops: Parameters<typeof child.batch>[0]) => (batches++, child.batch(ops)) };
  const { scratch, results } = await batchWithScratch(counting, [{ op: 'map_scratch', size: SIZE, code }], [], child.hostPid);
  t.equal(batches, 2, 'tried twice');
  t.ok(scratch >= LOW + BigInt(SIZE), `above the helper's mapping: 0x${scratch.toString(16)}`);
  t.equal(BigInt(results[0] as number | bigint), scratch);
  t.ok(mappedAt(child.hostPid, scratch));
});

t.test('any other failure is not retried', async (t) => {
  const failing = {
    batch: async () => {
      throw new HelperBatchError({ code: 'ENOMEM', errno: 12, syscall: 'mmap', pid: 7 }, 0, []);
    },
  };
  await t.rejects(batchWithScratch(failing, [{ op: 'map_scratch', size: SIZE, code }], [], process.pid), { code: 'ENOMEM' });
});
