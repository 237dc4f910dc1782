// The TypeScript client of the per-task helper (native/build/crr-helper): spawning (and reaping)
// the first helper, request/answer over its SOCK_SEQPACKET channel (msgpack, request ids, per-request
// timeouts, typed errors), forking child helpers with exact PIDs and taking over their channels,
// and killing and reaping a helper tree by PID. Protocol: docs/ARCHITECTURE.md ("The per-task helper and its channel").
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { NativeError } from '../errors.js';
import { HelperBatchError, HelperGoneError, HelperTimeoutError } from './helper-errors.js';
import { packr, unpackr } from './helper-wire.js';
import { native, nativePaths, type ChannelHandle } from './native.js';

export interface RequestOptions {
  /** Default 10 000 ms. */
  timeoutMs?: number;
}

export interface ForkOptions extends RequestOptions {
  /** The PID wanted in the child's innermost PID namespace (clone3 set_tid = [pid]). */
  pid?: number;
  /** CLONE_NEW* flags only. */
  flags?: number;
  /** One PID per namespace level, innermost first (overrides `pid`). */
  setTid?: number[];
  /** Keep the parent's fds in the child (default: the child starts with only its channel). */
  keepFds?: boolean;
}

export interface HelperIdentity {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  rseq: 'off' | 'unregistered';
}

interface Answer {
  id: number;
  ok: boolean;
  value?: unknown;
  errno?: number;
  code?: string;
  syscall?: string;
  detail?: string;
  index?: number;
  results?: unknown[];
}

interface Pending {
  op: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  /** Deferred close ops sent ahead of the caller's op(s) in the same batch (see closeLater). */
  prefix: number;
  /** The caller sent one op that went out wrapped in a batch: answer with its value alone. */
  unwrap: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;
// One request is one packet; a packet larger than the socket's send buffer (about 208 KiB by
// default) fails with EMSGSIZE, which would tear the whole channel down. Refuse it up front.
const MAX_REQUEST_BYTES = 200_000;
const SIGKILL = 9;
const CLONE_NEWPID = 0x20000000;
const CLONE_FILES = 0x400;
const PR_SET_PDEATHSIG = 1;
/** The PID in crr's namespace of the process a pidfd refers to, -1 once it is gone. */
function hostPidOfPidfd(pidfd: number): number {
  try {
    return native.pidfdPid(pidfd); // one ioctl, not an open, read and parse of fdinfo (~40 us)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return -1;
    if (code !== 'ENOTTY' && code !== 'EINVAL') throw error;
  }
  const match = /^Pid:\s+(-?\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8')); // before Linux 6.13
  return match ? Number(match[1]) : -1;
}

/** The caller's part of a batch answer that went out with deferred close ops in front. */
function unprefixed(values: unknown[], pending: Pending): unknown {
  const own = values.slice(pending.prefix);
  return pending.unwrap ? own[0] : own;
}

/** One helper process and its channel. */
export class HelperChannel extends EventEmitter {
  /** The PID the task sees for itself (innermost PID namespace). */
  pid = 0;
  /** Its PID in the orchestrator's PID namespace (for /proc, ptrace, pidfd_open). */
  readonly hostPid: number;
  /** Its PID as its parent helper sees it (what the parent's waitpid/kill take). */
  readonly pidInParent: number;
  /** It lives in crr's own PID namespace (the first helper, and its descendants forked without CLONE_NEWPID). */
  readonly inCrrPidNamespace: boolean;
  /** The orchestrator's pidfd for it. */
  readonly pidfd: number;
  parent: HelperChannel | undefined;
  /** Helpers forked through this one and not yet reaped by destroy(). */
  readonly children = new Set<HelperChannel>();
  /** Resolves once the channel has closed (helper exited, killed, or close() called). */
  readonly exited: Promise<void>;
  /** True once `park` was answered: the helper will answer nothing more. */
  parked = false;
  /**
   * Its process group as its own PID namespace sees it, while crr knows it without asking: taken
   * from the first helper's getpid, inherited through fork, changed by setsid()/setpgid();
   * undefined when not known (a fresh PID namespace's init and what it forks before a setsid).
   */
  pgid: number | undefined;
  /**
   * The first helper's getpid answer (its PID and process group), asked at spawn and pending
   * until it arrives; resolved at once for a forked helper (fork() knows both without asking).
   */
  identified: Promise<void> = Promise.resolve();
  /** The addon's poll of the channel fd (channel.cc), which reads each answer as one packet. */
  private readonly channel: ChannelHandle;
  /** The channel's fd (requestWithFds sends on it directly). */
  private readonly channelFd: number;
  /** Requests the full channel refused, in order: sent as it drains (a rare case: answers come fast). */
  private readonly unsent: Buffer[] = [];
  private resolveExited!: () => void;
  private readonly pending = new Map<number, Pending>();
  /** Node's own child (spawnHelper): libuv does not know it, so crr reaps it (reaped()). */
  private readonly spawned: boolean;
  private reaping: Promise<unknown> | undefined;
  private nextId = 1;
  /** close() was called, or the channel ended: nothing more is sent or read. */
  private closed = false;
  /**
   * This helper's fds of children it forked (their channel ends and pidfds) that crr has copied
   * and the helper may close: they go out as close ops in front of the next request, so a fork
   * costs one round trip, not two. Always before any later op, so no fd a task restores later can
   * land on one of these numbers first.
   */
  private readonly closeLater: number[] = [];
  /** Its fd table is shared with another helper (CLONE_FILES): nothing may be left open in it. */
  private sharesFiles = false;

  constructor(fields: {
    fd: number;
    pidfd: number;
    hostPid: number;
    pidInParent: number;
    parent?: HelperChannel;
    spawned?: boolean;
    inCrrPidNamespace: boolean;
  }) {
    super();
    this.pidfd = fields.pidfd;
    this.hostPid = fields.hostPid;
    this.pidInParent = fields.pidInParent;
    this.pid = fields.pidInParent;
    this.inCrrPidNamespace = fields.inCrrPidNamespace;
    this.parent = fields.parent;
    this.spawned = fields.spawned ?? false;
    this.channelFd = fields.fd;
    this.exited = new Promise<void>((resolve) => (this.resolveExited = resolve)).then(() => this.onClosed());
    // The end of the channel (end of file, or ECONNRESET when a killed helper had unread
    // requests) closes it as close() does.
    try {
      this.channel = native.channelOpen(
        fields.fd,
        (packet) => this.onPacket(packet),
        () => this.close(),
        () => this.sendUnsent(),
      );
    } catch (error) {
      native.close(fields.fd); // the channel takes the fd only once open
      throw error;
    }
  }

  /** Sends one op and resolves with its value; rejects with NativeError (code, errno, syscall). */
  request<T = unknown>(op: string, args: Record<string, unknown> = {}, options: RequestOptions = {}): Promise<T> {
    return this.send<T>(op, args, options);
  }

  /**
   * Like request(), with `fds` (crr's own, at most 253) riding on the request packet as
   * SCM_RIGHTS: the helper's `recv_fds` without `sock` lands them. One round trip where a
   * socketpair of the task's own would take two. Throws synchronously (EAGAIN: the channel is
   * full, nothing sent) when the packet cannot go at once; the caller then takes the slow way.
   */
  requestWithFds<T = unknown>(op: string, args: Record<string, unknown>, fds: readonly number[], options: RequestOptions = {}): Promise<T> {
    // A packet sent past the channel must not overtake requests still waiting for it to drain.
    if (this.unsent.length > 0) throw new NativeError({ code: 'EAGAIN', errno: 11, syscall: 'sendmsg', pid: this.pid, detail: 'channel writes queued' });
    return this.send<T>(op, args, options, fds);
  }

  private send<T>(op: string, args: Record<string, unknown>, options: RequestOptions, fds?: readonly number[]): Promise<T> {
    if (this.closed) return Promise.reject(new HelperGoneError(op, this.pid));
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const id = this.nextId++;
    const prefix = this.closeLater.length;
    let unwrap = false;
    let packet: Buffer;
    if (prefix === 0) packet = packr.pack({ ...args, id, op });
    else {
      const closes = this.closeLater.map((fd) => ({ op: 'close', fd }));
      unwrap = op !== 'batch';
      const ops = unwrap ? [{ ...args, op }] : (args['ops'] as unknown[]);
      packet = packr.pack({ id, op: 'batch', ops: [...closes, ...ops] });
    }
    if (packet.length > MAX_REQUEST_BYTES) {
      const detail = `request of ${packet.length} bytes is over ${MAX_REQUEST_BYTES}: split it`;
      return Promise.reject(new NativeError({ code: 'E2BIG', errno: 7, syscall: op, pid: this.pid, detail }));
    }
    if (fds) native.sendFds(this.channelFd, [...fds], packet); // throws before anything is queued
    else if (!this.write(packet)) return Promise.reject(new HelperGoneError(op, this.pid));
    this.closeLater.splice(0, prefix);
    return new Promise<T>((resolve, reject) => {
      // Timers run before I/O in each turn of the event loop: after a long synchronous stretch
      // (decoding 1,000 tasks' images takes seconds) an answer that came in long ago still sits
      // unread when the timer fires. setImmediate lets that poll phase read it first, so only a
      // request still unanswered then times out.
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (!this.settle(id)) return;
          reject(new HelperTimeoutError(op, this.pid, timeoutMs));
        });
      }, timeoutMs);
      this.pending.set(id, { op, resolve: resolve as (v: unknown) => void, reject, timer, prefix, unwrap });
    });
  }

  /** Sends or queues one request packet; false when the channel failed (it is closed then). */
  private write(packet: Buffer): boolean {
    try {
      if (this.unsent.length > 0 || !native.channelSend(this.channel, packet)) this.unsent.push(packet);
      return true;
    } catch {
      this.close();
      return false;
    }
  }

  /** The channel drained: the queued requests go, in order, until it is full again. */
  private sendUnsent(): void {
    try {
      while (this.unsent.length > 0 && native.channelSend(this.channel, this.unsent[0]!)) this.unsent.shift();
    } catch {
      this.close();
    }
  }

  /** Several ops in one round trip, in order, stopping at the first failure (HelperBatchError). */
  batch(ops: Array<{ op: string } & Record<string, unknown>>, options: RequestOptions = {}): Promise<unknown[]> {
    return this.request<unknown[]>('batch', { ops }, options);
  }

  getpid(options?: RequestOptions): Promise<HelperIdentity> {
    return this.request<HelperIdentity>('getpid', {}, options);
  }

  /** setsid(2): the helper leads a new session and process group. */
  async setsid(options?: RequestOptions): Promise<number> {
    const sid = await this.request<number>('setsid', {}, options);
    this.pgid = this.pid;
    return sid;
  }

  /** setpgid(0, pgid) on itself (0: lead a group of its own). */
  async setpgid(pgid: number, options?: RequestOptions): Promise<void> {
    await this.request('setpgid', { pid: 0, pgid }, options);
    this.pgid = pgid === 0 ? this.pid : pgid;
  }

  /** Answers, then blocks in pause() until a tracer seizes the helper. */
  async park(options?: RequestOptions): Promise<void> {
    await this.request('park', {}, options);
    this.parked = true;
  }

  /**
   * Forks a child helper (a new task) with an exact PID. The parent helper keeps the child's
   * channel end and a pidfd open; both are copied here with pidfd_getfd, then closed there by
   * close ops that ride in front of the parent's next request (closeLater).
   */
  async fork(options: ForkOptions = {}): Promise<HelperChannel> {
    const { timeoutMs, ...args } = options;
    const made = await this.request<{ pid: number; channelFd: number; pidfd: number }>('fork', args, {
      timeoutMs,
    });
    const closing = () =>
      this.batch([{ op: 'close', fd: made.channelFd }, { op: 'close', fd: made.pidfd }], { timeoutMs });
    let fd = -1;
    let pidfd = -1;
    try {
      fd = native.pidfdGetfd(this.pidfd, made.channelFd);
      pidfd = native.pidfdGetfd(this.pidfd, made.pidfd);
    } catch (error) {
      await closing().catch(() => undefined);
      await this.killAndReapChild(made.pid, pidfd, timeoutMs).catch(() => undefined);
      if (fd >= 0) native.close(fd);
      throw error;
    }
    // Its own PID needs no getpid round trip: without CLONE_NEWPID the child lives in this
    // helper's PID namespace (its PID there is the one clone3 returned), with it it is that
    // namespace's init. A child that died at start-up fails its first request instead. In crr's
    // own namespace that PID is also the host's (no read of the pidfd's fdinfo, ~30 us a task).
    const newPidNamespace = ((args.flags ?? 0) & CLONE_NEWPID) !== 0;
    const inCrrPidNamespace = this.inCrrPidNamespace && !newPidNamespace;
    const child = new HelperChannel({
      fd,
      pidfd,
      hostPid: inCrrPidNamespace ? made.pid : hostPidOfPidfd(pidfd),
      pidInParent: made.pid,
      parent: this,
      inCrrPidNamespace,
    });
    child.pid = newPidNamespace ? 1 : made.pid;
    // A child starts in its parent's group, which a fresh PID namespace cannot name.
    child.pgid = newPidNamespace ? undefined : this.pgid;
    this.children.add(child);
    if ((args.flags ?? 0) & CLONE_FILES) child.sharesFiles = this.sharesFiles = true;
    if (!this.sharesFiles) {
      this.closeLater.push(made.channelFd, made.pidfd);
      return child;
    }
    // A table other tasks use too: they may place their fds on these numbers at any time, so
    // close at once.
    try {
      await closing();
    } catch (error) {
      await child.destroy();
      throw error;
    }
    return child;
  }

  /**
   * Hands `child`, forked through this helper, to `adopter` before this helper goes: the kernel
   * reparents it to its PID namespace's init, which `adopter` must be. The parent-death signal
   * the fork armed is disarmed first, so this helper's death does not take the child along.
   */
  async handOver(child: HelperChannel, adopter: HelperChannel): Promise<void> {
    await child.request('prctl', { option: PR_SET_PDEATHSIG, a2: 0 });
    this.children.delete(child);
    adopter.children.add(child);
    child.parent = adopter;
  }

  /** Sends a signal through the pidfd (no PID-reuse race); a helper already gone is fine. */
  kill(sig = SIGKILL): void {
    try {
      native.pidfdSendSignal(this.pidfd, sig);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ESRCH') throw error;
    }
  }

  /** Like a child process, an open channel keeps Node running; unref() lets Node exit anyway. */
  unref(): void {
    native.channelRef(this.channel, false);
  }

  ref(): void {
    native.channelRef(this.channel, true);
  }

  /** Closes the channel: a helper in its request loop exits on end of file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.channelClose(this.channel);
    this.unsent.length = 0;
    this.resolveExited();
  }

  /**
   * SIGKILLs this helper and every helper forked through it, children first, and reaps each by
   * PID: a forked helper through its parent's waitpid, the first one as Node's own child.
   */
  async destroy(): Promise<void> {
    for (const child of [...this.children]) await child.destroy();
    this.kill(SIGKILL);
    this.close();
    if (this.spawned) await this.reaped();
    else if (this.parent && !this.parent.closed && !this.parent.parked) {
      await this.parent.request('waitpid', { pid: this.pidInParent }, { timeoutMs: 2000 }).catch(() => undefined);
    }
    await this.exited;
    this.parent?.children.delete(this);
    if (!this.pidfdClosed) {
      this.pidfdClosed = true;
      native.close(this.pidfd);
    }
  }

  private pidfdClosed = false;

  /**
   * Reaps the first helper once, however many ways (destroy, an exit op, a rollback) end it;
   * only once it was killed or told to exit (the wait blocks a libuv worker until then). A
   * forked helper is its parent helper's to reap: nothing to do here.
   */
  reaped(): Promise<unknown> {
    if (!this.spawned) return Promise.resolve();
    return (this.reaping ??= native.reapChild(this.hostPid));
  }

  private async killAndReapChild(pidInParent: number, pidfd: number, timeoutMs?: number): Promise<void> {
    if (pidfd >= 0) {
      native.pidfdSendSignal(pidfd, SIGKILL);
      native.close(pidfd);
    } else {
      await this.request('kill', { pid: pidInParent, sig: SIGKILL }, { timeoutMs });
    }
    await this.request('waitpid', { pid: pidInParent }, { timeoutMs });
  }

  private onPacket(chunk: Buffer): void {
    for (const answer of unpackr.unpackMultiple(chunk) as Answer[]) {
      const pending = this.settle(answer.id);
      if (!pending) continue; // timed out already
      if (answer.ok) {
        pending.resolve(pending.prefix === 0 ? answer.value : unprefixed(answer.value as unknown[], pending));
        continue;
      }
      const fields = {
        code: answer.code ?? 'EUNKNOWN',
        errno: answer.errno ?? 0,
        syscall: answer.syscall ?? pending.op,
        pid: this.pid,
        detail: answer.detail,
      };
      const index = answer.index === undefined ? undefined : answer.index - pending.prefix;
      // A failed deferred close (index below 0) or the caller's single op: a plain NativeError.
      const asBatch = index !== undefined && index >= 0 && !pending.unwrap;
      pending.reject(asBatch ? new HelperBatchError(fields, index, (answer.results ?? []).slice(pending.prefix)) : new NativeError(fields));
    }
  }

  private settle(id: number): Pending | undefined {
    const pending = this.pending.get(id);
    if (!pending) return undefined;
    clearTimeout(pending.timer);
    this.pending.delete(id);
    return pending;
  }

  private onClosed(): void {
    for (const [id, pending] of this.pending) {
      this.settle(id);
      pending.reject(new HelperGoneError(pending.op, this.pid));
    }
    this.emit('exit');
  }
}

/**
 * Spawns the first helper as Node's own child, its channel on fd 3 and glibc's rseq off
 * (inherited by every helper it forks). The addon's posix_spawn, not child_process: Node's
 * spawn forks all of Node and blocked the main thread 2-3 ms per restore (more with a larger
 * heap). Its getpid is sent at once and pending in `identified`, so requests sent before it
 * arrives queue behind it. Nobody else reaps it: destroy() or reaped() must.
 */
export async function spawnHelper(): Promise<HelperChannel> {
  const [mine, theirs] = native.socketpair('seqpacket');
  let pid: number;
  try {
    pid = native.spawnChild(nativePaths.helper, theirs, ['GLIBC_TUNABLES=glibc.pthread.rseq=0', `CRR_HELPER_PARENT=${process.pid}`]);
  } catch (error) {
    native.close(mine);
    throw error;
  } finally {
    native.close(theirs);
  }
  let helper: HelperChannel;
  try {
    // Its PID cannot be reused before we reap it, so neither kill nor pidfd_open can miss.
    helper = new HelperChannel({ fd: mine, pidfd: native.pidfdOpen(pid), hostPid: pid, pidInParent: pid, spawned: true, inCrrPidNamespace: true });
  } catch (error) {
    process.kill(pid, SIGKILL);
    await native.reapChild(pid);
    throw error;
  }
  helper.identified = helper.getpid().then((got) => {
    helper.pid = got.pid;
    helper.pgid = got.pgid;
  });
  helper.identified.catch(() => undefined); // reported to whoever awaits it; a caller then destroys it
  return helper;
}
