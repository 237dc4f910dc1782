// The restore-wide table of shared objects: a creator publishes what it made (an fd, a pidfd and
// fd number, a socket name); receivers wait for it. Waiting ends with an error when the restore
// is aborted, so a receiver never hangs past a rollback.
import type { SharedTable } from '../resources/types.js';

export class SharedObjects implements SharedTable {
  private readonly values = new Map<string, unknown>();
  private readonly waiters = new Map<string, Array<(value: unknown) => void>>();

  constructor(private readonly signal: AbortSignal) {}

  publish(kind: string, id: string, value: unknown): void {
    const key = `${kind}:${id}`;
    if (this.values.has(key)) throw new Error(`shared object ${key} is published twice`);
    this.values.set(key, value);
    for (const wake of this.waiters.get(key) ?? []) wake(value);
    this.waiters.delete(key);
  }

  receive(kind: string, id: string): Promise<unknown> {
    const key = `${kind}:${id}`;
    if (this.values.has(key)) return Promise.resolve(this.values.get(key));
    if (this.signal.aborted) return Promise.reject(new Error(`restore aborted while waiting for shared object ${key}`));
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(key) ?? [];
      list.push(resolve);
      this.waiters.set(key, list);
      this.signal.addEventListener('abort', () => reject(new Error(`restore aborted while waiting for shared object ${key}`)), { once: true });
    });
  }
}
