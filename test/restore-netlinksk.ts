// Netlink sockets (src/dump/fd-netlinksk.ts, src/resources/netlinksk.ts): the sock_diag parser
// against the kernel's answer, the helper ops a socket is made with, and a program holding a
// NETLINK_ROUTE socket in the traffic-control group, dumped and restored: same port id and groups,
// and a link dump asked over it is answered.
import t from 'tap';
import { native } from '../src/actors/native.js';
import { parseNetlinkDiag } from '../src/dump/fd-netlinksk.js';
import { netlinkOps, sockaddrNl } from '../src/resources/netlinksk.js';
import { dumpProgram, restoreProgram } from './lib/program-roundtrip.js';
import { startPython } from './lib/python-program.js';

t.test('parseNetlinkDiag reads the kernel answer', async (t) => {
  const all = parseNetlinkDiag(native.netlinkDiag());
  t.ok(all.length > 0, `${all.length} netlink sockets listed`);
  t.ok(all.every((d) => d.ino > 0 && d.protocol >= 0 && d.protocol < 32));
});

t.test('the ops a netlink socket is made with', async (t) => {
  t.same([...sockaddrNl(0x1234, 5)], [16, 0, 0, 0, 0x34, 0x12, 0, 0, 5, 0, 0, 0]);
  const ops = netlinkOps({ protocol: 0, portid: 4242, groups: [1, 0b101], dst_portid: 0, dst_group: 0, flags: 0o4002 }, 50, true);
  t.same(ops.map((o) => o.op), ['socket', 'bind', 'setsockopt', 'setsockopt', 'fcntl']);
  t.match(ops[0], { domain: 16, type: 3 | 0o2000000, protocol: 0, fd: 50 });
  t.same([ops[2]!['name'], ops[2]!['value'], ops[3]!['value']], [1, 33, 35], 'groups past 32 by NETLINK_ADD_MEMBERSHIP');
  t.match(ops[4], { arg: 0o4000 });
  t.same(netlinkOps({ protocol: 15, portid: 0, flags: 2 }, 7, false).map((o) => o.op), ['socket', 'fcntl'], 'never bound: not bound now');
});

t.test('a NETLINK_ROUTE socket in a multicast group comes back with its port id and groups and answers a link dump', async (t) => {
  const setUp = [
    'n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)',
    // RTMGRP_TC: traffic-control changes, which nothing here makes (a link event would queue a
    // message, and the dump refuses a socket with unread messages).
    'n.bind((0, 8))',
    'os.dup2(n.fileno(), 50)',
    'n.close()',
    'n = socket.socket(fileno=50)',
    'before = n.getsockname()',
  ];
  const check = [
    'now = n.getsockname()',
    '# RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, an ifinfomsg of AF_UNSPEC',
    'n.send(struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + bytes(16))',
    'reply = n.recv(65536)',
    'kind = struct.unpack("=IH", reply[:6])[1]',
    'open(result, "w").write("PASS" if now == before and kind == 16 else "FAIL %r %r %d" % (before, now, kind))',
  ];
  const p = await startPython(t, ['socket', 'struct'], setUp, check, 'bound');
  await restoreProgram(t, p.prog, await dumpProgram(t, p.prog));
  p.go();
  t.equal(await p.result(), 'PASS');
});
