// Packet sockets (src/dump/fd-packetsk.ts, src/resources/packetsk.ts): a raw one bound to lo for
// IPv4 with PACKET_AUXDATA, TPACKET_V2 and fanout group 77, and a datagram one for every protocol, unbound, non-blocking and
// shared by a dup. After a restore each has its type, protocol, binding and options back, and the
// bound one sees a UDP datagram sent on lo. A membership (promiscuous mode) is refused at dump.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from '../src/dump/index.js';
import { openCheckpoint } from '../src/images/index.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';

t.test('packet sockets come back with their type, protocol, interface and options, and receive', async (t) => {
  const setUp = [
    'raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))',
    'raw.bind(("lo", 0x0800))',
    'raw.setsockopt(263, 8, 1)', // PACKET_AUXDATA
    'raw.setsockopt(263, 10, 1)', // PACKET_VERSION: TPACKET_V2
    'raw.setsockopt(263, 18, 77)', // PACKET_FANOUT: group 77, by hash
    'os.dup2(raw.fileno(), 40)',
    'raw.close()',
    'dgram = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))',
    'dgram.setblocking(False)',
    'os.dup2(dgram.fileno(), 41)',
    'os.dup2(41, 42)',
    'dgram.close()',
  ];
  const check = [
    'raw = socket.socket(fileno=40)',
    'dgram = socket.socket(fileno=41)',
    'state = [raw.type == socket.SOCK_RAW, raw.getsockname()[:2], raw.getsockopt(263, 8), raw.getsockopt(263, 10), raw.getsockopt(263, 18), dgram.type == socket.SOCK_DGRAM, dgram.getsockname()[1], os.get_blocking(41), os.get_blocking(42)]',
    'while select.select([raw], [], [], 0)[0]:',
    '    raw.recv(65536)',
    'u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    'u.sendto(b"crr-packet-probe", ("127.0.0.1", 9))',
    'seen = False',
    'end = time.time() + 5',
    'while not seen and time.time() < end:',
    '    if select.select([raw], [], [], 0.2)[0]:',
    '        seen = b"crr-packet-probe" in raw.recv(65536)',
    'open(result, "w").write(repr(state + [seen]))',
  ];
  const { prog, go, result } = await startPython(t, ['select', 'socket'], setUp, check, 'a program with two packet sockets');
  const imagesDir = await dumpProgram(t, prog);
  const checkpoint = openCheckpoint(imagesDir);
  const fds = checkpoint.fdinfo(checkpoint.ids(prog.pid).files_id).filter((f) => f.fd >= 40 && f.fd <= 42);
  t.same(fds.map((f) => f.type), [10, 10, 10], 'fdinfo: PACKETSK entries');
  t.equal(fds[1]!.id, fds[2]!.id, 'fds 41 and 42: one description');
  t.match(checkpoint.file(fds[0]!.id)['psk'], { type: 3, protocol: 0x800, aux_data: true, version: 1, fanout: 77 }, 'psk: raw, IPv4, auxdata, TPACKET_V2, fanout group 77');
  await restoreProgram(t, prog, imagesDir);
  go();
  t.equal(await result(), "[True, ('lo', 2048), 1, 1, 77, True, 3, False, False, True]", 'types, protocols, binding, auxdata, version, fanout group, non-blocking; the raw socket sees a datagram on lo');
});

t.test('a packet socket with a membership (promiscuous mode) is refused at dump, naming it', async (t) => {
  const setUp = [
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)',
    's.setsockopt(263, 1, struct.pack("iHH8s", socket.if_nametoindex("lo"), 1, 0, b""))', // PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC
    'os.dup2(s.fileno(), 40)',
    's.close()',
  ];
  const { prog } = await startPython(t, ['socket', 'struct'], setUp, [], 'a packet socket in promiscuous mode');
  const imagesDir = mkdtempSync(join(tmpdir(), 'crr-packetsk-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  await t.rejects(dump({ pid: prog.pid, imagesDir }), { message: new RegExp(`pid ${prog.pid}: fd 40 is packet socket \\d+: not supported: 1 membership\\(s\\) added with PACKET_ADD_MEMBERSHIP`) });
});
