// `crr swrk FD`: CRIU's RPC service on the socket at fd FD (src/service/swrk.ts), as runc, crun
// and libcriu start `criu swrk FD`; run crr as their criu (runc --criu PATH). Exits 0 once a
// request is served (or the caller hung up), 1 when the last one failed.
import { UsageError } from '../../errors.js';

export async function run(argv: string[]): Promise<number> {
  const [fd, ...rest] = argv;
  if (fd === undefined || !/^\d+$/.test(fd) || rest.length) throw new UsageError('usage: crr swrk FD (a SOCK_SEQPACKET socket; CRIU\'s RPC)');
  const { serveSwrk } = await import('../../service/swrk.js');
  return serveSwrk(Number(fd));
}
