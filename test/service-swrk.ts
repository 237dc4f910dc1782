// `crr swrk FD`, CRIU's RPC as runc and libcriu speak it (src/service/swrk.ts): a client here
// sends criu_req packets on a SOCK_SEQPACKET socket to `node bin/crr.js swrk 3` and reads the
// criu_resp packets. VERSION and FEATURE_CHECK; a DUMP and a RESTORE of a test program with
// every action script as a NOTIFY, answered in turn; a NOTIFY answered with failure rolls the
// restore back; unsupported requests and options are refused naming them; a hang-up ends it.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, type ChannelHandle } from '../src/actors/native.js';
import { decodeEntry, encodeEntry, type Entry } from '../src/images/index.js';
import { CRIU_COMPAT_VERSION, REQ } from '../src/service/swrk.js';
import { requestCheck, startProgram, waitPidGone } from './lib/programs.js';

const bin = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

/** One `crr swrk 3` and this side of its socket. */
class Client {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private readonly channel: ChannelHandle;
  private readonly packets: Entry[] = [];
  private waiting: ((entry: Entry | undefined) => void) | undefined;
  private ended = false;

  constructor(t: Tap.Test) {
    const [mine, theirs] = native.socketpair('seqpacket');
    this.child = spawn(process.execPath, [bin, 'swrk', '3'], { stdio: ['ignore', 'ignore', 'pipe', theirs] });
    native.close(theirs);
    let stderr = '';
    this.child.stderr!.on('data', (d) => (stderr += d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    this.channel = native.channelOpen(
      mine,
      (packet) => this.arrive(decodeEntry('criu_resp', packet)),
      () => {
        this.ended = true;
        this.arrive(undefined);
      },
      () => undefined,
    );
    t.teardown(async () => {
      native.channelClose(this.channel);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
      await this.exited;
      if (stderr) t.comment(`crr swrk stderr: ${stderr}`);
    });
  }

  private arrive(entry: Entry | undefined): void {
    const waiter = this.waiting;
    this.waiting = undefined;
    if (waiter) waiter(entry);
    else if (entry) this.packets.push(entry);
  }

  send(req: Entry): void {
    this.sendBytes(Buffer.from(encodeEntry('criu_req', req)));
  }

  sendBytes(packet: Buffer): void {
    if (!native.channelSend(this.channel, packet)) throw new Error('socket full');
  }

  hangUp(): void {
    native.channelClose(this.channel);
  }

  next(): Promise<Entry | undefined> {
    const queued = this.packets.shift();
    if (queued || this.ended) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  /** Answers every NOTIFY (with `answer`'s verdict) until the final response; the scripts seen, with their pids. */
  async finish(answer: (script: string) => boolean = () => true): Promise<{ resp: Entry; notified: Array<[string, number | undefined]> }> {
    const notified: Array<[string, number | undefined]> = [];
    for (;;) {
      const resp = await this.next();
      if (!resp) throw new Error('crr swrk hung up before its final response');
      if (Number(resp['type']) !== REQ.NOTIFY) return { resp, notified };
      const notify = resp['notify'] as Entry;
      const script = String(notify['script']);
      notified.push([script, notify['pid'] === undefined ? undefined : Number(notify['pid'])]);
      this.send({ type: REQ.NOTIFY, notify_success: answer(script) });
    }
  }
}

function dirFd(t: Tap.Test, prefix: string): { dir: string; fd: number } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const fd = openSync(dir, 'r');
  t.teardown(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, fd };
}

t.test('VERSION answers criu 4.2 and the service exits 0', async (t) => {
  const client = new Client(t);
  client.send({ type: REQ.VERSION });
  const resp = (await client.next())!;
  t.equal(Number(resp['type']), REQ.VERSION);
  t.equal(resp['success'], true);
  t.same(resp['version'], CRIU_COMPAT_VERSION);
  t.equal(await client.exited, 0);
});

t.test('FEATURE_CHECK: lazy pages (a restore\'s), no memory tracking or pidfd store', async (t) => {
  const client = new Client(t);
  client.send({ type: REQ.FEATURE_CHECK, features: { mem_track: true, lazy_pages: true } });
  const resp = (await client.next())!;
  t.equal(resp['success'], true);
  t.same(resp['features'], { mem_track: false, lazy_pages: true, pidfd_store: false });
  t.equal(await client.exited, 0);
});

t.test('CHECK passes with the capabilities crr needs (this test runs as root)', async (t) => {
  const client = new Client(t);
  client.send({ type: REQ.CHECK });
  const resp = (await client.next())!;
  t.equal(Number(resp['type']), REQ.CHECK);
  t.equal(resp['success'], true, String(resp['cr_errmsg'] ?? ''));
  t.equal(await client.exited, 0);
});

t.test('a packet that is not a criu_req ends the service with exit 2', async (t) => {
  const client = new Client(t);
  client.sendBytes(Buffer.from([0xff, 0xff, 0xff]));
  t.equal(await client.exited, 2);
});

t.test('requests and options crr does not serve are refused naming them; keep_open serves the next', async (t) => {
  const client = new Client(t);
  const { fd } = dirFd(t, 'crr-swrk-refused-');
  client.send({ type: REQ.PRE_DUMP, keep_open: true, opts: { images_dir_fd: fd, pid: process.pid } });
  let resp = (await client.next())!;
  t.equal(resp['success'], false);
  t.equal(resp['cr_errno'], 95, 'EOPNOTSUPP');
  t.match(String(resp['cr_errmsg']), /crr does not serve PRE_DUMP requests/);
  client.send({ type: REQ.DUMP, keep_open: true, opts: { images_dir_fd: fd, pid: process.pid, lazy_pages: true } });
  resp = (await client.next())!;
  t.equal(resp['success'], false);
  t.match(String(resp['cr_errmsg']), /crr does not support criu's lazy-pages \(criu_opts.lazy_pages\)/);
  client.send({ type: REQ.DUMP, opts: { images_dir_fd: 999, pid: process.pid } });
  resp = (await client.next())!;
  t.equal(resp['success'], false);
  t.match(String(resp['cr_errmsg']), new RegExp(`images_dir_fd 999: the caller \\(pid ${process.pid}\\) has no such directory open`));
  t.equal(await client.exited, 1, 'the last request failed');
});

t.test('a caller that hangs up ends the service with 0', async (t) => {
  const client = new Client(t);
  client.hangUp();
  t.equal(await client.exited, 0);
});

t.test('DUMP and RESTORE of a program, each action script a NOTIFY; a failed NOTIFY rolls the restore back', async (t) => {
  const prog = await startProgram(t, 'counter');
  await new Promise((r) => setTimeout(r, 1200)); // a number or two in its file
  const images = dirFd(t, 'crr-swrk-images-');
  const work = dirFd(t, 'crr-swrk-work-');

  let client = new Client(t);
  client.send({ type: REQ.DUMP, opts: { images_dir_fd: images.fd, work_dir_fd: work.fd, log_file: 'dump.log', pid: prog.pid, notify_scripts: true, manage_cgroups: true, file_locks: true } });
  let { resp, notified } = await client.finish();
  t.equal(resp['success'], true, String(resp['cr_errmsg'] ?? ''));
  t.same(resp['dump'], { restored: false });
  t.same(notified, [['pre-dump', undefined], ['network-lock', undefined], ['post-dump', undefined]], 'the dump\'s action scripts, in criu\'s order');
  t.equal(await client.exited, 0);
  t.ok(existsSync(join(images.dir, 'inventory.img')), 'the checkpoint is in the directory the caller\'s fd is open on');
  t.match(readFileSync(join(work.dir, 'dump.log'), 'utf8'), /notify post-dump/, 'the log is in the work dir');
  await waitPidGone(prog.pid);

  // A caller whose post-restore hook fails: nothing is left running, and the PID is free again.
  client = new Client(t);
  client.send({ type: REQ.RESTORE, opts: { images_dir_fd: images.fd, log_file: 'restore.log', notify_scripts: true, rst_sibling: true } });
  ({ resp, notified } = await client.finish((script) => script !== 'post-restore'));
  t.equal(resp['success'], false);
  t.match(String(resp['cr_errmsg']), /resource action-post-restore: the caller's action script post-restore failed/);
  t.match(readFileSync(join(images.dir, 'restore.log'), 'utf8'), /Error \(crr\): .*post-restore failed/, 'the log says Error, where runc looks');
  t.equal(await client.exited, 1);
  await waitPidGone(prog.pid);

  client = new Client(t);
  client.send({ type: REQ.RESTORE, opts: { images_dir_fd: images.fd, notify_scripts: true, rst_sibling: true } });
  ({ resp, notified } = await client.finish());
  t.equal(resp['success'], true, String(resp['cr_errmsg'] ?? ''));
  t.same(resp['restore'], { pid: prog.pid }, 'the root\'s pid');
  t.same(
    notified,
    [['pre-restore', undefined], ['setup-namespaces', prog.pid], ['post-setup-namespaces', undefined], ['post-restore', prog.pid], ['network-unlock', undefined], ['pre-resume', undefined], ['post-resume', undefined]],
    'the restore\'s action scripts in criu\'s order, with the root\'s pid where criu gives one (setup-namespaces, post-restore)',
  );
  t.equal(await client.exited, 0, 'the service exits once it answered: the tree is detached');
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `the restored counter checks itself: ${check.text}`);
});
