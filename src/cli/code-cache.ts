// A V8 code cache for the CLI's CommonJS modules. Node 20 compiles every module afresh on each
// run, and a first restore runs cold code that V8 compiles function by function as it is first
// called: together most of `crr restore`'s start-up (docs/PERFORMANCE.md). Node >= 22 has
// module.enableCompileCache for this; on Node 20 the CommonJS loader's compile step is replaced
// here by one that hands V8 the cached data of an earlier run (which is why bin/crr.js runs
// dist-cjs/, the CommonJS copy of dist/). The cache is written once a command has done its work,
// so it also holds the functions that work compiled.
//
// One file per Node version and architecture under $XDG_CACHE_HOME/crr (~/.cache/crr). Each
// module's entry carries its file's size and modification time: V8 itself checks only the
// source's length, and hashing the sources would cost more than a stat.
// CRR_NO_CODE_CACHE=1 turns the cache off; any failure to read or write it is silent (the cache
// only ever saves time).
import Module from 'node:module';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Script, constants } from 'node:vm';

interface LoadingModule {
  exports: unknown;
  require(id: string): unknown;
}
type Compile = (this: LoadingModule, content: string, filename: string, format?: string) => unknown;
type ModuleStatics = typeof Module & {
  prototype: { _compile: Compile };
  _resolveFilename(request: string, parent: LoadingModule, isMain: boolean, options?: unknown): string;
  _resolveLookupPaths(request: string, parent: LoadingModule): string[] | null;
  _cache: unknown;
  _extensions: unknown;
};

interface Entry {
  /** The module file's size and modification time when its data was made. */
  readonly stamp: string;
  readonly data: Buffer;
}
interface CompiledModule {
  readonly stamp: string;
  readonly script: Script;
}

let cacheFile: string | undefined;
let cached = new Map<string, Entry>();
const compiled = new Map<string, CompiledModule>();
/** A module this process compiled without usable cached data: the file is worth rewriting. */
let missed = false;

export function codeCacheFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'crr', `code-cache-${process.version}-${process.arch}.bin`);
}

/** From now on, CommonJS modules are compiled with the cached data of an earlier run. */
export function installCodeCache(env: NodeJS.ProcessEnv = process.env): void {
  if (cacheFile !== undefined || env.CRR_NO_CODE_CACHE === '1') return;
  cacheFile = codeCacheFile(env);
  cached = readCodeCache(cacheFile);
  const statics = Module as ModuleStatics;
  const plainCompile = statics.prototype._compile;
  statics.prototype._compile = function compileWithCache(content, filename, format) {
    if (format === 'module') return plainCompile.call(this, content, filename, format);
    const stamp = stampOf(filename);
    const entry = cached.get(filename);
    let script: Script;
    try {
      script = new Script(Module.wrap(content), {
        filename,
        cachedData: entry?.stamp === stamp ? entry.data : undefined,
        importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
      });
    } catch {
      // Not a CommonJS script after all (ES module syntax in a package without "type"): Node's
      // own compile step knows what to do with it.
      return plainCompile.call(this, content, filename, format);
    }
    if (entry?.stamp !== stamp || script.cachedDataRejected) missed = true;
    compiled.set(filename, { stamp, script });
    const wrapper = script.runInThisContext({ displayErrors: true }) as (...args: unknown[]) => unknown;
    return wrapper.call(this.exports, this.exports, requireFor(this, statics), this, filename, dirname(filename));
  };
  process.once('exit', saveCodeCache);
}

function stampOf(filename: string): string {
  const { size, mtimeMs } = statSync(filename);
  return `${size}:${mtimeMs}`;
}

function stillStamped(filename: string, stamp: string): boolean {
  try {
    return stampOf(filename) === stamp;
  } catch {
    return false;
  }
}

/** What Node's loader gives a CommonJS module as `require`. */
function requireFor(module: LoadingModule, statics: ModuleStatics): NodeJS.Require {
  const require = ((id: string) => module.require(id)) as NodeJS.Require;
  const resolve = ((request: string, options?: unknown) => statics._resolveFilename(request, module, false, options)) as NodeJS.RequireResolve;
  resolve.paths = (request: string) => statics._resolveLookupPaths(request, module);
  require.resolve = resolve;
  require.main = process.mainModule;
  require.cache = statics._cache as NodeJS.Require['cache'];
  require.extensions = statics._extensions as NodeJS.Require['extensions'];
  return require;
}

/**
 * Writes the cache if a module of this run had no usable entry: the entries of every module
 * compiled so far (with the functions run so far), and the old entries of those not loaded this
 * time whose files are still as they were (so the entries of a deleted checkout or an old build
 * go, and the file does not grow without end). Once per process: called when a command's work
 * is done, and at exit.
 */
export function saveCodeCache(): void {
  if (cacheFile === undefined || !missed) return;
  missed = false;
  const entries = new Map<string, Entry>();
  for (const [filename, entry] of cached) if (!compiled.has(filename) && stillStamped(filename, entry.stamp)) entries.set(filename, entry);
  for (const [filename, { stamp, script }] of compiled) entries.set(filename, { stamp, data: script.createCachedData() });
  try {
    mkdirSync(dirname(cacheFile), { recursive: true });
    const partial = `${cacheFile}.${process.pid}`;
    writeFileSync(partial, encodeCodeCache(entries));
    renameSync(partial, cacheFile);
  } catch {
    // A read-only home or a full disk: the next run compiles afresh, as without a cache.
  }
}

/**
 * The file: a 4-byte little-endian length, a JSON index [filename, stamp, bytes][] of that
 * length, then each entry's data in the index's order.
 */
export function encodeCodeCache(entries: ReadonlyMap<string, Entry>): Buffer {
  const index = [...entries].map(([filename, { stamp, data }]) => [filename, stamp, data.length]);
  const head = Buffer.from(JSON.stringify(index));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(head.length);
  return Buffer.concat([length, head, ...[...entries.values()].map((e) => e.data)]);
}

/** The entries of a cache file; none when it is missing or damaged. */
export function readCodeCache(file: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  try {
    const bytes = readFileSync(file);
    const headLength = bytes.readUInt32LE(0);
    let at = 4 + headLength;
    for (const [filename, stamp, length] of JSON.parse(bytes.toString('utf8', 4, at)) as [string, string, number][]) {
      if (at + length > bytes.length) break;
      entries.set(filename, { stamp, data: bytes.subarray(at, at + length) });
      at += length;
    }
  } catch {
    entries.clear(); // no cache yet, or a damaged one: compile afresh and write a new one
  }
  return entries;
}
