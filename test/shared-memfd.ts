// memfd round trip: test/programs/memfd.c (memfds with names, odd sizes, seals, descriptions
// shared by parent and child, MAP_SHARED / MAP_PRIVATE / offset mappings, a mapping-only memfd)
// is dumped (files.img MEMFD entries, memfd.img inodes, pagemap-shmem-<ino>.img, VMA_AREA_MEMFD)
// and restored in a fresh PID namespace; the program checks contents, seals, flags, offsets
// and that the object is still one object across the two tasks.
import t from 'tap';
import { join } from 'node:path';
import { readImage } from '../src/images/reader.js';
import { fdsOfTask, filesOfType, roundTrip } from './lib/shared-anon.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

t.test('memfd: images hold inodes, descriptions and mappings as CRIU writes them', async (t) => {
  const trip = await roundTrip(t, 'memfd', { restore: false });
  const inodes = img(trip.dir, 'memfd.img');
  const byName = new Map(inodes.map((i: any) => [i.name, i]));
  t.same([...byName.keys()].sort(), ['crr-m1', 'crr-m2', 'crr-m3'], 'three memfd inodes by name');
  t.equal(Number(byName.get('crr-m1').size), 300000, 'crr-m1 size');
  t.equal(byName.get('crr-m1').seals, 2 | 4, 'crr-m1 seals SHRINK|GROW');
  t.equal(byName.get('crr-m2').seals, 1, 'crr-m2 made without sealing: F_SEAL_SEAL');
  for (const i of inodes) t.ok(img(trip.dir, `pagemap-shmem-${i.shmid}.img`).length >= 2, `contents of ${i.name} dumped`);
  const fds = new Map(fdsOfTask(trip.dir, trip.pid).map((f) => [f.fd, f]));
  t.equal(fds.get(20)?.type, 18, 'fd 20 is MEMFD');
  const files = filesOfType(trip.dir);
  const m1 = files.get(fds.get(20)!.id).memfd;
  t.equal(Number(m1.pos), 1234, 'fd 20 offset');
  t.equal(Number(m1.inode_id), Number(byName.get('crr-m1').inode_id), 'fd 20 names inode crr-m1');
  const vmas = img(trip.dir, `mm-${trip.pid}.img`)[0].vmas.filter((v: any) => Number(v.status) & (1 << 14));
  t.equal(vmas.length, 3, 'three memfd VMAs in the parent');
  t.ok(vmas.every((v: any) => files.get(Number(v.shmid))?.memfd), 'each VMA shmid names a MEMFD files.img entry');
});

t.test('memfd: state before dump == state after restore', async (t) => {
  const trip = await roundTrip(t, 'memfd');
  t.equal(trip.check!.text.trim(), 'PASS', 'the restored tree checks its memfds');
});

t.test('memfd: the check notices damaged contents', async (t) => {
  const trip = await roundTrip(t, 'memfd', { env: { CRR_SELFTEST_BREAK: 'content' } });
  t.match(trip.check!.text, /^FAIL memfd crr-m1: byte 100 differs/, 'a changed byte is reported');
});
