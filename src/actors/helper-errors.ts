// The typed errors of a helper request (src/actors/helper.ts): each a NativeError, so a failed
// stage names the request as its syscall, the helper's PID and an errno.
import { NativeError } from '../errors.js';

/** A request the helper did not answer in time (it may be parked, stuck or gone). */
export class HelperTimeoutError extends NativeError {
  readonly op: string;
  readonly timeoutMs: number;
  constructor(op: string, pid: number, timeoutMs: number) {
    super({ code: 'ETIMEDOUT', errno: 110, syscall: op, pid, detail: `no answer in ${timeoutMs} ms` });
    this.op = op;
    this.timeoutMs = timeoutMs;
  }
}

/** The channel closed (the helper exited or was killed) before the answer came. */
export class HelperGoneError extends NativeError {
  constructor(op: string, pid: number) {
    super({ code: 'ECONNRESET', errno: 104, syscall: op, pid, detail: 'helper channel closed' });
  }
}

/** A batch stopped at op number `index`; `results` are the values of the ops before it. */
export class HelperBatchError extends NativeError {
  readonly index: number;
  readonly results: unknown[];
  constructor(fields: ConstructorParameters<typeof NativeError>[0], index: number, results: unknown[]) {
    super({ ...fields, detail: `batch op ${index}${fields.detail ? `: ${fields.detail}` : ''}` });
    this.index = index;
    this.results = results;
  }
}
