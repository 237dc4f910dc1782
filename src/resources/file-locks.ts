// File locks from filelocks.img (CRIU's file_lock_entry: flag FL_POSIX 1 / FL_FLOCK 2 / FL_OFD 4,
// type F_RDLCK 0 / F_WRLCK 1, owner pid, fd, start, len with 0 = to EOF), taken again by their
// owner task through the restored fd, in one remote batch in the finish stage: a POSIX lock
// belongs to the process that takes it, so it must be taken by the task itself (never by crr or
// a helper on its behalf); flock and OFD locks belong to the open file description, which the
// fd already shares with every task that had it. Non-blocking forms only: the locks were held
// together at dump time, so a conflict means another process took one meanwhile, and the
// restore fails naming it instead of hanging.
import { StageError } from '../errors.js';
import { perKey } from '../memo.js';
import { hostPidOf, type RestoreCtx } from '../restore/context.js';
import { RemoteBatch } from '../restore/remote.js';
import { scratchOf } from './memory.js';
import type { ResourceKind } from './types.js';

const NR_FCNTL = 72;
const NR_FLOCK = 73;
const F_SETLK = 6;
const F_OFD_SETLK = 37;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const FL_POSIX = 1;
const FL_FLOCK = 2;
const FL_OFD = 4;
const F_RDLCK = 0;
const SEEK_SET = 0;

export interface FileLockImage {
  flag: number;
  type: number;
  pid: number;
  fd: number;
  start: bigint;
  len: bigint;
}

/** The locks by owner PID, decoded once per checkpoint: decoding them all per task was quadratic. */
const locksByPid = perKey((checkpoint: RestoreCtx['checkpoint']) => {
  const byPid = new Map<number, FileLockImage[]>();
  for (const lock of fileLocksOf(checkpoint)) {
    const list = byPid.get(lock.pid);
    if (list) list.push(lock);
    else byPid.set(lock.pid, [lock]);
  }
  return byPid;
});

/** Every entry of filelocks.img (none when the image is absent). */
export function fileLocksOf(checkpoint: RestoreCtx['checkpoint']): FileLockImage[] {
  if (!checkpoint.has('filelocks.img')) return [];
  return [...checkpoint.image('filelocks.img').entries()].map((lazy) => {
    const e = lazy.decode() as Record<string, unknown>;
    return {
      flag: Number(e['flag']),
      type: Number(e['type']),
      pid: Number(e['pid']),
      fd: Number(e['fd']),
      start: BigInt(e['start'] as bigint | number),
      len: BigInt(e['len'] as bigint | number),
    };
  });
}

/** struct flock (32 bytes on x86-64): l_type, l_whence, l_start, l_len, l_pid (0: OFD needs it). */
export function flockStruct(lock: Pick<FileLockImage, 'type' | 'start' | 'len'>): Buffer {
  const b = Buffer.alloc(32);
  b.writeInt16LE(lock.type, 0);
  b.writeInt16LE(SEEK_SET, 2);
  b.writeBigInt64LE(lock.start, 8);
  b.writeBigInt64LE(lock.len, 16);
  return b;
}

function describeLock(l: FileLockImage): string {
  const kind = l.flag === FL_POSIX ? 'POSIX' : l.flag === FL_OFD ? 'OFD' : l.flag === FL_FLOCK ? 'flock' : `kind ${l.flag}`;
  const range = l.flag === FL_FLOCK ? '' : ` bytes ${l.start}..${l.len === 0n ? 'EOF' : l.start + l.len - 1n}`;
  return `${kind} ${l.type === F_RDLCK ? 'read' : 'write'} lock on fd ${l.fd}${range}`;
}

export const fileLocks: ResourceKind<RestoreCtx> = {
  name: 'file-locks',
  stage: 'finish',
  images: ['filelocks'],
  after: ['threads'],
  appliesTo: (task) => !task.zombie,
  describe: () => ['flock, POSIX and OFD locks taken again by their owner through the restored fd'],
  async restore(ctx) {
    const mine = locksByPid(ctx.checkpoint).get(ctx.pid) ?? [];
    if (!mine.length) return;
    const batch = new RemoteBatch(scratchOf(ctx));
    for (const lock of mine) {
      const what = describeLock(lock);
      if (lock.flag === FL_FLOCK) {
        batch.call(NR_FLOCK, [lock.fd, (lock.type === F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB], { what });
      } else if (lock.flag === FL_POSIX || lock.flag === FL_OFD) {
        batch.reserve(32, 1);
        const arg = batch.put(flockStruct(lock));
        batch.call(NR_FCNTL, [lock.fd, lock.flag === FL_POSIX ? F_SETLK : F_OFD_SETLK, arg], { what });
      } else {
        throw new StageError({ stage: ctx.stage, pid: ctx.pid, resource: ctx.resource, message: `filelocks.img: ${what} has an unknown kind` });
      }
    }
    const start = ctx.now();
    await batch.run(ctx.tracer, hostPidOf(ctx), { pid: ctx.pid });
    ctx.record({ name: 'file locks', start, end: ctx.now(), syscalls: batch.size });
  },
};
