// TCP and UDP sockets over IPv4 and IPv6 (src/dump/fd-inetsk.ts, src/resources/inetsk.ts): the
// sock_diag parser against the kernel's own answer, the helper ops a socket is made with, and the
// inetsk program (listeners, bound, unbound and connected UDP, an unbound TCP socket) dumped and
// restored: same fds, addresses, ports and options, and the listeners accept, the UDP sockets talk;
// then a prefork server's shape (one listener held by a parent and its child) and an epoll server
// blocked in epoll_wait on its listener, which must answer a client after the restore; connections
// (--tcp-established), and datagrams queued in UDP sockets.
import t from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { native } from '../src/actors/native.js';
import { parseInetDiag, unsupportedInet } from '../src/dump/fd-inetsk.js';
import { dump } from '../src/dump/index.js';
import { StageError } from '../src/errors.js';
import { restore } from '../src/restore/index.js';
import { describeFile } from '../src/cli/commands/show.js';
import { openCheckpoint } from '../src/images/index.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, sockaddrOf, socketText } from '../src/images/inet-address.js';
import { inetOps, repairOffOps, unsupportedInetImage } from '../src/resources/inetsk.js';
import { destinationFor, endpointOf, tcpPacket, TCP_FLAGS, udpPacket } from '../src/resources/raw-packets.js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDetached } from './lib/detached.js';
import { dumpProgram, restoreProgram, roundTrip } from './lib/program-roundtrip.js';
import { killTree, processTree, requestCheck, startProgram, type Running } from './lib/programs.js';
import { startPython, type PythonProgram } from './lib/python-program.js';
import { makeNetns } from './lib/netns.js';
import { spawnSync } from 'node:child_process';

t.test('parseInetDiag reads the kernel answer: a listener of this process with its port and backlog', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 9 }, resolve));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const found = parseInetDiag(native.inetDiag(AF_INET, IPPROTO_TCP), IPPROTO_TCP).find((d) => d.srcPort === port);
  t.ok(found, `port ${port} listed`);
  t.match(found, { family: AF_INET, state: 10, wqueue: 9, rqueue: 0, src: [0x0100007f] });
  t.ok(found!.ino > 0, 'with its inode');
  t.equal(unsupportedInet(found!), undefined, 'an idle listener can be dumped');
  t.match(unsupportedInet({ ...found!, rqueue: 2 }), /2 connection\(s\) not yet accepted \(dump with --skip-in-flight/);
  t.equal(unsupportedInet({ ...found!, rqueue: 2 }, { skipInFlight: true }), undefined, 'dumped without them with --skip-in-flight');
  t.match(unsupportedInet({ ...found!, state: 1 }), /TCP connection in state ESTABLISHED \(dump with --tcp-established/);
  t.equal(unsupportedInet({ ...found!, state: 1, rqueue: 0 }, { tcpEstablished: true }), undefined, 'saved with --tcp-established');
  t.match(unsupportedInet({ ...found!, state: 3 }, { tcpEstablished: true }), /a TCP connection in state SYN_RECV \(only connecting, established and half-closed connections can be saved\)/);
  t.equal(unsupportedInet({ ...found!, state: 2, rqueue: 0 }, { tcpEstablished: true }), undefined, 'SYN_SENT (connecting) is saved with --tcp-established');
  t.equal(unsupportedInet({ ...found!, state: 8, rqueue: 0 }, { tcpEstablished: true }), undefined, 'CLOSE_WAIT (half-closed) is saved with --tcp-established');
  t.match(unsupportedInet({ ...found!, state: 5, rqueue: 0 }), /state FIN_WAIT2 \(dump with --tcp-established/, 'and needs it');
  t.match(unsupportedInet({ ...found!, family: 10, src: [0x000080fe, 0, 0, 0x01000000] }), /link-local IPv6/);
  t.equal(unsupportedInet({ ...found!, family: 10, src: [0, 0, 0, 0x01000000] }), undefined, '::1 is fine');
});

t.test('sockaddrOf and the ops a socket is made with', async (t) => {
  t.same([...sockaddrOf(2, 8080, [0x0100007f])], [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], 'sockaddr_in, port in network order');
  const v6 = sockaddrOf(10, 443, [0, 0, 0, 0x01000000]);
  t.equal(v6.length, 28);
  t.same([...v6.subarray(8, 24)], [...Buffer.alloc(15), 1], '::1');
  const listener = { family: 10, type: 1, proto: 6, state: 10, src_port: 443, src_addr: [0, 0, 0, 0x01000000], backlog: 5, flags: 0o4002, v6only: true, opts: { reuseaddr: true } };
  const ops = inetOps(listener, 21, false);
  t.same(ops.map((o) => o.op), ['socket', 'setsockopt', 'setsockopt', 'bind', 'listen', 'fcntl'], 'v6only and options before bind, listen after');
  t.match(ops[0], { domain: 10, type: 1, protocol: 6, fd: 21 });
  t.match(ops[1], { level: 41, name: 26, value: 1 });
  t.match(ops[5], { arg: 0o4000 }, 'O_NONBLOCK kept, the access mode is not an F_SETFL flag');
  const connected = { family: 2, type: 2, proto: 17, state: 1, src_port: 5000, src_addr: [0x0100007f], dst_port: 6000, dst_addr: [0x0100007f], flags: 2 };
  t.same(inetOps(connected, 24, true).map((o) => o.op), ['socket', 'bind', 'connect', 'fcntl']);
  t.equal(inetOps(connected, 24, true)[0]!['type'], 2 | 0o2000000, 'SOCK_CLOEXEC for a close-on-exec fd');
  const plain = { family: 2, type: 1, proto: 6, state: 10, src_port: 80, src_addr: [0], backlog: 1, flags: 2 };
  t.same(inetOps(plain, 30, false).map((o) => (o.op === 'setsockopt' ? `reuseaddr=${String(o['value'])}` : o.op)), ['socket', 'reuseaddr=1', 'bind', 'listen', 'reuseaddr=0', 'fcntl'],
    'a listener without SO_REUSEADDR borrows it for its bind (its accepted connections may hold the port already)');
  const unbound = { family: 2, type: 1, proto: 6, state: 7, src_port: 0, src_addr: [0], flags: 2 };
  t.same(inetOps(unbound, 25, false).map((o) => o.op), ['socket', 'fcntl'], 'never bound: not bound now');
  t.match(unsupportedInetImage({ ...listener, state: 3 }), /TCP socket in state 3/, 'SYN_RECV is not restored');
  t.equal(unsupportedInetImage({ ...listener, state: 8 }), undefined, 'CLOSE_WAIT is, from its tcp-stream image');
  t.equal(unsupportedInetImage({ ...listener, state: 1 }), undefined, 'an established connection is, from its tcp-stream image');
  t.throws(() => inetOps({ ...listener, state: 1 }, 4, false), /no tcp-stream image/);
  t.equal(unsupportedInetImage(connected), undefined);
  t.equal(socketText(listener), 'TCP [::1]:443 (LISTEN)');
  t.equal(describeFile('INETSK', { id: 1, type: 'INETSK', isk: { ...listener, ino: 77 } }), 'socket:[77] TCP [::1]:443 (LISTEN)', 'crr show DIR names it so');
  t.equal(socketText(connected), 'UDP 127.0.0.1:5000 -> 127.0.0.1:6000');
});

t.test('an established connection is made in repair mode, its queues filled, repair left on', async (t) => {
  const conn = { family: 2, type: 1, proto: 6, state: 1, src_port: 5000, src_addr: [0x0100007f], dst_port: 6000, dst_addr: [0x0100007f], flags: 2 };
  const entry = { inq_len: 3, inq_seq: 1003, outq_len: 5, outq_seq: 0xfffffffe, unsq_len: 2, opt_mask: 7, snd_wscale: 7, rcv_wscale: 9, mss_clamp: 65495, timestamp: 0x90000000, snd_wl1: 1, snd_wnd: 2, max_window: 3, rcv_wnd: 4, rcv_wup: 5, nodelay: true };
  const stream = { entry, payload: Buffer.from('abcdefgh') };
  const ops = inetOps(conn, 4, false, stream);
  const names = ops.map((o) => (o.op === 'setsockopt' ? `tcp${String(o['name'])}` : o.op));
  t.same(names, ['socket', 'tcp19', 'bind', 'tcp20', 'tcp21', 'tcp20', 'tcp21', 'tcp2', 'connect', 'tcp22', 'tcp24', 'tcp20', 'send', 'tcp20', 'send', 'tcp29', 'fcntl'],
    'repair on, bind, queue sequences, TCP_MAXSEG, connect, options, timestamp, receive queue, sent part of the send queue, windows');
  t.equal(ops[7]!['value'], 32767, 'the mss clamp, as far as TCP_MAXSEG takes it');
  t.same(ops[4]!['value'], 1000, 'the receive queue starts at inq_seq - inq_len');
  t.same([...(ops[6]!['bytes'] as Buffer)], [0xf9, 0xff, 0xff, 0xff], 'u32 sequence numbers wrap and go as bytes');
  t.same([...(ops[9]!['bytes'] as Buffer)], [2, 0, 0, 0, 0xd7, 0xff, 0, 0, 3, 0, 0, 0, 7, 0, 9, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0], 'MSS, window scales, SACK, timestamps');
  t.equal(String(ops[12]!['data']), 'abc');
  t.equal(String(ops[14]!['data']), 'def', 'the sent, unacknowledged part');
  t.same(inetOps(conn, 4, false, undefined, true).map((o) => o.op), ['socket', 'fcntl'], 'closed (--tcp-close): a socket neither bound nor connected, no stream needed');
  const reusing = { ...conn, opts: { reuseaddr: true } };
  t.same(inetOps(reusing, 4, false, stream).slice(0, 4).map((o) => `${o.op}${o['name'] ?? ''}`), ['socket', 'setsockopt2', 'setsockopt19', 'bind'],
    'SO_REUSEADDR before repair mode, which it would turn from forced reuse into plain reuse');
  t.same(repairOffOps({ fd: 4, isk: reusing, stream }, 40).slice(0, 2), [{ op: 'setsockopt', fd: 4, level: 6, name: 19, value: 0 }, { op: 'setsockopt', fd: 4, level: 1, name: 2, value: 1 }],
    'leaving repair mode clears SO_REUSEADDR: it is set again');
  const off = repairOffOps({ fd: 4, isk: conn, stream }, 40);
  t.same(off.map((o) => o.op), ['setsockopt', 'send', 'setsockopt'], 'repair off, the unsent bytes, TCP_NODELAY');
  t.same(off[0], { op: 'setsockopt', fd: 4, level: 6, name: 19, value: 0 });
  t.equal(String(off[1]!['data']), 'gh');
});

t.test('a half-closed connection: sequences without the FINs, which come back as a FIN segment from the peer and a shutdown', async (t) => {
  const conn = { family: 2, type: 1, proto: 6, src_port: 5000, src_addr: [0x0100007f], dst_port: 6000, dst_addr: [0x0200007f], flags: 2 };
  const entry = { inq_len: 2, inq_seq: 1003, outq_len: 0, outq_seq: 2001, unsq_len: 0, opt_mask: 0, mss_clamp: 65495, snd_wl1: 1, snd_wnd: 4096, max_window: 3, rcv_wnd: 40, rcv_wup: 1000, snd_wscale: 2 };
  const stream = { entry, payload: Buffer.from('ab') };
  const ops = (state: number) => inetOps({ ...conn, state }, 4, false, stream);
  const seqs = (state: number) => ops(state).filter((o) => o['name'] === 21).map((o) => o['value']);
  t.same(seqs(1), [1001, 2001], 'established: inq_seq - inq_len, outq_seq - outq_len');
  t.same(seqs(8), [1000, 2001], "CLOSE_WAIT: the peer's FIN left out of inq_seq");
  t.same(seqs(5), [1001, 2000], 'FIN_WAIT2: ours left out of outq_seq');
  t.same(seqs(9), [1000, 2000], 'LAST_ACK: both');
  t.same(seqs(2), [1001, 2000], 'SYN_SENT: the send queue starts at its SYN, the initial sequence number');
  t.notOk(ops(2).some((o) => o.op === 'connect'), 'SYN_SENT: no connect while the tree is made');
  const synSent = repairOffOps({ fd: 4, isk: { ...conn, state: 2 }, stream }, 40);
  t.same(synSent.map((o) => o.op), ['setsockopt', 'fcntl', 'connect', 'fcntl'], 'SYN_SENT: repair off, a non-blocking connect, its own flags back');
  t.match(synSent[2], { in_progress: 1 });
  t.same([...(ops(8).find((o) => o['name'] === 29)!['bytes'] as Buffer)], [...Buffer.from(new Uint32Array([1, 4096, 3, 41, 999]).buffer)], "CLOSE_WAIT's window reaches back over the FIN to come");
  const closeWait = repairOffOps({ fd: 4, isk: { ...conn, state: 8 }, stream }, 40);
  t.same(closeWait.map((o) => o.op), ['socket', 'send', 'close', 'setsockopt'], "CLOSE_WAIT: the peer's FIN while repair is on, then repair off");
  t.match(closeWait[0], { domain: 2, protocol: 255, fd: 40 });
  const fin = closeWait[1]!['data'] as Buffer;
  t.same([...fin.subarray(12, 20)], [127, 0, 0, 2, 127, 0, 0, 1], 'from the peer to us');
  t.same([fin.readUInt16BE(20), fin.readUInt16BE(22), fin.readUInt32BE(24), fin.readUInt32BE(28), fin[33], fin.readUInt16BE(34)], [6000, 5000, 1002, 2001, 0x11, 1024], "ports, seq at our receive end, ack of all we sent, FIN|ACK, the peer's window unscaled");
  t.same(repairOffOps({ fd: 4, isk: { ...conn, state: 5 }, stream }, 40).map((o) => o.op), ['setsockopt', 'shutdown'], 'FIN_WAIT2: repair off, then our FIN by shutdown');
  t.same(repairOffOps({ fd: 4, isk: { ...conn, state: 9 }, stream }, 40).map((o) => o.op), ['socket', 'send', 'close', 'setsockopt', 'shutdown'], 'LAST_ACK: both');
});

t.test('an address still in use: the restore fails naming the socket and its address; the original runs on', async (t) => {
  const prog = await startProgram(t, 'inetsk');
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-inetsk-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await dump({ pid: prog.pid, imagesDir, leaveRunning: true });
  const err = await restore({ imagesDir, pidNamespace: true }).then(
    async (r) => {
      await r.kill();
      return undefined;
    },
    (e: unknown) => e,
  );
  t.type(err, StageError);
  t.match((err as Error).message, /resource inetsk, syscall bind \(EADDRINUSE\).*fd 20, TCP 127\.0\.0\.1:\d+ \(LISTEN\)/);
  t.same(await requestCheck(prog.pid, prog.resultFile), { pass: true, text: 'PASS' }, 'the original, left running, still holds its sockets');
});

t.test('the inetsk program round trip: same sockets at the same fds, and they work', async (t) => {
  const prog = await startProgram(t, 'inetsk');
  const rt = await roundTrip(t, prog);
  t.same(await rt.check(), { pass: true, text: 'PASS' });
});

t.test('a listener shared by a parent and its forked child comes back as one socket in both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-inetsk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const portFile = join(dir, 'port');
  const script = [
    'import os, socket, sys, time',
    'l = socket.socket()',
    'l.bind(("127.0.0.1", 0))',
    'l.listen(4)',
    'os.dup2(l.fileno(), 40)',
    'if os.fork() == 0:',
    '    time.sleep(1000)',
    'open(sys.argv[1], "w").write(str(l.getsockname()[1]))',
    'time.sleep(1000)',
  ].join('\n');
  const root = await startDetached(['/usr/bin/python3', '-c', script, portFile]);
  for (let i = 0; i < 250 && !(existsSync(portFile) && readFileSync(portFile, 'utf8')); i++) await sleep(20);
  const pids = processTree(root);
  t.teardown(() => killTree(pids));
  t.equal(pids.length, 2, 'a parent and its child');
  const port = Number(readFileSync(portFile, 'utf8'));
  const prog: Running = { pid: root, resultFile: join(dir, 'none'), dir, tree: () => pids };
  const rt = await restoreProgram(t, prog, await dumpProgram(t, prog));
  const hostPids = [...rt.result.hostPids.values()];
  t.equal(hostPids.length, 2);
  const links = hostPids.map((p) => readlinkSync(`/proc/${p}/fd/40`));
  t.match(links[0], /^socket:\[\d+\]$/);
  t.equal(links[1], links[0], 'fd 40 of both tasks is the same socket');
  await new Promise<void>((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port }, () => {
      c.destroy();
      resolve();
    });
    c.on('error', reject);
  });
  t.pass(`127.0.0.1:${port} accepts connections again`);
});

t.test('an epoll server blocked in epoll_wait on its listener answers a new client after the restore', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-inetsk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const portFile = join(dir, 'port');
  const script = [
    'import select, socket, sys',
    'l = socket.socket()',
    'l.bind(("127.0.0.1", 0))',
    'l.listen(4)',
    'l.setblocking(False)',
    'ep = select.epoll()',
    'ep.register(l.fileno(), select.EPOLLIN)',
    'open(sys.argv[1], "w").write(str(l.getsockname()[1]))',
    'while True:',
    '    for fd, events in ep.poll():',
    '        c, _ = l.accept()',
    '        c.sendall(b"hello from the restored server")',
    '        c.close()',
  ].join('\n');
  const root = await startDetached(['/usr/bin/python3', '-c', script, portFile]);
  t.teardown(() => killTree([root]));
  for (let i = 0; i < 250 && !(existsSync(portFile) && readFileSync(portFile, 'utf8')); i++) await sleep(20);
  const port = Number(readFileSync(portFile, 'utf8'));
  const prog: Running = { pid: root, resultFile: join(dir, 'none'), dir, tree: () => [root] };
  await restoreProgram(t, prog, await dumpProgram(t, prog));
  const answer = await new Promise<string>((resolve, reject) => {
    let got = '';
    const c = connect({ host: '127.0.0.1', port });
    c.setEncoding('utf8');
    c.on('data', (d) => (got += d));
    c.on('end', () => resolve(got));
    c.on('error', reject);
    c.setTimeout(10_000, () => reject(new Error('no answer in 10 s')));
  });
  t.equal(answer, 'hello from the restored server');
});

/** Python lines: a listener and a connection to it, client end `c`, server end `s`. */
const CONNECTION = [
  'l = socket.socket()',
  'l.bind(("127.0.0.1", 0))',
  'l.listen(1)',
  'c = socket.create_connection(l.getsockname())',
  's, _ = l.accept()',
  // The listener stays, above both ends: restored after the accepted end that shares its port.
  'os.dup2(l.fileno(), 30)',
  'l.close()',
];

/** Python lines: read(sock, n), n bytes or what comes before the end of the stream, 5 s at most. */
const READ = [
  'def read(sock, n):',
  '    sock.settimeout(5)',
  '    data = b""',
  '    while len(data) < n:',
  '        got = sock.recv(n - len(data))',
  '        if not got:',
  '            break',
  '        data += got',
  '    return data',
];

/** A python program holding both ends of a TCP connection, each with unread bytes from the other, and the listener (at fd 30). */
function startConnected(t: Tap.Test, extra: string[] = []): Promise<PythonProgram> {
  const setUp = [
    ...CONNECTION,
    'c.sendall(b"from client, unread")',
    's.sendall(b"from server, unread")',
    ...extra,
  ];
  const check = [
    ...READ,
    'got = [read(s, 19), read(c, 19)]',
    'c.sendall(b"after the restore")',
    'got.append(read(s, 17))',
    's.sendall(b"and back")',
    'got.append(read(c, 8))',
    // Segments as large as before the dump: a restored connection that sized them at 524 bytes is slow.
    'got.append(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) > 1000)',
    'open(result, "w").write(repr(got))',
  ];
  return startPython(t, ['socket'], setUp, check, 'connected, with bytes queued both ways');
}

const EXCHANGED = "[b'from client, unread', b'from server, unread', b'after the restore', b'and back', True]";

t.test('an established TCP connection (--tcp-established) comes back with its queued bytes and carries on', async (t) => {
  const { prog, go, result } = await startConnected(t);
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true });
  t.equal(readdirSync(imagesDir).filter((f) => f.startsWith('tcp-stream-')).length, 2, 'a tcp-stream image for each end');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), EXCHANGED);
});

t.test('an accepted connection with SO_REUSEADDR, its listener restored first and a TIME_WAIT on the port: it binds, and keeps SO_REUSEADDR', async (t) => {
  // The listener (low fd) is made before the accepted end that shares its port, and an earlier
  // connection the server closed first left a TIME_WAIT on that port: only the forced reuse of
  // repair mode lets the accepted end bind there.
  const setUp = [
    'l = socket.socket()',
    'l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    'l.bind(("127.0.0.1", 0))',
    'l.listen(2)',
    'old = socket.create_connection(l.getsockname())',
    'gone, _ = l.accept()',
    'gone.close()',
    'old.close()',
    'c = socket.create_connection(l.getsockname())',
    's, _ = l.accept()',
    'os.dup2(s.fileno(), 40)',
    's.close()',
    's = socket.socket(fileno=40)',
    'c.sendall(b"ping")',
  ];
  const check = [
    ...READ,
    'got = [read(s, 4)]',
    's.sendall(b"pong")',
    'got.append(read(c, 4))',
    'got.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)',
    'open(result, "w").write(repr(got))',
  ];
  const { prog, go, result } = await startPython(t, ['socket'], setUp, check, 'an accepted connection beside a TIME_WAIT on its port');
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true });
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[b'ping', b'pong', True]");
});

t.test('--tcp-close: connections dumped without their state come back closed; the listener works on', async (t) => {
  const check = [
    'import errno, select',
    'got = []',
    'for sock in (s, c):',
    '    try:',
    '        got.append(sock.recv(10))',
    '    except OSError as e:',
    '        got.append(errno.errorcode[e.errno])',
    'ep = select.epoll()',
    'ep.register(s.fileno(), select.EPOLLIN)',
    'got.append(bool(ep.poll(1)[0][1] & select.EPOLLHUP))',
    'l = socket.socket(fileno=30)',
    'n = socket.create_connection(l.getsockname())',
    'a, _ = l.accept()',
    'n.sendall(b"new")',
    'got.append(a.recv(3))',
    'open(result, "w").write(repr(got))',
  ];
  const { prog, go, result } = await startPython(t, ['socket'], [...CONNECTION, 'c.sendall(b"unread")'], check, 'a connection with bytes queued, and its listener');
  const imagesDir = await dumpProgram(t, prog, { tcpClose: true });
  t.same(readdirSync(imagesDir).filter((f) => f.startsWith('tcp-stream-')), [], 'no connection state is saved');
  t.equal(openCheckpoint(imagesDir).inventory['tcp_close'], true, "the inventory says so (CRIU's tcp_close)");
  await t.rejects(restore({ imagesDir, pidNamespace: true }), { stage: 'plan', message: /dumped with --tcp-close: restore it with --tcp-close/ }, 'a restore without --tcp-close is refused');
  await restoreProgram(t, prog, imagesDir, { tcpClose: true });
  go();
  t.equal(await result(), "['ENOTCONN', 'ENOTCONN', True, b'new']", 'both ends unconnected (a poll sees the hang-up); a new client is accepted');
});

t.test('dumped with --leave-running, the connection goes on in the original (repair mode is switched off)', async (t) => {
  const { prog, go, result } = await startConnected(t);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-inetsk-img-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await dump({ pid: prog.pid, imagesDir, tcpEstablished: true, leaveRunning: true });
  go();
  t.equal(await result(), EXCHANGED);
});

t.test('a connection to a client outside the tree survives the dump (closed without FIN or RST) and the restore', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-inetsk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.teardown(() => server.close());
  // The program in the tree is the client here; this test process is the peer outside the tree.
  const accepted = new Promise<import('node:net').Socket>((resolve) => server.once('connection', resolve));
  const script = [
    'import socket, sys',
    'c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))',
    'while True:',
    '    data = c.recv(100)',
    '    if not data:',
    '        break',
    '    c.sendall(b"echo: " + data)',
  ].join('\n');
  const root = await startDetached(['/usr/bin/python3', '-c', script, String((server.address() as AddressInfo).port)]);
  t.teardown(() => killTree([root]));
  const peer = await accepted;
  t.teardown(() => peer.destroy());
  let ended = false;
  peer.on('end', () => (ended = true));
  const echo = (text: string) =>
    new Promise<string>((resolve, reject) => {
      peer.once('data', (d) => resolve(String(d)));
      peer.once('error', reject);
      peer.write(text);
    });
  t.equal(await echo('one'), 'echo: one', 'the program echoes before the dump');
  const prog: Running = { pid: root, resultFile: join(dir, 'none'), dir, tree: () => [root] };
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true });
  await sleep(100);
  t.equal(ended, false, 'the killed program sent no FIN');
  await restoreProgram(t, prog, imagesDir);
  t.equal(await echo('two'), 'echo: two', 'the restored program echoes on the same connection');
});

t.test('a listener with a connection not yet accepted: refused, or dumped without it with skipInFlight (criu --skip-in-flight)', async (t) => {
  const setUp = [
    'l = socket.socket()',
    'l.bind(("127.0.0.1", 0))',
    'l.listen(4)',
    'open(result + ".port", "w").write(str(l.getsockname()[1]))',
  ];
  const check = ['c, _ = l.accept()', 'c.sendall(b"accepted")', 'open(result, "w").write("accepted")'];
  const { prog, go, result } = await startPython(t, ['socket'], setUp, check, 'listening');
  const port = Number(readFileSync(`${prog.resultFile}.port`, 'utf8'));
  const pending = connect(port, '127.0.0.1');
  t.teardown(() => pending.destroy());
  const reset = new Promise<string>((resolve) => {
    pending.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    pending.on('close', () => resolve('closed'));
  });
  await new Promise((resolve) => pending.once('connect', resolve));
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-inetsk-img-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: /a TCP listener with 1 connection\(s\) not yet accepted \(dump with --skip-in-flight/ }, 'refused without the option');
  t.ok(existsSync(`/proc/${prog.pid}`), 'the program runs on');
  const dumped = await dumpProgram(t, prog, { skipInFlight: true });
  t.equal(await reset, 'ECONNRESET', 'the pending client is reset when the dumped tree goes');
  await restoreProgram(t, prog, dumped);
  const client = connect(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const greeting = new Promise<string>((resolve) => client.once('data', (d) => resolve(String(d))));
  go();
  t.equal(await greeting, 'accepted', 'the restored listener accepts a new connection');
  t.equal(await result(), 'accepted');
});

t.test('a dump that fails after reading a connection in repair mode switches repair off: the connection goes on', async (t) => {
  // A vsock socket above the connection's fds: refused after the connection was read.
  const { prog, go, result } = await startConnected(t, ['n = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM, 0)', 'os.dup2(n.fileno(), 60)', 'n.close()']);
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-inetsk-img-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  const err = await dump({ pid: prog.pid, imagesDir, tcpEstablished: true }).catch((e: Error) => e);
  t.match(String(err), /fd 60 is a socket/, 'the dump failed on the vsock socket');
  go();
  t.equal(await result(), EXCHANGED);
});

t.test('datagrams queued in UDP sockets (IPv4, IPv6, dual-stack) come back in order, empty ones too, each from its sender', async (t) => {
  const setUp = [
    'def udp(addr, fd, family=socket.AF_INET):',
    '    s = socket.socket(family, socket.SOCK_DGRAM)',
    '    s.bind(addr)',
    '    os.dup2(s.fileno(), fd)',
    '    return socket.socket(fileno=fd)',
    'a = udp(("127.0.0.1", 0), 20)',
    'w = udp(("0.0.0.0", 0), 21)',
    'b = udp(("127.0.0.1", 0), 22)',
    'c = udp(("127.0.0.1", 0), 23)',
    'a6 = udp(("::1", 0), 24, socket.AF_INET6)',
    'b6 = udp(("::1", 0), 25, socket.AF_INET6)',
    'd = udp(("::", 0), 26, socket.AF_INET6)',
    'c.connect(b.getsockname())',
    'for m in [b"one", b"", b"three"]: b.sendto(m, a.getsockname())',
    'c.send(b"from the connected one")',
    'b.sendto(b"to the wildcard", ("127.0.0.1", w.getsockname()[1]))',
    'b.sendto(b"to the connected one", c.getsockname())',
    'for m in [b"six", b""]: b6.sendto(m, a6.getsockname())',
    'b.sendto(b"over IPv4", ("127.0.0.1", d.getsockname()[1]))',
    'b6.sendto(b"over IPv6", ("::1", d.getsockname()[1]))',
  ];
  const check = [
    'def name(frm):',
    '    for n, s in (("b", b), ("c", c), ("b6", b6)):',
    '        host, port = s.getsockname()[:2]',
    '        if frm[1] == port and frm[0] in (host, "::ffff:" + host):',
    '            return n',
    '    return frm',
    'def take(s):',
    '    s.settimeout(5)',
    '    data, frm = s.recvfrom(100)',
    '    return (data, name(frm))',
    'got = [take(a) for _ in range(3)] + [take(b), take(w), take(c), take(a6), take(a6), take(d), take(d)]',
    'a.setblocking(False)',
    'try:',
    '    got.append(a.recv(100))',
    'except BlockingIOError:',
    '    got.append("nothing more")',
    'b.sendto(b"after", a.getsockname())',
    'got.append(take(a))',
    'open(result, "w").write(repr(got))',
  ];
  const { prog, go, result } = await startPython(t, ['socket'], setUp, check, 'UDP sockets with datagrams queued');
  const imagesDir = await dumpProgram(t, prog);
  await restoreProgram(t, prog, imagesDir);
  go();
  const expected = [
    "(b'one', 'b')", "(b'', 'b')", "(b'three', 'b')", "(b'from the connected one', 'c')", "(b'to the wildcard', 'b')", "(b'to the connected one', 'b')",
    "(b'six', 'b6')", "(b'', 'b6')", "(b'over IPv4', 'b')", "(b'over IPv6', 'b6')", "'nothing more'", "(b'after', 'b')",
  ];
  t.equal(await result(), `[${expected.join(', ')}]`);
});

/** The one's-complement sum over an IP packet's pseudo-header and segment, its checksum included: 0xffff when the checksum is right. */
function checksumSum(packet: Buffer): number {
  const v6 = packet[0]! >> 4 === 6;
  const header = v6 ? 40 : 20;
  const addresses = v6 ? packet.subarray(8, 40) : packet.subarray(12, 20);
  const segment = packet.subarray(header);
  let sum = (v6 ? packet[6]! : packet[9]!) + segment.length;
  for (const part of [addresses, segment]) for (let i = 0; i < part.length; i += 2) sum += (part[i]! << 8) | (part[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

t.test('the raw packets a peer seems to send: UDP datagrams and TCP segments, IPv4 and IPv6, IPv4-mapped senders as IPv4', async (t) => {
  const sender4 = endpointOf(sockaddrOf(AF_INET, 4000, [0x0100007f]));
  t.same(sender4, { family: AF_INET, addr: Buffer.from([127, 0, 0, 1]), port: 4000 });
  const mapped = Buffer.alloc(28);
  mapped.writeUInt16LE(AF_INET6, 0);
  mapped.writeUInt16BE(4001, 2);
  Buffer.from([0xff, 0xff, 10, 0, 0, 7]).copy(mapped, 18);
  t.same(endpointOf(mapped), { family: AF_INET, addr: Buffer.from([10, 0, 0, 7]), port: 4001 }, 'a dual-stack socket\'s IPv4 peer travels as IPv4');
  const wildcard6 = endpointOf(sockaddrOf(AF_INET6, 5000, [0, 0, 0, 0]));
  t.same(destinationFor(wildcard6, AF_INET), { family: AF_INET, addr: Buffer.from([127, 0, 0, 1]), port: 5000 }, 'a wildcard socket gets it on loopback');
  const v4 = udpPacket(sender4, destinationFor(endpointOf(sockaddrOf(AF_INET, 5000, [0x0200007f])), AF_INET), Buffer.from('hi'));
  t.same([...v4.subarray(0, 26), ...v4.subarray(28)], [0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2, 0x0f, 0xa0, 0x13, 0x88, 0, 10, 0x68, 0x69], 'IPv4 and UDP headers');
  t.equal(checksumSum(v4), 0xffff, 'the UDP checksum verifies');
  const loop6 = endpointOf(sockaddrOf(AF_INET6, 5000, [0, 0, 0, 0x01000000]));
  const v6 = udpPacket({ ...loop6, port: 4000 }, loop6, Buffer.from('hi'));
  t.equal(v6.length, 40 + 8 + 2);
  t.same([...v6.subarray(0, 8)], [0x60, 0, 0, 0, 0, 10, 17, 64], 'version, payload length, next header, hop limit');
  t.equal(checksumSum(v6), 0xffff, 'the IPv6 UDP checksum verifies');
  const fin = tcpPacket(sender4, { ...sender4, port: 5000 }, { seq: 0xfffffffe, ack: 7, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK, window: 70000 });
  t.same([...fin.subarray(20, 36)], [0x0f, 0xa0, 0x13, 0x88, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 7, 0x50, 0x11, 0xff, 0xff], 'ports, sequence, ack, header length, FIN|ACK, the window as far as 16 bits go');
  t.equal(checksumSum(fin), 0xffff, 'the TCP checksum verifies');
  t.equal(checksumSum(tcpPacket({ ...loop6, port: 1 }, loop6, { seq: 1, ack: 2, flags: TCP_FLAGS.ACK, window: 3 })), 0xffff, 'over IPv6 too');
});

t.test('a half-closed connection (--tcp-established) comes back half-closed: FIN_WAIT2 and CLOSE_WAIT ends, their bytes, the EOF', async (t) => {
  const setUp = [
    ...CONNECTION,
    'c.sendall(b"to server")',
    'c.shutdown(socket.SHUT_WR)', // c: FIN_WAIT2 once s acknowledges; s: CLOSE_WAIT, with the bytes and the FIN unread
    's.sendall(b"to client")',
    'time.sleep(0.2)',
    'state = lambda k: k.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]',
    'before = [state(c), state(s)]',
  ];
  const check = [
    ...READ,
    'got = [before, [state(c), state(s)], read(s, 9), s.recv(10), read(c, 9)]',
    'try:',
    '    c.send(b"x")',
    '    got.append("sent after shutdown")',
    'except BrokenPipeError:',
    '    got.append("EPIPE")',
    's.sendall(b"more")',
    'got.append(read(c, 4))',
    's.close()',
    'got.append(c.recv(10))',
    'open(result, "w").write(repr(got))',
  ];
  const { prog, go, result } = await startPython(t, ['socket'], setUp, check, 'a connection half-closed by the client');
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true });
  const states = [...openCheckpoint(imagesDir).files().values()].filter((f) => f['isk']).map((f) => Number((f['isk'] as Record<string, unknown>)['state'])).sort((a, b) => a - b);
  t.same(states, [5, 8, 10], 'dumped: FIN_WAIT2, CLOSE_WAIT and the listener');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[[5, 8], [5, 8], b'to server', b'', b'to client', 'EPIPE', b'more', b'']", 'same states, the bytes, EOF at the server, EPIPE at the client, then the server closes');
});

t.test("a connection whose peer outside the tree had closed its side comes back with that FIN: the program reads EOF and can still answer", async (t) => {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.teardown(() => server.close());
  const accepted = new Promise<import('node:net').Socket>((resolve) => server.once('connection', resolve));
  const port = (server.address() as AddressInfo).port;
  const setUp = [`c = socket.create_connection(("127.0.0.1", ${port}))`, 'c.settimeout(5)'];
  const check = ['got = [c.recv(100)]', 'c.sendall(b"bye after EOF")', 'c.close()', 'open(result, "w").write(repr(got))'];
  const { prog, go, result } = await startPython(t, ['socket'], setUp, check, 'connected to this test process');
  const peer = await accepted;
  t.teardown(() => peer.destroy());
  let heard = '';
  peer.on('data', (d) => (heard += String(d)));
  const ended = new Promise<void>((resolve) => peer.once('end', resolve));
  peer.end(); // our FIN: the program's side goes to CLOSE_WAIT, the EOF not yet read
  await sleep(200);
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true });
  t.ok([...openCheckpoint(imagesDir).files().values()].some((f) => Number((f['isk'] as Record<string, unknown> | undefined)?.['state']) === 8), 'dumped in CLOSE_WAIT');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[b'']", 'the restored program reads the EOF (a FIN nobody sends again: crr made it)');
  await Promise.race([ended, sleep(5000)]);
  t.equal(heard, 'bye after EOF', 'and its answer reaches the peer, then its FIN');
});

t.test('a connection still connecting (SYN_SENT) comes back connecting and completes once its peer answers', async (t) => {
  const netns = makeNetns(t, '10.234.0.1');
  // 10.234.0.2 answers no ARP yet: the connect stays in SYN_SENT. The namespace is the test's:
  // the program is dumped with it as external and restored into it.
  const setUp = [
    `ns = os.open("${netns.path}", os.O_RDONLY)`,
    'ctypes.CDLL(None).setns(ns, 0x40000000)',
    'os.close(ns)',
    'c = socket.socket()',
    'c.setblocking(False)',
    'try:',
    '    c.connect(("10.234.0.2", 7000))',
    'except BlockingIOError:',
    '    pass',
    'before = [c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0], c.getsockname()]',
  ];
  const check = [
    'select.select([], [c], [], 10)',
    'error = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)',
    'c.setblocking(True)',
    'c.settimeout(5)',
    'open(result, "w").write(repr([before[0], c.getsockname() == before[1], error, c.recv(100)]))',
  ];
  const { prog, go, result } = await startPython(t, ['ctypes', 'select', 'socket'], setUp, check, 'connecting to an address that does not answer');
  const imagesDir = await dumpProgram(t, prog, { tcpEstablished: true, external: [`net[${netns.inode}]:net`] });
  // Now the address is there, with a server on it (this test's, outside the tree).
  spawnSync('/usr/sbin/ip', ['-n', netns.name, 'addr', 'add', '10.234.0.2/32', 'dev', 'eth1']);
  const listening = join(prog.dir, 'listening');
  const server = ['import socket, sys', 'l = socket.socket()', 'l.bind(("10.234.0.2", 7000))', 'l.listen(1)', 'open(sys.argv[1], "w").close()', 'c, _ = l.accept()', 'c.sendall(b"accepted")', 'c.recv(1)'].join('\n');
  const serverPid = await startDetached(['/usr/bin/nsenter', `--net=${netns.path}`, '/usr/bin/python3', '-c', server, listening]);
  t.teardown(() => killTree([serverPid]));
  for (let i = 0; i < 250 && !existsSync(listening); i++) await sleep(20);
  await restoreProgram(t, prog, imagesDir, { externalNamespaces: { net: netns.path } });
  go();
  t.equal(await result(), "[2, True, 0, b'accepted']", 'dumped in SYN_SENT; the same local port, connected without error, the server heard');
});
