// Whole restores of upstream CRIU fixtures inside a fresh PID namespace, checked for what the
// address-space kinds own: the maps equal the image's VMAs (vvar/vdso where the image had them),
// exe and comm, state S, the restored fds only (no helper fds), no tracer left, the blocked mask,
// and the signal handlers the image had. Every process is killed and reaped by PID.
import t from 'tap';
import { readFileSync, readlinkSync, readdirSync } from 'node:fs';
import { openCheckpoint } from '../src/images/index.js';
import { restore, type RestoreResult } from '../src/restore/index.js';
import { isKernelMade, parseMaps, vmaOf, hex } from '../src/restore/remote-vma.js';
import { alive, copyFixture, fixturesDir } from './lib/restore-images.js';

async function restored(t: Tap.Test, name: string): Promise<RestoreResult> {
  const result = await restore({ imagesDir: copyFixture(t, name), pidNamespace: true });
  t.teardown(() => result.kill());
  return result;
}

function status(host: number, field: string): string {
  return readFileSync(`/proc/${host}/status`, 'utf8').match(new RegExp(`^${field}:\\s*(.*)$`, 'm'))?.[1]?.trim() ?? '';
}

t.test('sleep: address space, exe, comm, fds and state', async (t) => {
  const result = await restored(t, 'sleep');
  const host = result.rootHostPid;
  const images = openCheckpoint(`${fixturesDir}/sleep`);
  const vmas = (images.mm(17288)['vmas'] as Array<Record<string, unknown>>).map(vmaOf);
  const maps = parseMaps(readFileSync(`/proc/${host}/maps`, 'utf8'));
  for (const v of vmas.filter((v) => !isKernelMade(v))) {
    const m = maps.find((m) => m.start === v.start);
    t.ok(m, `VMA ${hex(v.start)} is mapped`);
    if (m) t.equal(hex(m.end), hex(v.end), `VMA ${hex(v.start)} ends where the image says`);
  }
  t.ok(maps.some((m) => m.name === '[vdso]' && m.start === 0x7f9356647000n), 'vdso where the image had it');
  t.ok(maps.some((m) => m.name === '[heap]'), '[heap] label back from start_brk/brk');
  t.ok(maps.some((m) => m.name === '[stack]'), '[stack] label back');
  const expected = vmas.filter((v) => !(v.status & 0x4)).length; // all but vsyscall (vvar counts once here)
  t.equal(maps.filter((m) => m.name !== '[vsyscall]' && m.name !== '[vvar_vclock]').length, expected, 'no extra mappings (no scratch, no helper)');
  t.equal(readlinkSync(`/proc/${host}/exe`), '/usr/bin/sleep');
  t.equal(readFileSync(`/proc/${host}/comm`, 'utf8').trim(), 'sleep');
  t.same(readdirSync(`/proc/${host}/fd`).map(Number).sort((a, b) => a - b), [0, 1, 2, 10, 251], 'only the image fds');
  await new Promise((r) => setTimeout(r, 200));
  t.match(status(host, 'State'), /^S/, 'sleeping in clock_nanosleep again');
  t.equal(status(host, 'TracerPid'), '0', 'detached');
  t.equal(status(host, 'NSpid').split(/\s+/).at(-1), '17288');
  const aux = readFileSync(`/proc/${host}/auxv`);
  t.equal(aux.readBigUInt64LE(0), 33n, 'saved auxv restored (AT_SYSINFO_EHDR first)');
  await result.kill();
  t.notOk(alive(host), 'killed and reaped');
});

t.test('py-threads: signal handlers and blocked masks survive', async (t) => {
  const result = await restored(t, 'py-threads');
  const host = result.rootHostPid;
  t.equal(status(host, 'SigCgt'), '0000000100000002', 'SIGINT and signal 33 handled like at dump');
  t.equal(status(host, 'SigBlk'), '0000000000000000');
  await result.kill();
  t.notOk(alive(host));
});
