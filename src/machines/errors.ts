// Turns whatever a resource threw into a StageError that names the task, resource and stage, and
// keeps syscall, errno and code when the cause carried them (NativeError, or any error value with
// those fields).
import { StageError } from '../errors.js';

export interface StageWhere {
  readonly stage: string;
  readonly pid?: number;
  readonly resource?: string;
}

export function asStageError(err: unknown, where: StageWhere): StageError {
  if (err instanceof StageError && (err.pid !== undefined || where.pid === undefined) && (err.resource || !where.resource)) {
    return err;
  }
  const fields = (typeof err === 'object' && err !== null ? err : {}) as Partial<{
    syscall: unknown;
    errno: unknown;
    code: unknown;
    message: unknown;
    pid: unknown;
    resource: unknown;
    stage: unknown;
  }>;
  const inner = err instanceof StageError ? err : undefined;
  const message = inner
    ? String(inner.message.replace(/^stage [^:]*: /, ''))
    : typeof fields.message === 'string'
      ? fields.message
      : String(err);
  return new StageError({
    stage: inner?.stage ?? where.stage,
    pid: inner?.pid ?? where.pid,
    resource: inner?.resource ?? where.resource,
    syscall: typeof fields.syscall === 'string' ? fields.syscall : undefined,
    errno: typeof fields.errno === 'number' ? fields.errno : undefined,
    code: typeof fields.code === 'string' ? fields.code : undefined,
    message,
    cause: err,
  });
}

/** The error a cancelled restore fails with. */
export function cancelledError(stage: string): StageError {
  return new StageError({ stage, code: 'ECANCELED', errno: 125, message: 'restore cancelled' });
}
