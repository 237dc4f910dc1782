// The dump entry point: freeze the tree, collect every task into CRIU-format images, then kill
// the tree (default, like criu) or resume it untouched. Any failure before the end resumes the
// tree with its registers as they were and removes the partial image directory.
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAbsolute, join } from 'node:path';
import { CrrError, UsageError } from '../errors.js';
import { openCheckpoint, pageSources, readPagemap, type Checkpoint } from '../images/index.js';
import { DumpIds, KCMP, type Entry } from './ids.js';
import { kcmpCodes } from './kcmp-order.js';
import { freezeTree, killedWhileFrozen, thaw, pstreeEntries, type Frozen, type FrozenTask } from './tree.js';
import { collectVmas, exeFileId, mmEntry, withoutRange } from './mm.js';
import { aioRingEntries } from './aio.js';
import { collectFds, fsEntry, listFds, OpenFiles } from './files.js';
import { finishTcpRepair } from './fd-inetsk.js';
import { finishTerminalQueues, finishTerminals, ttyDataOf, ttyInfosOf } from './fd-tty.js';
import { checkUnixPeers, unixQueues } from './fd-unixsk.js';
import { fifoData, fifoFds } from './fd-fifo.js';
import { parseFdinfo, decodeStatus, readProc } from './proc.js';
import { Scratch, NR, SCRATCH_SIZE } from './inject.js';
import { probeProcess, probeThreads, saveRegs } from './task.js';
import { coreEntry, zombieCoreEntry } from './core.js';
import { buildRuns, pagemapEntries, pagemapReader, readerInto, startPagesWrite, vmaIsDumped, PAGE_SIZE, type PageRun, type ParentPages } from './pages.js';
import { SharedMemory, shmemPagemapEntries } from './shmem.js';
import { GET_SEALS, memfdsOf } from './fd-memfd.js';
import { DumpStats, statsEntry } from './stats.js';
import { DumpOutput } from './output.js';
import { SeccompFilters, withSeccomp } from './seccomp.js';
import { FileLocks } from './file-locks.js';
import { namespacePids, parseExternal, rootNamespaces, type IdMaps } from './namespaces.js';
import { CgroupSets } from './cgroups.js';
import { native } from '../actors/native.js';
import { AF_NETLINK, NETLINK_SOCK_DIAG, SOCK_RAW } from './socket-common.js';
import { tracerControl } from './tracer-control.js';
import { isFrozen, seizeFrozen, setFrozen } from './freezer.js';
import type { TaskControl } from './control.js';
import type { Regs } from './regs.js';

/** Pages files written at once while the dump goes on: 2 keep the disk busy without queueing much. */
const PAGES_WRITES_IN_FLIGHT = 2;

export type DumpStage = 'freeze' | 'collect' | 'pages' | 'write' | 'finish';

export type DumpEvent =
  | { type: 'stage'; stage: DumpStage }
  | { type: 'seized'; tid: number }
  | { type: 'task'; pid: number; threads: number; vmas: number; fds: number }
  | { type: 'pages'; pid: number; pages: number; bytes: number; ms: number }
  | { type: 'shmem'; shmid: bigint; pages: number; bytes: number }
  | { type: 'done'; images: string[]; ms: number; left: 'killed' | 'running' };

export type DumpAction = 'pre-dump' | 'network-lock' | 'post-dump' | 'network-unlock';

export interface DumpOptions {
  pid: number;
  imagesDir: string;
  /**
   * Resume the tree untouched instead of killing it. A killed tree's PIDs are free when dump()
   * resolves (it waits up to 3 s for their parents to reap them), so a restore can follow at once.
   */
  leaveRunning?: boolean;
  /**
   * Save established TCP connections (criu's --tcp-established) in repair mode; without it they
   * are refused. crr does not lock the network: a peer outside the tree that sends while the
   * connection is not restored gets a reset.
   */
  tcpEstablished?: boolean;
  /**
   * Dump TCP connections as they are, without their queues or repair mode, for a restore that
   * makes them closed sockets (criu's --tcp-close): the program sees each connection hang up.
   * The tree's death closes them as any exit would (their peers get a FIN or a reset).
   */
  tcpClose?: boolean;
  /**
   * Dump TCP listeners holding connections not yet accepted, without them (criu's
   * --skip-in-flight); without it they are refused. Their clients see a reset once the tree is
   * killed; a restored listener starts with an empty accept queue.
   */
  skipInFlight?: boolean;
  /**
   * Dump a unix datagram socket connected to a named socket outside the tree (a syslog socket)
   * by that name (criu's --ext-unix-sk); without it, refused. The restore connects it again.
   */
  externalUnixSockets?: boolean;
  /** Largest deleted file kept in the checkpoint, in bytes (criu's --ghost-limit; 1 MiB). */
  ghostLimit?: number;
  /**
   * An incremental dump (criu's --prev-images-dir): the checkpoint of this tree to build on, a
   * path relative to `imagesDir` or absolute. A page it holds unchanged (same address and bytes)
   * is not written again but marked PE_PARENT, and a `parent` link names it, as CRIU lays it out;
   * a restore reads those pages there, so it must stay.
   */
  prevImagesDir?: string;
  /**
   * Take a terminal whose master is not in the tree (criu's --shell-job): the tree runs on a
   * shell's terminal. Without it such a terminal is refused; its restore needs the option too.
   */
  shellJob?: boolean;
  /**
   * Take a terminal whose master is not in the tree, a container's on its own devpts included,
   * for a restore that makes a new one and hands its master to the caller (criu's RPC option
   * orphan_pts_master, which runc always gives).
   */
  orphanPtyMaster?: boolean;
  /**
   * Resources outside the tree (criu's --external). `net[INODE]:KEY`: the tree's network
   * namespace (inode INODE, as `ls -L -i /proc/PID/ns/net` shows it), a container's, is left out
   * of the dump: not its devices, addresses or routes, which its runtime sets up; the restore is
   * given one for KEY (`externalNamespaces`, or criu's --inherit-fd fd[N]:KEY).
   * `mnt[MOUNTPOINT]:KEY`: a mount of the tree's own mount namespace (a container's volume) is
   * described with KEY and not made from the images: the restore binds what it is given for KEY
   * (`externalMounts`, criu's --external mnt[KEY]:PATH), else finds it where crr sees it.
   */
  external?: readonly string[];
  /**
   * The caller's action scripts (criu's --action-script; the notifications of its RPC), awaited
   * where CRIU runs them: pre-dump before the freeze, network-lock once the tree is frozen,
   * post-dump once every image is written and before the tree is killed or resumed, and
   * network-unlock after a resume (`leaveRunning`). A rejection fails the dump (the tree is
   * thawed and no checkpoint is left), except network-unlock's, a warning: the tree runs by then.
   */
  actionScript?: (action: DumpAction) => Promise<void>;
  /**
   * The tree's freezer cgroup (criu's --freeze-cgroup, v1 or v2 directory). crr freezes with
   * ptrace either way; a cgroup found frozen (a paused container) is what it needs to know:
   * its threads are seized before it is thawed, and it is frozen again if the tree runs on.
   */
  freezeCgroup?: string;
  /** Told what the dump could not do as asked but did not fail for. */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
  onEvent?: (e: DumpEvent) => void;
  /** For tests: a tracer stand-in. */
  control?: TaskControl;
  /** Write a Chrome Trace Event file of the dump here (src/trace/dump-adapter.ts). */
  trace?: string;
}

export interface DumpResult {
  pids: number[];
  images: string[];
  ms: number;
  pagesBytes: number;
  /** What stats-dump holds (times in microseconds, like criu's). */
  stats: DumpStats;
}

export async function dump(opts: DumpOptions): Promise<DumpResult> {
  if (!opts.trace) return dumpTree(opts);
  // Loaded only when asked for, like restore's recorder.
  const { tracedDump } = await import('../trace/dump-adapter.js');
  return tracedDump(opts.trace, opts, dumpTree);
}

async function dumpTree(opts: DumpOptions): Promise<DumpResult> {
  const t0 = performance.now();
  const ctl = opts.control ?? (await tracerControl());
  const emit = (e: DumpEvent) => opts.onEvent?.(e);
  const aborted = () => {
    if (opts.signal?.aborted) throw new CrrError('dump aborted', 1, { cause: opts.signal.reason });
  };
  const external = parseExternal(opts.external ?? []);
  const parent = opts.prevImagesDir === undefined ? undefined : parentCheckpoint(opts.imagesDir, opts.prevImagesDir);
  const out = new DumpOutput(opts.imagesDir);
  const ids = new DumpIds(opts.ghostLimit);
  const rootIds = await ids.rootIds();
  const stats = new DumpStats();
  let frozen: Frozen = { tasks: [], seized: [], masks: new Map(), stopSignals: new Map(), takenSigstops: new Set() };
  // A paused container's cgroup: seized while frozen, thawed, frozen again if the tree runs on.
  const wasFrozen = opts.freezeCgroup !== undefined && isFrozen(opts.freezeCgroup);
  const preSeized = new Set<number>();
  const regs = new Map<number, Regs>();
  let scratch: Scratch | undefined;
  let pagesBytes = 0;
  const pagesWrites = new Set<Promise<void>>();
  const open = new OpenFiles();
  open.tcpEstablished = opts.tcpEstablished ?? false;
  open.skipInFlight = opts.skipInFlight ?? false;
  open.tcpClose = opts.tcpClose ?? false;
  open.shellJob = opts.shellJob ?? false;
  open.orphanPtyMaster = opts.orphanPtyMaster ?? false;
  try {
    await opts.actionScript?.('pre-dump');
    emit({ type: 'stage', stage: 'freeze' });
    if (wasFrozen) await seizeFrozen(ctl, opts.freezeCgroup!, preSeized);
    frozen = await freezeTree(opts.pid, ctl, (tid) => emit({ type: 'seized', tid }), preSeized);
    await releaseOutsiders(ctl, preSeized, frozen);
    stats.frozen();
    await opts.actionScript?.('network-lock');
    const live = frozen.tasks.filter((t) => !t.zombie);
    const namespaces = new Map(live.map((t) => [t.pid, ids.namespaceIds(t.pid)]));
    const rootNs = rootNamespaces(live.map((t) => ({ pid: t.pid, ppid: t.ppid, ids: namespaces.get(t.pid)! })), rootIds as Record<string, number>, external);
    // Images number tasks as the tree's PID namespace does (crr's own: as they are).
    const v = rootNs.kinds.has('pid') ? namespacePids(opts.pid, frozen.tasks.flatMap((t) => t.tids)) : (pid: number) => pid;
    // A session or group from outside the namespace is refused now, not after the long part.
    for (const t of frozen.tasks) for (const pid of [t.pgid, t.sid]) v(pid);
    open.tree = { hostPids: new Set(frozen.tasks.flatMap((t) => [...t.tids, t.pgid])), pidOf: v, ...(rootNs.ids ? { ids: rootNs.ids } : {}) };
    // The tree's sockets are asked of sock_diag in its own network namespace.
    if (rootNs.kinds.has('net')) open.diagSocket = native.socketInNamespace(`/proc/${opts.pid}/ns/net`, AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG);
    for (const pid of rootNs.nestedNets.values()) {
      const path = `/proc/${pid}/ns/net`;
      open.nestedNet.diagSockets.set(statSync(path).ino, native.socketInNamespace(path, AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG));
    }
    for (const t of live) for (const [tid, r] of await saveRegs(ctl, t.tids)) regs.set(tid, r);
    aborted();

    emit({ type: 'stage', stage: 'collect' });
    const shmem = new SharedMemory();
    const seccomp = new SeccompFilters();
    const locks = new FileLocks();
    const cgroups = new CgroupSets();
    const tree: TreeDump = { ctl, ids, open, shmem, out, regs, frozen, stats, emit, seccomp, locks, cgroups, userIds: rootNs.ids, v, ...(parent ? { parent } : {}) };
    let pagesId = 0;
    // Pages files still being written (a task's pages go on while the next tasks are dumped):
    // at most PAGES_WRITES_IN_FLIGHT; the first failure fails the dump.
    let pagesFailure: unknown;
    const track = (written: Promise<number>) => {
      const p: Promise<void> = written.then(
        (bytes) => void (pagesBytes += bytes),
        (err: unknown) => void (pagesFailure ??= err),
      ).finally(() => pagesWrites.delete(p));
      pagesWrites.add(p);
    };
    for (const task of frozen.tasks) {
      aborted();
      if (pagesFailure) throw pagesFailure;
      if (task.zombie) {
        // criu writes only a core (state DEAD, exit code) for a zombie: no mm, files, fs or ids.
        out.write(`core-${v(task.pid)}.img`, [zombieCoreEntry(task.zombie.exitCode, task.zombie.comm)]);
        continue;
      }
      try {
        scratch = await Scratch.open(ctl, task.pid);
        const { written } = await dumpTask(task, namespaces.get(task.pid)!, scratch, ++pagesId, tree);
        track(written);
        await scratch.close(regs.get(task.pid));
        scratch = undefined;
        while (pagesWrites.size >= PAGES_WRITES_IN_FLIGHT) await Promise.race(pagesWrites);
      } catch (err) {
        throw (await killedWhileFrozen(task.pid, err)) ?? err;
      }
    }
    while (pagesWrites.size) await Promise.race(pagesWrites);
    if (pagesFailure) throw pagesFailure;
    const tShm = performance.now();
    for (const m of memfdsOf(ids).objects()) shmem.addObject(m);
    for (const s of shmem.dumpAll(() => ++pagesId, (id) => out.rawPath(`pages-${id}.img`))) {
      out.write(`pagemap-shmem-${s.shmid}.img`, shmemPagemapEntries(s.pagesId, s.runs));
      stats.shmem(s.pagesScanned, s.bytes / PAGE_SIZE);
      pagesBytes += s.bytes;
      emit({ type: 'shmem', shmid: s.shmid, pages: s.bytes / PAGE_SIZE, bytes: s.bytes });
    }
    stats.memwrite(performance.now() - tShm);
    const memfdInodes = memfdsOf(ids).entries();
    if (memfdInodes.length) out.write('memfd.img', memfdInodes);

    emit({ type: 'stage', stage: 'write' });
    out.write('pstree.img', pstreeEntries(frozen.tasks, v));
    checkUnixPeers(open, ids, opts.externalUnixSockets ?? false);
    out.write('files.img', ids.files);
    if (open.pipeData.length) out.write('pipes-data.img', open.pipeData);
    if (fifoData(open).length) out.write('fifo-data.img', fifoData(open));
    const queues = [...unixQueues(open), ...open.inetQueues];
    if (queues.length) out.write('sk-queues.img', queues);
    for (const stream of open.tcpStreams) out.write(stream.name, [stream]);
    out.write('seccomp.img', [seccomp.image()]);
    if (locks.entries.length) out.write('filelocks.img', locks.entries.map((e) => ({ ...e, pid: v(Number(e['pid'])) })));
    for (const ghost of ids.ghosts.images) out.write(ghost.name, [{ entry: ghost.entry, payload: ghost.payload }]);
    if (ids.ghosts.remaps.length) out.write('remap-fpath.img', ids.ghosts.remaps);
    out.write('cgroup.img', [cgroups.image(rootNs.cgroupRoots)]);
    finishTerminals(open);
    if (ttyInfosOf(open).size) out.write('tty-info.img', [...ttyInfosOf(open).values()].map((e) => ({ ...e, sid: v(Number(e['sid'])), pgrp: v(Number(e['pgrp'])) })));
    if (ttyDataOf(open).length) out.write('tty-data.img', ttyDataOf(open));
    for (const [name, entries] of rootNs.images) out.write(name, entries);
    for (const [name, bytes] of rootNs.archives) writeFileSync(out.rawPath(name), bytes);
    out.write('inventory.img', [inventoryEntry(rootIds, open.tcpClose)]);

    await opts.actionScript?.('post-dump');
    emit({ type: 'stage', stage: 'finish' });
    if (opts.leaveRunning) {
      finishTcpRepair(open, true);
      finishTerminalQueues(open, true);
      if (wasFrozen) setFrozen(opts.freezeCgroup!, true);
      await thaw(ctl, frozen, regs);
      await opts.actionScript?.('network-unlock').catch((err: unknown) => opts.onWarning?.(`action script network-unlock failed: ${(err as Error)?.message ?? String(err)}`));
    } else {
      // Zombies go with their parents (their reaper collects them).
      for (const t of [...live].reverse()) await ctl.kill(t.pid);
      finishTcpRepair(open, false);
      finishTerminalQueues(open, false);
      await untilReaped(frozen.tasks.map((t) => t.pid), REAP_WAIT_MS);
    }
    stats.thawed();
    out.write('stats-dump', [statsEntry(stats)]);
    if (opts.prevImagesDir !== undefined) symlinkSync(opts.prevImagesDir, join(out.partial, 'parent'));
    const images = await out.commit();
    const ms = performance.now() - t0;
    emit({ type: 'done', images, ms, left: opts.leaveRunning ? 'running' : 'killed' });
    return { pids: frozen.tasks.map((t) => t.pid), images, ms, pagesBytes, stats };
  } catch (err) {
    if (scratch) await scratch.close(regs.get(scratch.pid)).catch(() => undefined);
    await Promise.allSettled([...pagesWrites]);
    for (const undo of [() => finishTcpRepair(open, true), () => finishTerminalQueues(open, true)]) {
      try {
        undo();
      } catch {
        // The dump's own error is the one to report; the tree must still be thawed.
      }
    }
    await releaseOutsiders(ctl, preSeized, frozen);
    if (wasFrozen) setFrozen(opts.freezeCgroup!, true);
    await thaw(ctl, frozen, regs);
    await out.abandon();
    throw err;
  } finally {
    if (open.diagSocket !== undefined) native.close(open.diagSocket);
    for (const fd of [...open.nestedNet.diagSockets.values(), ...open.inFlight]) native.close(fd);
  }
}

/** Threads of a frozen cgroup seized before the tree's freeze that it did not take (not of the tree, or gone): let go. */
async function releaseOutsiders(ctl: TaskControl, preSeized: Set<number>, frozen: Frozen): Promise<void> {
  const taken = new Set(frozen.seized);
  for (const tid of preSeized) {
    if (taken.has(tid)) continue;
    preSeized.delete(tid);
    await ctl.waitStop(tid, 5000).then(() => ctl.detach(tid)).catch(() => undefined);
  }
}

/** What every task's dump adds to: the dump's id tables, collectors and output. */
interface TreeDump {
  readonly ctl: TaskControl;
  readonly ids: DumpIds;
  readonly open: OpenFiles;
  readonly shmem: SharedMemory;
  readonly out: DumpOutput;
  readonly regs: Map<number, Regs>;
  readonly frozen: Frozen;
  readonly stats: DumpStats;
  readonly emit: (e: DumpEvent) => void;
  readonly seccomp: SeccompFilters;
  /** The checkpoint an incremental dump builds on (prevImagesDir). */
  readonly parent?: Checkpoint;
  readonly locks: FileLocks;
  readonly cgroups: CgroupSets;
  /** The tree's user namespace's id maps, when it has one of its own. */
  readonly userIds: IdMaps | undefined;
  /** A PID as the tree's PID namespace numbers it (the images' numbers). */
  readonly v: (hostPid: number) => number;
}

/** Dumps one task; `written` is its pages file's write, which may still be going on (its byte count). */
async function dumpTask(task: FrozenTask, namespaces: Record<string, number>, scratch: Scratch, pagesId: number, tree: TreeDump): Promise<{ written: Promise<number> }> {
  const { ctl, ids, open, shmem, out, regs, frozen, stats, emit, seccomp, locks, cgroups, userIds, v, parent } = tree;
  const pid = task.pid;
  const status = decodeStatus(readProc(pid, 'status'));
  // vm/files/fs/sighand shared with an earlier task (clone without CLONE_THREAD): kcmp in this
  // task against the known objects, a few batches whatever their number.
  const { shared, ...objectIds } = await ids.taskObjects(pid, async (queries) => kcmpCodes(queries.map((q) => [q.pid, pid, q.type, 0, 0]), pid));
  // Two processes in one address space would come back as two: what one writes the other no
  // longer sees. (A vfork child before its exec is one; its parent, in the vfork wait, is refused first.)
  if (shared.has('vm_id')) throw new CrrError(`pid ${pid} shares its address space with another task of the tree (clone with CLONE_VM but not CLONE_THREAD), which crr dump does not support`, 1);
  const taskIds = { ...objectIds, ...namespaces };

  // File ids come out in CRIU's order: mapped files, then fds, then cwd and root.
  const vmas = withoutRange(collectVmas(pid, ids), scratch.base, scratch.base + BigInt(SCRATCH_SIZE));
  const aios = aioRingEntries(pid, vmas, (addr, len) => ctl.readMemory(pid, [{ addr, len }]));
  shmem.add(pid, vmas);
  const exeId = exeFileId(pid, ids);
  const pipeReadFds = listFds(pid)
    .filter((f) => f.link.startsWith('pipe:') && (parseFdinfo(readProc(pid, `fdinfo/${f.fd}`)).flags & 3) === 0)
    .map((f) => f.fd)
    .concat(fifoFds(pid));
  const proc = await probeProcess(ctl, scratch, pid, pipeReadFds);
  // An fd table shared with an earlier task (CLONE_FILES) was dumped with that task: one fdinfo image.
  const fdinfo = shared.has('files_id')
    ? undefined
    : await collectFds(pid, ids, open, {
        pipeSize: async (fd) => proc.pipeSizes.get(fd) ?? 65536,
        order: async (pairs) => kcmpCodes(pairs.map(({ a, b }) => [a.pid, b.pid, KCMP.FILE, a.fd, b.fd]), pid),
        seals: async (fd) => Number(await ctl.inject(pid, NR.fcntl, [fd, GET_SEALS, 0])),
      });
  if (fdinfo) locks.collect(pid, fdinfo.map((f) => ({ fd: Number(f.fd), id: Number(f.id) })), (fd) => readProc(pid, `fdinfo/${fd}`));
  const fs = fsEntry(pid, ids, status.umask);

  const threads = await probeThreads(ctl, scratch, pid, task.tids, regs, frozen.masks);

  // Pages: the zero page's PFN first (read the never-written probe page, then its pagemap word).
  const tScan = performance.now();
  const pm = pagemapReader(pid);
  let runs;
  try {
    ctl.readMemory(pid, [{ addr: scratch.zeroProbe, len: 8 }]);
    const zeroPfn = pm.read(scratch.zeroProbe, 1)[0]! & ((1n << 55n) - 1n);
    runs = buildRuns(vmas, (s, n) => pm.read(s, n), zeroPfn || undefined);
  } finally {
    pm.close();
  }
  const scanned = vmas.filter(vmaIsDumped).reduce((n, v) => n + Number((v.end - v.start) / BigInt(PAGE_SIZE)), 0);
  stats.memdump(performance.now() - tScan);
  const unreadable = vmas.filter((v) => vmaIsDumped(v) && !((v.entry.prot as number) & 1) && hasRunIn(runs, v.start, v.end));
  // Every page is read here (injected code patches and puts back bytes of the task's memory
  // later, and a task sharing this memory may get some), but the last chunks' writes go on while
  // the dump goes on with the next tasks.
  await setProt(scratch, pid, unreadable, true);
  const t0 = performance.now();
  const parentPages = parent ? openParentPages(parent, v(pid)) : undefined;
  let pagemapRuns: PageRun[];
  let bytes: number;
  let flushed: Promise<void>;
  try {
    ({ bytes, runs: pagemapRuns, flushed } = await startPagesWrite(out.rawPath(`pages-${pagesId}.img`), runs, { into: readerInto(pid) }, parentPages ? { parent: parentPages } : {}));
  } finally {
    parentPages?.close();
  }
  await setProt(scratch, pid, unreadable, false);
  const written = flushed.then(() => {
    stats.memwrite(performance.now() - t0);
    stats.pages(scanned, bytes / PAGE_SIZE);
    emit({ type: 'pages', pid, pages: bytes / 4096, bytes, ms: performance.now() - t0 });
    return bytes;
  });
  // Handled here too: if this task fails further on, the dump fails without waiting for it.
  written.catch(() => undefined);

  const procState = proc.task;
  out.write(`ids-${v(pid)}.img`, [taskIds]);
  out.write(`mm-${v(pid)}.img`, [mmEntry(pid, threads[0]!.stat, vmas, exeId, proc.mm, aios)]);
  out.write(`pagemap-${v(pid)}.img`, pagemapEntries(pagesId, pagemapRuns));
  if (fdinfo) out.write(`fdinfo-${taskIds.files_id}.img`, fdinfo);
  out.write(`fs-${v(pid)}.img`, [fs]);
  const readFilter = ctl.seccompFilter?.bind(ctl) ?? (() => Promise.reject(new CrrError(`pid ${pid}: this task control cannot read seccomp filters`)));
  for (const [i, t] of threads.entries()) {
    const sc = await seccomp.collect(t.tid, readFilter, t.status.seccomp);
    const cgSet = cgroups.idOf(`/proc/${pid}/task/${t.tid}`);
    const core = coreEntry(t, i === 0 ? { ...procState, stopSignal: frozen.stopSignals.get(pid) } : undefined, status.seccomp, cgSet);
    if (userIds) (core['thread_core'] as Entry)['creds'] = userIds.creds((core['thread_core'] as Entry)['creds'] as Entry, t.tid);
    for (const timer of (((core['tc'] as Entry | undefined)?.['timers'] as Entry | undefined)?.['posix'] ?? []) as Entry[]) {
      if (timer['notify_thread_id'] !== undefined) timer['notify_thread_id'] = v(Number(timer['notify_thread_id']));
    }
    out.write(`core-${v(t.tid)}.img`, [withSeccomp(core, sc)]);
  }
  emit({ type: 'task', pid, threads: threads.length, vmas: vmas.length, fds: fdinfo?.length ?? 0 });
  return { written };
}

/** Whether a run starts in [start, end): runs are sorted by address (binary search, not a scan per VMA). */
function hasRunIn(runs: ReadonlyArray<{ vaddr: bigint }>, start: bigint, end: bigint): boolean {
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid]!.vaddr < start) lo = mid + 1;
    else hi = mid;
  }
  return lo < runs.length && runs[lo]!.vaddr < end;
}

/** Adds PROT_READ to VMAs whose pages must be read (and takes it away again afterwards). */
async function setProt(scratch: Scratch, pid: number, vmas: ReturnType<typeof collectVmas>, readable: boolean): Promise<void> {
  if (!vmas.length) return;
  await scratch.run(pid, vmas.map((v) => ({ nr: NR.mprotect, args: [v.start, v.end - v.start, (v.entry.prot as number) | (readable ? 1 : 0), 0, 0, 0] })));
}

/** How long a dump that killed its tree waits for the tree's PIDs to be free. */
const REAP_WAIT_MS = 3000;

/**
 * Waits, at most `ms`, until the killed tasks' PIDs are free: their parents (init, for a tree
 * run from a shell and left) reap them on their own time, and a restore right after the dump
 * needs those PIDs. A parent that does not reap is no failure of the dump.
 */
async function untilReaped(pids: readonly number[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (const pid of pids) while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await sleep(10);
}

function inventoryEntry(rootIds: Entry, tcpClose: boolean): Entry {
  return {
    ...(tcpClose ? { tcp_close: true } : {}),
    img_version: 2,
    fdinfo_per_id: true,
    root_ids: rootIds,
    ns_per_id: true,
    root_cg_set: 1,
    lsmtype: 0, // NO_LSM
    network_lock_method: 0,
    plugins_entry: {},
    dump_criu_run_id: randomUUID(),
  };
}

/** The checkpoint `prevImagesDir` names (relative to the images directory, as criu takes it). */
function parentCheckpoint(imagesDir: string, prevImagesDir: string): Checkpoint {
  const dir = isAbsolute(prevImagesDir) ? prevImagesDir : join(imagesDir, prevImagesDir);
  let checkpoint: Checkpoint;
  try {
    checkpoint = openCheckpoint(dir, { validate: false });
  } catch (err) {
    throw new UsageError(`--prev-images-dir ${prevImagesDir}: ${(err as Error).message}`);
  }
  if (![...checkpoint.imageFiles.keys()].some((name) => name.startsWith('pagemap-'))) throw new UsageError(`--prev-images-dir ${prevImagesDir}: ${dir} holds no pagemap images (not a checkpoint)`);
  return checkpoint;
}

/**
 * Where the parent checkpoint keeps task `pid`'s pages (its pages file's PRESENT runs and what
 * its own parents keep), each file open for the comparison; undefined when it has no such task.
 */
function openParentPages(parent: Checkpoint, pid: number): (ParentPages & { close(): void }) | undefined {
  if (!parent.has(`pagemap-${pid}.img`)) return undefined;
  const pagemap = readPagemap(parent, pid);
  const fds = new Map<string, number>();
  const fdOf = (path: string) => {
    let fd = fds.get(path);
    if (fd === undefined) fds.set(path, (fd = openSync(path, 'r')));
    return fd;
  };
  const close = () => fds.forEach((fd) => closeSync(fd));
  try {
    const page = BigInt(PAGE_SIZE);
    const pieces = pageSources(parent, pagemap).map(({ pagesPath, run }) => ({ vaddr: run.vaddr, end: run.vaddr + BigInt(run.nrPages) * page, fd: fdOf(pagesPath), offset: run.pagesOffset }));
    return { pieces, close };
  } catch (err) {
    close();
    throw err;
  }
}
