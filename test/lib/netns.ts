// A network namespace of a test's own, shaped like a container's: /run/netns/NAME (made with
// `ip netns add`, deleted in teardown) with lo up and a veth pair, eth0 at `address`/24.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

export interface TestNetns {
  readonly name: string;
  /** Its file, for nsenter --net and for the restore's externalNamespaces. */
  readonly path: string;
  readonly inode: number;
}

function ip(...args: string[]): void {
  const r = spawnSync('/usr/sbin/ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

export function makeNetns(t: { teardown(fn: () => unknown): void }, address: string): TestNetns {
  const name = `crr-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  ip('netns', 'add', name);
  t.teardown(() => ip('netns', 'del', name));
  ip('-n', name, 'link', 'set', 'lo', 'up');
  ip('-n', name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
  ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
  for (const dev of ['eth0', 'eth1']) ip('-n', name, 'link', 'set', dev, 'up');
  const path = `/run/netns/${name}`;
  return { name, path, inode: statSync(path).ino };
}
