// Objects shared between tasks: a child made with CLONE_FILES|CLONE_FS, a forked child inheriting a file, a dup'd fd and a pipe with queued
// data, and a MAP_SHARED|MAP_ANONYMOUS area mapped by parent and fork child (the child wrote a
// page only it has in its page tables). The images must share ids exactly where the kernel
// shares objects (kcmp), and hold the shared memory once with its contents.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static int idle(void *arg) { (void)arg; for (;;) pause(); return 0; }
int main(int argc, char **argv) {
	int fd = open(argv[1], O_RDONLY);
	lseek(fd, 3, SEEK_SET);
	dup2(fd, 40);
	int p[2];
	if (fd < 0 || pipe(p) || write(p[1], "queued", 6) != 6) return 2;
	char *shm = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(shm, 'a', 4096);
	memset(shm + 5 * 4096, 'b', 2 * 4096);
	char *s1 = malloc(1 << 16);
	clone(idle, s1 + (1 << 16), CLONE_FILES | CLONE_FS | SIGCHLD, NULL);
	if (fork() == 0) {
		memset(shm + 100 * 4096, 'c', 4096);
		for (;;) pause();
	}
	usleep(100000);
	FILE *f = fopen(argv[2], "w");
	fprintf(f, "ready\n");
	fclose(f);
	for (;;) pause();
}
`;

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

t.test('shared fd table, fs, file descriptions, pipe and anonymous shared memory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-shared-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shared.c'), SOURCE);
  writeFileSync(join(dir, 'data'), 'some file data\n');
  const cc = spawnSync('cc', ['-O0', '-o', join(dir, 'shared'), join(dir, 'shared.c')], { encoding: 'utf8' });
  t.equal(cc.status, 0, `compiled ${cc.stderr}`);
  const pidFile = join(dir, 'pid');
  spawnSync('setsid', ['-f', 'sh', '-c', 'echo $$ > "$0"; exec "$1" "$2" "$3" </dev/null >/dev/null 2>&1', pidFile, join(dir, 'shared'), join(dir, 'data'), join(dir, 'ready')]);
  let pid = 0;
  for (let i = 0; i < 500 && !readdirSync(dir).includes('ready'); i++) await sleep(10);
  pid = Number(readFileSync(pidFile, 'utf8'));
  const kids = children(pid);
  t.teardown(async () => {
    for (const p of [pid, ...kids]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await sleep(50);
  });
  t.equal(kids.length, 2, 'two children');
  const [filesKid, forkKid] = kids as [number, number];

  const out = join(dir, 'img');
  if (process.env.D2_KEEP) t.teardown(() => spawnSync('cp', ['-r', out, process.env.D2_KEEP!]));
  await dump({ pid, imagesDir: out, leaveRunning: true });
  const ids = (p: number) => img(out, `ids-${p}.img`)[0];
  const root = ids(pid);
  t.equal(ids(filesKid).files_id, root.files_id, 'CLONE_FILES child: same files id');
  t.equal(ids(filesKid).fs_id, root.fs_id, 'CLONE_FS child: same fs id');
  t.not(ids(filesKid).vm_id, root.vm_id, 'CLONE_FILES child: own vm');
  t.not(ids(forkKid).files_id, root.files_id, 'fork child: own fd table');
  const fdinfos = readdirSync(out).filter((n) => n.startsWith('fdinfo-'));
  t.equal(fdinfos.length, 2, 'one fdinfo image per fd table (root+CLONE_FILES child share one)');

  const rootFds = img(out, `fdinfo-${root.files_id}.img`);
  const kidFds = img(out, `fdinfo-${ids(forkKid).files_id}.img`);
  const byFd = (fds: any[], fd: number) => fds.find((f) => f.fd === fd);
  const dataFd = rootFds.find((f) => f.fd !== 40 && f.id === byFd(rootFds, 40).id);
  t.ok(dataFd, 'the dup\'d fd shares its original\'s id');
  t.equal(byFd(kidFds, 40).id, byFd(rootFds, 40).id, 'fork child: the inherited file has the parent\'s id');
  const files = img(out, 'files.img');
  const dataEntries = files.filter((f) => f.reg?.name === join(dir, 'data'));
  t.equal(dataEntries.length, 1, 'one files.img entry for the shared description');
  t.equal(dataEntries[0].reg.pos, 3n, 'with its position');
  // (Pipes the test runner leaked into the program may show up too: look at the queued one.)
  const pipesData = img(out, 'pipes-data.img');
  const queued = pipesData.filter((d) => d.bytes === 6);
  t.equal(queued.length, 1, 'the queued pipe\'s data once');
  const ends = files.filter((f) => f.type === 2 && f.pipe.pipe_id === queued[0]?.pipe_id);
  t.same(ends.map((f) => f.pipe.flags & 3).sort(), [0, 1], 'two pipe descriptions (the two ends) for three tasks');
  for (const p of [pid, forkKid]) {
    const fds = img(out, `fdinfo-${ids(p).files_id}.img`).filter((f) => ends.some((e) => e.id === f.id));
    t.equal(fds.length, 2, `${p}: both ends, by the shared ids`);
  }

  // Shared anonymous memory: ANON_SHARED VMAs with shmid = the maps inode; one pagemap-shmem.
  const shmMaps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('/dev/zero (deleted)'));
  t.equal(shmMaps.length, 1, 'the program maps one shared area');
  const inode = Number(shmMaps[0]!.split(/\s+/)[4]);
  for (const p of [pid, forkKid]) {
    const vma = img(out, `mm-${p}.img`)[0].vmas.find((v: any) => v.shmid === BigInt(inode));
    t.ok(vma, `${p}: the shared VMA`);
    t.equal(vma?.status, 1 | (1 << 8), `${p}: VMA_AREA_REGULAR | VMA_ANON_SHARED`);
    t.equal(vma?.flags, 0x21, `${p}: MAP_SHARED | MAP_ANONYMOUS`);
  }
  const shmImages = readdirSync(out).filter((n) => n.startsWith('pagemap-shmem-'));
  t.same(shmImages, [`pagemap-shmem-${inode}.img`], 'one pagemap-shmem image, named by the shmid');
  const pm = img(out, shmImages[0]!);
  const runs = pm.slice(1).map((r: any) => [Number(r.vaddr) / 4096, r.nr_pages, r.flags]);
  t.same(runs, [[0, 1, 4], [5, 2, 4], [100, 1, 4]], 'runs are offsets in the object: pages 0, 5-6 and the child\'s 100');
  const pages = readFileSync(join(out, `pages-${pm[0].pages_id}.img`));
  t.equal(pages.length, 4 * 4096, 'four pages of data');
  t.equal(pages.toString('latin1', 0, 4096), 'a'.repeat(4096));
  t.equal(pages.toString('latin1', 4096, 3 * 4096), 'b'.repeat(8192));
  t.equal(pages.toString('latin1', 3 * 4096), 'c'.repeat(4096));
  const taskPagesIds = [pid, filesKid, forkKid].map((p) => img(out, `pagemap-${p}.img`)[0].pages_id);
  t.notOk(taskPagesIds.includes(pm[0].pages_id), 'its pages id is not a task\'s');
  t.equal(img(out, 'stats-dump')[0].dump.shpages_written, 4n, 'stats-dump counts the shared pages');
});
