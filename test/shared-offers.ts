// crr's copies of shared descriptions (src/resources/shared-fds.ts offer): each is closed at once
// when nobody receives it, and every copy still open is closed when the restore is aborted,
// through one abort listener for all of them (one per offer was quadratic in a large tree).
import { closeSync, fstatSync, openSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import t from 'tap';
import { SharedObjects } from '../src/machines/shared.js';
import { offer } from '../src/resources/shared-fds.js';
import type { RestoreCtx } from '../src/restore/context.js';

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EBADF') return false;
    throw err;
  }
}

function fakeCtx(signal: AbortSignal): RestoreCtx {
  return { signal, shared: new SharedObjects(signal) } as unknown as RestoreCtx;
}

t.test('a copy nobody receives is closed at once', async (t) => {
  const ctx = fakeCtx(new AbortController().signal);
  const copy = openSync('/dev/null', 'r');
  t.teardown(() => (isOpen(copy) ? closeSync(copy) : undefined));
  offer(ctx, 'file', '1', copy, 0);
  t.notOk(isOpen(copy), 'closed');
});

t.test('an abort closes every open copy, with one listener for all of them', async (t) => {
  const controller = new AbortController();
  const ctx = fakeCtx(controller.signal);
  const before = getEventListeners(controller.signal, 'abort').length;
  const copies = Array.from({ length: 500 }, () => openSync('/dev/null', 'r'));
  t.teardown(() => copies.filter(isOpen).forEach((fd) => closeSync(fd)));
  copies.forEach((copy, i) => offer(ctx, 'pipe', String(i), copy, 3));
  t.equal(getEventListeners(controller.signal, 'abort').length, before + 1, 'one abort listener for 500 offers');
  t.ok(copies.every(isOpen), 'open while their receivers are pending');
  t.ok((await ctx.shared.receive('fd:pipe', '499')) !== undefined, 'published under fd:kind');
  controller.abort();
  t.equal(copies.filter(isOpen).length, 0, 'every copy closed by the abort');
});
