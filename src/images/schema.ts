// The table of CRIU image kinds: file name pattern, head magic, the image's own magic
// (CRIU's magic.h), the protobuf message of its entries and any raw payload that
// follows an entry. Readers and writers look kinds up here; nothing else hard-codes them.
import { decodeEntry, type Entry } from './codec.js';

export type { Entry } from './codec.js';

export const COMMON_MAGIC = 0x54564319;
export const SERVICE_MAGIC = 0x55105940;

/** none = inventory (own magic only); raw = no magic at all (pages-N.img and ip-tool dumps). */
export type HeadKind = 'common' | 'service' | 'none' | 'raw';

export interface ImageKind {
  magicName: string;
  magic: number;
  head: HeadKind;
  message: string;
  firstMessage?: string;
  /** Raw bytes that follow `entry` (`following`: the rest of the file, or the payload given to a writer). */
  payloadBytes?(entry: Entry, following: Uint8Array): number;
  filePattern: RegExp;
  /** Set for kinds crr recognises but cannot decode (raw tool dumps, tarballs). */
  unsupported?: string;
}

function num(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0;
}

/**
 * An ipc_msg_entry is followed by its qnum messages, each a u32 length, an ipc_msg of that length
 * and msize bytes padded to 8: their bytes in all, or NaN where `following` is too short.
 */
function queuedMessagesBytes(qnum: number, following: Uint8Array): number {
  let at = 0;
  for (let i = 0; i < qnum; i++) {
    if (following.length - at < 4) return NaN;
    const length = following[at]! | (following[at + 1]! << 8) | (following[at + 2]! << 16) | (following[at + 3]! << 24);
    if (length < 0 || length > following.length - at - 4) return NaN;
    let msize: number;
    try {
      msize = num(decodeEntry('ipc_msg', following.subarray(at + 4, at + 4 + length))['msize']);
    } catch {
      return NaN;
    }
    at += 4 + length + roundUp(msize, 8);
  }
  return at;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

const ID = '\\d+';
const HEX = '[0-9a-f]+';

function kind(
  magicName: string,
  magic: number,
  message: string,
  file: string,
  extra: Partial<Omit<ImageKind, 'magicName' | 'magic' | 'message' | 'filePattern'>> = {},
): ImageKind {
  const filePattern = new RegExp(`^${file.replace(/\./g, '\\.')}$`);
  return { magicName, magic, head: 'common', message, filePattern, ...extra };
}

const pipeData = (e: Entry): number => num(e.bytes);

function raw(magicName: string, file: string, what: string): ImageKind {
  return kind(magicName, 0, '', file, { head: 'raw', unsupported: `${what}, not protobuf entries` });
}

export const IMAGE_KINDS: readonly ImageKind[] = Object.freeze([
  kind('INVENTORY', 0x58313116, 'inventory_entry', 'inventory.img', { head: 'none' }),
  kind('PSTREE', 0x50273030, 'pstree_entry', 'pstree.img'),
  kind('CORE', 0x55053847, 'core_entry', `core-${ID}.img`),
  kind('IDS', 0x54432030, 'task_kobj_ids_entry', `ids-${ID}.img`),
  kind('MM', 0x57492820, 'mm_entry', `mm-${ID}.img`),
  kind('VMAS', 0x54123737, 'vma_entry', `vmas-${ID}.img`),
  // pagemap-shmem-N and pagemap-secretmem-N share PAGEMAP's magic and layout
  kind('PAGEMAP', 0x56084025, 'pagemap_entry', `pagemap-(?:shmem-|secretmem-)?${ID}.img`, { firstMessage: 'pagemap_head' }),
  kind('PAGES', 0, '', `pages-(?:shmem-)?${ID}.img`, { head: 'raw' }),
  kind('FDINFO', 0x56213732, 'fdinfo_entry', `fdinfo-${ID}.img`),
  kind('FILES', 0x56303138, 'file_entry', 'files.img'),
  kind('FS', 0x51403912, 'fs_entry', `fs-${ID}.img`),
  kind('REG_FILES', 0x50363636, 'reg_file_entry', 'reg-files.img'),
  kind('EXT_FILES', 0x59255641, 'ext_file_entry', 'ext-files.img'),
  kind('NS_FILES', 0x61394011, 'ns_file_entry', 'ns-files.img'),
  kind('EVENTFD_FILE', 0x44523722, 'eventfd_file_entry', 'eventfd.img'),
  kind('EVENTPOLL_FILE', 0x45023858, 'eventpoll_file_entry', 'eventpoll.img'),
  kind('EVENTPOLL_TFD', 0x44433746, 'eventpoll_tfd_entry', 'eventpoll-tfd.img'),
  kind('SIGNALFD', 0x57323820, 'signalfd_entry', 'signalfd.img'),
  kind('TIMERFD', 0x50493712, 'timerfd_entry', 'timerfd.img'),
  kind('INOTIFY_FILE', 0x48424431, 'inotify_file_entry', 'inotify.img'),
  kind('INOTIFY_WD', 0x54562009, 'inotify_wd_entry', 'inotify-wd.img'),
  kind('FANOTIFY_FILE', 0x55096122, 'fanotify_file_entry', 'fanotify.img'),
  kind('FANOTIFY_MARK', 0x56506035, 'fanotify_mark_entry', 'fanotify-mark.img'),
  kind('PIPES', 0x56513555, 'pipe_entry', 'pipes.img'),
  kind('PIPES_DATA', 0x56453709, 'pipe_data_entry', 'pipes-data.img', { payloadBytes: pipeData }),
  kind('FIFO', 0x58364939, 'fifo_entry', 'fifo.img'),
  kind('FIFO_DATA', 0x59333054, 'pipe_data_entry', 'fifo-data.img', { payloadBytes: pipeData }),
  kind('UNIXSK', 0x54373943, 'unix_sk_entry', 'unixsk.img'),
  kind('INETSK', 0x56443851, 'inet_sk_entry', 'inetsk.img'),
  kind('PACKETSK', 0x60454618, 'packet_sock_entry', 'packetsk.img'),
  kind('NETLINK_SK', 0x58005614, 'netlink_sk_entry', 'netlinksk.img'),
  kind('SK_QUEUES', 0x56264026, 'sk_packet_entry', 'sk-queues.img', { payloadBytes: (e) => num(e.length) }),
  kind('TCP_STREAM', 0x51465506, 'tcp_stream_entry', `tcp-stream-${HEX}.img`, {
    payloadBytes: (e) => num(e.inq_len) + num(e.outq_len),
  }),
  kind('SIGACT', 0x55344201, 'sa_entry', `sigacts-${ID}.img`),
  kind('ITIMERS', 0x57464056, 'itimer_entry', `itimers-${ID}.img`),
  kind('POSIX_TIMERS', 0x52603957, 'posix_timer_entry', `posix-timers-${ID}.img`),
  kind('RLIMIT', 0x57113925, 'rlimit_entry', `rlimit-${ID}.img`),
  kind('CREDS', 0x54023547, 'creds_entry', `creds-${ID}.img`),
  kind('SIGNAL', 0x59255647, 'signal_queue_entry', `signal-[sp]-${ID}.img`),
  kind('UTSNS', 0x54473203, 'utsns_entry', `utsns-${ID}.img`),
  kind('IPC_VAR', 0x53115007, 'ipc_var_entry', `ipcns-var-${ID}.img`),
  kind('IPCNS_SHM', 0x46283044, 'ipc_shm_entry', `ipcns-shm-${ID}.img`, { payloadBytes: (e) => roundUp(num(e.size), 4) }),
  kind('IPCNS_MSG', 0x55453737, 'ipc_msg_entry', `ipcns-msg-${ID}.img`, { payloadBytes: (e, following) => queuedMessagesBytes(num(e.qnum), following) }),
  kind('IPCNS_SEM', 0x59573019, 'ipc_sem_entry', `ipcns-sem-${ID}.img`, { payloadBytes: (e) => roundUp(num(e.nsems) * 2, 8) }),
  kind('REMAP_FPATH', 0x59133954, 'remap_file_path_entry', 'remap-fpath.img'),
  kind('GHOST_FILE', 0x52583605, 'ghost_chunk_entry', `ghost-file-${HEX}.img`, {
    firstMessage: 'ghost_file_entry',
    // the head is followed by the whole file unless it is chunked; each chunk by its bytes
    payloadBytes: (e) => ('len' in e ? num(e.len) : e.chunks ? 0 : num(e.size)),
  }),
  kind('MEMFD_INODE', 0x48453499, 'memfd_inode_entry', 'memfd.img'),
  kind('MNTS', 0x55563928, 'mnt_entry', `mountpoints-${ID}.img`),
  kind('NETDEV', 0x57373951, 'net_device_entry', `netdev-${ID}.img`),
  kind('NETNS', 0x55933752, 'netns_entry', `netns-${ID}.img`),
  kind('TTY_FILES', 0x59433025, 'tty_file_entry', 'tty.img'),
  kind('TTY_INFO', 0x59453036, 'tty_info_entry', 'tty-info.img'),
  kind('TTY_DATA', 0x59413026, 'tty_data_entry', 'tty-data.img'),
  kind('FILE_LOCKS', 0x54323616, 'file_lock_entry', 'filelocks.img'),
  kind('TUNFILE', 0x57143751, 'tunfile_entry', 'tunfile.img'),
  kind('CGROUP', 0x59383330, 'cgroup_entry', 'cgroup.img'),
  kind('CPUINFO', 0x61404013, 'cpuinfo_entry', 'cpuinfo.img'),
  kind('SECCOMP', 0x64413049, 'seccomp_entry', 'seccomp.img'),
  kind('USERNS', 0x55474906, 'userns_entry', `userns-${ID}.img`),
  kind('BINFMT_MISC', 0x67343323, 'binfmt_misc_entry', `binfmt-misc(?:-${ID})?.img`),
  kind('AUTOFS', 0x49353943, 'autofs_entry', `autofs-${ID}.img`),
  kind('TIMENS', 0x43114433, 'timens_entry', `timens-${ID}.img`),
  kind('PIDNS', 0x61157326, 'pidns_entry', `pidns-${ID}.img`),
  kind('BPFMAP_FILE', 0x57506142, 'bpfmap_file_entry', 'bpfmap-file.img'),
  kind('BPFMAP_DATA', 0x64324033, 'bpfmap_data_entry', 'bpfmap-data.img', {
    payloadBytes: (e) => num(e.keys_bytes) + num(e.values_bytes),
  }),
  kind('APPARMOR', 0x59423047, 'apparmor_entry', 'apparmor.img'),
  kind('STATS', 0x57093306, 'stats_entry', 'stats-(?:dump|restore)', { head: 'service' }),
  kind('IRMAP_CACHE', 0x57004059, 'irmap_cache_entry', 'irmap-cache', { head: 'service' }),
  raw('IFADDR', `ifaddr-${ID}.img`, '`ip addr save` output'),
  raw('ROUTE', `route-${ID}.img`, '`ip route save` output'),
  raw('ROUTE6', `route6-${ID}.img`, '`ip -6 route save` output'),
  raw('RULE', `rule-${ID}.img`, '`ip rule save` output'),
  raw('IPTABLES', `iptables-${ID}.img`, 'iptables-save output'),
  raw('IP6TABLES', `ip6tables-${ID}.img`, 'ip6tables-save output'),
  raw('NFTABLES', `nftables-${ID}.img`, 'nft ruleset output'),
  raw('NETNF_CT', `netns-ct-${ID}.img`, 'conntrack dump'),
  raw('NETNF_EXP', `netns-exp-${ID}.img`, 'conntrack expectations dump'),
  raw('TMPFS_IMG', `tmpfs-${ID}.tar.gz.img`, 'a tar archive'),
  raw('TMPFS_DEV', `tmpfs-dev-${ID}.tar.gz.img`, 'a tar archive'),
]);

const byName = new Map(IMAGE_KINDS.map((k) => [k.magicName, k]));
// Only kinds with a magic of their own can be found by it; raw ones all share 0.
const byMagic = new Map(IMAGE_KINDS.filter((k) => k.head !== 'raw').map((k) => [k.magic, k]));

export function imageKindForFile(basename: string): ImageKind | undefined {
  return IMAGE_KINDS.find((k) => k.filePattern.test(basename));
}

export function imageKindByMagic(magic: number): ImageKind | undefined {
  return byMagic.get(magic >>> 0);
}

export function imageKindByName(magicName: string): ImageKind | undefined {
  return byName.get(magicName);
}
