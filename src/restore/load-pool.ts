// Decodes many tasks' images in a piscina pool: each worker opens the checkpoint itself (a
// Checkpoint holds file handles and caches that cannot cross threads) and returns plain
// TaskImageSets (structured clone keeps bigints and Maps). Used by load.ts for large trees.
import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import type { TaskImageSet } from './context.js';

export async function decodeInWorkers(imagesDir: string, pids: readonly number[], signal?: AbortSignal): Promise<Map<number, TaskImageSet>> {
  const threads = Math.max(1, Math.min(availableParallelism(), 8));
  const pool = new Piscina({
    filename: new URL('./load-worker.js', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
  });
  try {
    // Batches amortise the per-message cost; one batch per thread and a few spares for balance.
    const size = Math.max(1, Math.ceil(pids.length / (threads * 4)));
    const batches: number[][] = [];
    for (let i = 0; i < pids.length; i += size) batches.push(pids.slice(i, i + size));
    const results = await Promise.all(
      batches.map((batch) => pool.run({ imagesDir, pids: batch }, signal ? { signal } : {}) as Promise<TaskImageSet[]>),
    );
    return new Map(results.flat().map((set) => [set.pid, set]));
  } finally {
    await pool.destroy();
  }
}
