// The restore-wide table of shared objects: a creator publishes what it made (an fd, a pidfd and
// fd number, a socket name); receivers wait for it. Waiting ends with an error when the restore
// is aborted, so a receiver never hangs past a rollback.
import type { SharedTable } from '../resources/types.js';

export class SharedObjects implements SharedTable {
  private readonly values = new Map<string, unknown>();
  private readonly waiters = new Map<string, Array<{ resolve: (value: unknown) => void; reject: (error: Error) => void }>>();

  /**
   * One abort listener for every waiter: an EventTarget walks its listeners on each
   * addEventListener, so one per waiting receiver (thousands in a large tree) was quadratic.
   */
  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', () => this.abortWaiters(), { once: true });
  }

  publish(kind: string, id: string, value: unknown): void {
    const key = `${kind}:${id}`;
    if (this.values.has(key)) throw new Error(`shared object ${key} is published twice`);
    this.values.set(key, value);
    for (const waiter of this.waiters.get(key) ?? []) waiter.resolve(value);
    this.waiters.delete(key);
  }

  receive(kind: string, id: string): Promise<unknown> {
    const key = `${kind}:${id}`;
    if (this.values.has(key)) return Promise.resolve(this.values.get(key));
    if (this.signal.aborted) return Promise.reject(abortedWaiting(key));
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(key);
      if (list) list.push({ resolve, reject });
      else this.waiters.set(key, [{ resolve, reject }]);
    });
  }

  private abortWaiters(): void {
    for (const [key, list] of this.waiters) for (const waiter of list) waiter.reject(abortedWaiting(key));
    this.waiters.clear();
  }
}

function abortedWaiting(key: string): Error {
  return new Error(`restore aborted while waiting for shared object ${key}`);
}
