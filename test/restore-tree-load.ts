// The load step decodes the same images on the main thread and in the piscina pool (load-pool.ts):
// both give the same TaskImageSets, so the pool is a drop-in for large trees.
import t from 'tap';
import { loadCheckpoint } from '../src/restore/load.js';
import { fixturesDir } from './lib/restore-images.js';

t.test('main thread and worker pool decode the same images', async (t) => {
  const dir = `${fixturesDir}/pipe`;
  const inline = await loadCheckpoint(dir, { workersFrom: 0 });
  const pooled = await loadCheckpoint(dir, { workersFrom: 1 });
  t.same([...pooled.images.keys()].sort(), [...inline.images.keys()].sort(), 'same tasks');
  for (const [pid, set] of inline.images) {
    const other = pooled.images.get(pid)!;
    t.same(other.fds, set.fds, `task ${pid}: fds`);
    t.same(other.fs, set.fs, `task ${pid}: fs`);
    t.same(other.mm, set.mm, `task ${pid}: mm`);
    t.same([...other.cores.keys()], [...set.cores.keys()], `task ${pid}: threads`);
  }
});
