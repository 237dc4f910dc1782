// Where a dump's images go: written into DIR/.crr-partial first and moved into DIR only when the
// whole dump succeeded, inventory.img last, so a failed dump never leaves a directory that looks
// like a complete checkpoint. Removing the partial directory is the failure path. Images are
// encoded at once but written on libuv's threads while the dump goes on with the next task
// (creating a file costs 0.3-0.7 ms here while the dump's pages are written back), several to
// one job (native writeSmallFiles): a promise write per file cost the main thread ~0.2 ms.
import { mkdirSync, readdirSync, renameSync, rmSync, existsSync } from 'node:fs';
import { join, basename } from 'node:path';
import { native } from '../actors/native.js';
import { CrrError, ImageError } from '../errors.js';
import { imageKindForFile } from '../images/schema.js';
import { encodeImage } from '../images/writer.js';
import type { Entry } from './ids.js';

/** Images written by one worker job: about a task's (core, mm, pagemap, fdinfo, ids, fs). */
const FILES_PER_JOB = 8;

export class DumpOutput {
  readonly partial: string;
  private written: string[] = [];
  private pending = new Set<Promise<void>>();
  private failure: ImageError | undefined;
  /** Encoded images not handed to a worker yet. */
  private queued: { paths: string[]; bytes: Uint8Array[] } = { paths: [], bytes: [] };

  constructor(readonly dir: string) {
    this.partial = join(dir, '.crr-partial');
    mkdirSync(dir, { recursive: true });
    if (existsSync(join(dir, 'inventory.img'))) {
      throw new CrrError(`${dir} already holds a checkpoint (inventory.img); use an empty directory`, 1);
    }
    rmSync(this.partial, { recursive: true, force: true });
    mkdirSync(this.partial);
  }

  /** Path of a raw file (pages-N.img) inside the partial directory. */
  rawPath(name: string): string {
    this.written.push(name);
    return join(this.partial, name);
  }

  write(name: string, entries: Array<Entry | { entry: Entry; payload?: Uint8Array }>): void {
    const kind = imageKindForFile(basename(name));
    if (!kind) throw new CrrError(`internal: no image kind for ${name}`);
    const items = entries.map((e) => ('entry' in e && typeof e.entry === 'object' && e.entry !== null ? (e as { entry: Entry; payload?: Uint8Array }) : { entry: e as Entry }));
    // Encoded whole, then one write: a thread's core is one small file, and 10,000 threads made
    // the per-part writes of an appending writer (head, length, message) count.
    const bytes = encodeImage(kind, items);
    this.queued.paths.push(join(this.partial, name));
    this.queued.bytes.push(bytes);
    this.written.push(name);
    if (this.queued.paths.length >= FILES_PER_JOB) this.flush();
  }

  /** Hands the queued images to a libuv worker. */
  private flush(): void {
    if (!this.queued.paths.length) return;
    const { paths } = this.queued;
    const p: Promise<void> = native
      .writeSmallFiles(paths, this.queued.bytes, 0o600)
      .catch((err: NodeJS.ErrnoException & { path?: string }) => {
        this.failure ??= new ImageError(err.path ?? paths[0]!, 0, 'a writable image file', err.code);
      })
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
    this.queued = { paths: [], bytes: [] };
  }

  /** Waits for every image write started; the first one that failed is thrown. */
  private async settle(): Promise<void> {
    this.flush();
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failure) throw this.failure;
  }

  /** Moves every image into DIR, inventory.img last, and removes the partial directory. */
  async commit(): Promise<string[]> {
    await this.settle();
    const names = readdirSync(this.partial).sort((a, b) => (a === 'inventory.img' ? 1 : b === 'inventory.img' ? -1 : a.localeCompare(b)));
    for (const n of names) renameSync(join(this.partial, n), join(this.dir, n));
    rmSync(this.partial, { recursive: true, force: true });
    return names;
  }

  async abandon(): Promise<void> {
    this.queued = { paths: [], bytes: [] };
    await this.settle().catch(() => undefined);
    rmSync(this.partial, { recursive: true, force: true });
  }
}
