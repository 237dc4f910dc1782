// The helper channel's wire (src/actors/helper.ts): msgpack as the C helper reads it, and a
// net.Socket on a SOCK_SEQPACKET fd, one packet per read and per write.
import net from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { NativeError } from '../errors.js';
import { native } from './native.js';

// Plain maps, no msgpackr records: the C side reads standard msgpack only. 'auto' keeps 64-bit
// values (signal masks) exact as bigint and everything that fits as a number.
export const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' } as unknown as ConstructorParameters<
  typeof Unpackr
>[0]);

// net.Socket({fd}) refuses a SOCK_SEQPACKET fd (libuv guesses its type as UNKNOWN), but a libuv
// pipe handle opened on it works: each read(2) returns exactly one packet (answers are capped
// below libuv's 64 KiB read buffer by the helper) and each write is one packet.
export function socketOnSeqpacket(fd: number): net.Socket {
  const binding = (process as unknown as { binding(name: string): any }).binding('pipe_wrap');
  const handle = new binding.Pipe(binding.constants.SOCKET);
  const status: number = handle.open(fd);
  if (status !== 0) {
    native.close(fd);
    throw new NativeError({ code: 'EBADF', errno: -status, syscall: 'uv_pipe_open' });
  }
  return new net.Socket({ handle, readable: true, writable: true } as net.SocketConstructorOpts);
}
