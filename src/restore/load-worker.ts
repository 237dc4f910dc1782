// The piscina worker of load-pool.ts: decodes a batch of tasks from a checkpoint it opens itself.
import { openCheckpoint } from '../images/index.js';
import type { TaskImageSet } from './context.js';
import { decodeTask } from './load.js';

export default function decodeBatch({ imagesDir, pids }: { imagesDir: string; pids: number[] }): TaskImageSet[] {
  const checkpoint = openCheckpoint(imagesDir, { validate: false });
  return pids.map((pid) => decodeTask(checkpoint, pid));
}
