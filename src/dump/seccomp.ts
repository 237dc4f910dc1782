// seccomp for the dump: each thread's mode (/proc/TID/status Seccomp:), and in filter mode its
// chain of classic-BPF filters read with PTRACE_SECCOMP_GET_FILTER (index 0 = newest) plus their
// flags (PTRACE_SECCOMP_GET_METADATA). seccomp.img holds every distinct filter once, each naming
// the one it was stacked on (`prev`, an index into the same list); a thread core names the newest
// filter of its chain (`seccomp_filter`) next to its `seccomp_mode`, as CRIU writes them.
// Threads with the same chain (TSYNC, or inherited over fork) share the entries.
import { readFileSync } from 'node:fs';
import type { Entry } from './ids.js';

export const SECCOMP_MODE_DISABLED = 0;
export const SECCOMP_MODE_STRICT = 1;
export const SECCOMP_MODE_FILTER = 2;

/** Seccomp mode of a thread from /proc (0 when the field or the thread is missing). */
export function seccompModeOf(tid: number): number {
  try {
    const m = /^Seccomp:\s*(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export interface SeccompFilterRead {
  filter: Buffer;
  flags: number;
}

/** What reads one filter of a stopped thread (the tracer's seccompGetFilter). */
export type FilterReader = (tid: number, index: number) => Promise<SeccompFilterRead>;

export interface ThreadSeccomp {
  mode: number;
  /** Index in seccomp.img of the newest filter of the thread's chain (filter mode only). */
  filter?: number;
}

/** The dump-wide list of filters for seccomp.img. */
export class SeccompFilters {
  private readonly entries: Entry[] = [];
  /** Chain key (every filter from the oldest up to this one) -> entry index. */
  private readonly byChain = new Map<string, number>();

  /** Reads the thread's mode (unless given) and, in filter mode, its chain; returns what its core records. */
  async collect(tid: number, read: FilterReader, mode = seccompModeOf(tid)): Promise<ThreadSeccomp> {
    if (mode !== SECCOMP_MODE_FILTER) return { mode };
    const chain: SeccompFilterRead[] = [];
    for (let index = 0; ; index++) {
      try {
        chain.push(await read(tid, index));
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT' && index > 0) break;
        throw err;
      }
    }
    return { mode, filter: this.add(chain.reverse()) };
  }

  /** Adds a chain given oldest first; returns the index of its newest filter. */
  add(oldestFirst: readonly SeccompFilterRead[]): number {
    let prev: number | undefined;
    let key = '';
    for (const f of oldestFirst) {
      key += `${f.flags}:${f.filter.toString('hex')}/`;
      let index = this.byChain.get(key);
      if (index === undefined) {
        index = this.entries.length;
        const entry: Entry = { filter: f.filter };
        if (prev !== undefined) entry.prev = prev;
        if (f.flags) entry.flags = f.flags;
        this.entries.push(entry);
        this.byChain.set(key, index);
      }
      prev = index;
    }
    return prev!;
  }

  /** The one seccomp.img entry (an empty one when no thread has filters, like CRIU's). */
  image(): Entry {
    return this.entries.length ? { seccomp_filters: this.entries } : {};
  }
}

/** Puts a thread's seccomp state where CRIU 4.x keeps it: the thread core, not the task core. */
export function withSeccomp(core: Entry, s: ThreadSeccomp | undefined): Entry {
  const tc = core['tc'] as Entry | undefined;
  if (tc) delete tc['seccomp_mode'];
  const threadCore = core['thread_core'] as Entry | undefined;
  if (threadCore && s && s.mode) {
    threadCore['seccomp_mode'] = s.mode;
    if (s.filter !== undefined) threadCore['seccomp_filter'] = s.filter;
  }
  return core;
}
