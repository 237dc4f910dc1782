// Shared anonymous memory round trips: test/programs/shmem.c (one object shared by parent and
// child, one object mapped three times in one task, one view at an offset) and mem-pattern's
// MAP_SHARED|MAP_ANONYMOUS region are dumped (VMA_ANON_SHARED, pagemap-shmem-<shmid>.img) and
// restored in a fresh PID namespace; the programs check bytes, maps and the sharing itself.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { roundTrip } from './lib/shared-anon.js';

const VMA_ANON_SHARED = 1 << 8;
const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

function sharedVmas(dir: string, pid: number): any[] {
  return img(dir, `mm-${pid}.img`)[0].vmas.filter((v: any) => Number(v.status) & VMA_ANON_SHARED);
}

t.test('shmem: images hold one object per shmid, mapped by both tasks', async (t) => {
  const trip = await roundTrip(t, 'shmem', { restore: false });
  const pstree = img(trip.dir, 'pstree.img');
  t.equal(pstree.length, 2, 'parent and child dumped');
  const child = pstree.find((p: any) => p.pid !== trip.pid).pid;
  const parentVmas = sharedVmas(trip.dir, trip.pid);
  const childVmas = sharedVmas(trip.dir, child);
  t.equal(parentVmas.length, 4, 'the parent maps A once and B three times (nothing else shared)');
  const ids = new Set(parentVmas.map((v: any) => String(v.shmid)));
  t.equal(ids.size, 2, 'two objects in the parent');
  const a = parentVmas.find((v: any) => BigInt(v.end) - BigInt(v.start) === 2n << 20n);
  t.ok(childVmas.some((v: any) => String(v.shmid) === String(a.shmid)), 'the child maps the same object A');
  t.ok(parentVmas.some((v: any) => BigInt(v.pgoff) === 16n * 4096n), 'the third view of B has pgoff 64 KiB');
  for (const id of ids) {
    const pm = img(trip.dir, `pagemap-shmem-${id}.img`);
    t.ok(pm.length >= 2, `pagemap-shmem-${id}.img has a head and runs`);
  }
});

t.test('shmem: state before dump == state after restore (bytes, maps, sharing)', async (t) => {
  const trip = await roundTrip(t, 'shmem');
  t.equal(trip.check!.text.trim(), 'PASS', 'the restored tree checks its shared memory');
});

t.test('shmem: the check notices an object that is no longer shared', async (t) => {
  const trip = await roundTrip(t, 'shmem', { env: { CRR_SELFTEST_BREAK: 'unshare' } });
  t.match(trip.check!.text, /^FAIL .*not one object/, 'a second view made private is reported');
});

t.test('mem-pattern: the MAP_SHARED|MAP_ANONYMOUS region survives the round trip', async (t) => {
  const trip = await roundTrip(t, 'mem-pattern');
  t.equal(trip.check!.text.trim(), 'PASS', 'mem-pattern checks every region after restore');
});
