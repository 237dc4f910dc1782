// Errors are values with fields: every failure crr reports carries what a script or a person
// needs to act on it, and the CLI turns each into one readable line.

/** Base of every error crr throws on purpose. `exitCode` is what the CLI exits with. */
export class CrrError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad command-line use: an unknown or unsupported option, a missing argument. */
export class UsageError extends CrrError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** An image file that is missing, truncated, corrupt or of an unsupported kind. */
export class ImageError extends CrrError {
  readonly file: string;
  readonly offset: number;
  readonly expected: string;
  constructor(file: string, offset: number, expected: string, detail?: string) {
    super(`${file}: at byte ${offset}: expected ${expected}${detail ? ` (${detail})` : ''}`, 2);
    this.file = file;
    this.offset = offset;
    this.expected = expected;
  }
}

/** A syscall-level failure from the native layer (addon or helper). */
export class NativeError extends CrrError {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly pid: number | undefined;
  constructor(fields: { code: string; errno: number; syscall: string; pid?: number; detail?: string }) {
    const where = fields.pid !== undefined ? ` in pid ${fields.pid}` : '';
    super(`${fields.syscall}${where} failed: ${fields.code}${fields.detail ? ` (${fields.detail})` : ''}`);
    this.code = fields.code;
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    this.pid = fields.pid;
  }
}

/** A failed restore or dump stage: which task, resource, stage, and the syscall behind it. */
export class StageError extends CrrError {
  readonly pid: number | undefined;
  readonly resource: string | undefined;
  readonly stage: string;
  readonly syscall: string | undefined;
  readonly errno: number | undefined;
  readonly code: string | undefined;
  constructor(fields: {
    stage: string;
    pid?: number;
    resource?: string;
    syscall?: string;
    errno?: number;
    code?: string;
    message: string;
    cause?: unknown;
  }) {
    const parts = [`stage ${fields.stage}`];
    if (fields.pid !== undefined) parts.push(`task ${fields.pid}`);
    if (fields.resource) parts.push(`resource ${fields.resource}`);
    if (fields.syscall) parts.push(`syscall ${fields.syscall}${fields.code ? ` (${fields.code})` : ''}`);
    super(`${parts.join(', ')}: ${fields.message}`, 1, { cause: fields.cause });
    this.pid = fields.pid;
    this.resource = fields.resource;
    this.stage = fields.stage;
    this.syscall = fields.syscall;
    this.errno = fields.errno;
    this.code = fields.code;
  }
}
