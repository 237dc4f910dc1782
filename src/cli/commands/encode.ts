// `crr encode -i IN.json -o OUT.img` (or `crr encode IN.json OUT.img`): the inverse of
// `crr show FILE.img` and of `crit encode`: crit-style JSON back to the image's exact bytes.
// JSON is parsed without losing 64-bit integers (crit prints e.g. RLIM_INFINITY as a bare number).
import { readFileSync, writeFileSync } from 'node:fs';
import { CrrError, ImageError, UsageError } from '../../errors.js';
import { entryFromCrit } from '../../images/crit-json.js';
import { imageKindByName } from '../../images/schema.js';
import { entryType } from '../../images/reader.js';
import { encodeImage, type EntryToWrite } from '../../images/writer.js';

const USAGE = 'usage: crr encode -i IN.json -o OUT.img   (or: crr encode IN.json OUT.img; - is stdin/stdout)';

const LITERAL = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

/** JSON.parse, except integers beyond 2^53 become bigint instead of a rounded float. */
export function parseJsonExact(source: string): unknown {
  let at = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at character ${at}`);
  };
  const space = () => {
    while (at < source.length && ' \t\r\n'.includes(source[at]!)) at++;
  };
  const value = (): unknown => {
    space();
    const c = source[at];
    if (c === '{') {
      at++;
      const obj: Record<string, unknown> = {};
      space();
      if (source[at] === '}') return at++, obj;
      for (;;) {
        space();
        if (source[at] !== '"') fail('expected a key');
        const key = string();
        space();
        if (source[at++] !== ':') fail("expected ':'");
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true });
        space();
        const next = source[at++];
        if (next === '}') return obj;
        if (next !== ',') fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      at++;
      const list: unknown[] = [];
      space();
      if (source[at] === ']') return at++, list;
      for (;;) {
        list.push(value());
        space();
        const next = source[at++];
        if (next === ']') return list;
        if (next !== ',') fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    LITERAL.lastIndex = at;
    const literal = LITERAL.exec(source);
    if (!literal) return fail('unexpected input');
    const token = literal[0];
    at += token.length;
    if (token === 'true') return true;
    if (token === 'false') return false;
    if (token === 'null') return null;
    if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) return BigInt(token);
    return Number(token);
  };
  const string = (): string => {
    STRING.lastIndex = at;
    const match = STRING.exec(source);
    if (!match) return fail('bad string');
    at += match[0].length;
    return JSON.parse(match[0]) as string;
  };
  const result = value();
  space();
  if (at !== source.length) fail('trailing data');
  return result;
}

/** The image bytes for a crit-style `{magic, entries}` document; `name` labels errors. */
export function encodeCritDocument(name: string, doc: unknown): Buffer {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ImageError(name, 0, 'a {magic, entries} object');
  const { magic, entries } = doc as { magic?: unknown; entries?: unknown };
  const kind = typeof magic === 'string' ? imageKindByName(magic) : undefined;
  if (!kind) throw new ImageError(name, 0, 'a known image magic name', `found ${JSON.stringify(String(magic))}`);
  if (!Array.isArray(entries)) throw new ImageError(name, 0, 'an entries array');
  const items: EntryToWrite[] = entries.map((json, index) => {
    try {
      return entryFromCrit(entryType(kind, index), json);
    } catch (err) {
      if (err instanceof CrrError) throw err;
      throw new ImageError(name, index, `a valid ${entryType(kind, index)} as entry #${index}`, (err as Error).message);
    }
  });
  return encodeImage(kind, items);
}

function parseArgs(argv: string[]): { input: string; output: string } {
  let input: string | undefined;
  let output: string | undefined;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-i' || arg === '--in') input = argv[++i];
    else if (arg === '-o' || arg === '--out') output = argv[++i];
    else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`encode: unknown option '${arg}' (${USAGE})`);
    else positional.push(arg);
  }
  input ??= positional.shift();
  output ??= positional.shift();
  if (positional.length || !input || !output) throw new UsageError(`encode: need an input and an output (${USAGE})`);
  return { input, output };
}

export async function run(argv: string[]): Promise<number> {
  const { input, output } = parseArgs(argv);
  let source: string;
  try {
    source = readFileSync(input === '-' ? 0 : input, 'utf8');
  } catch (err) {
    throw new ImageError(input, 0, 'a readable JSON file', (err as NodeJS.ErrnoException).code);
  }
  let doc: unknown;
  try {
    doc = parseJsonExact(source);
  } catch (err) {
    throw new ImageError(input, 0, 'crit-style JSON', (err as Error).message);
  }
  const bytes = encodeCritDocument(input, doc);
  try {
    if (output === '-') process.stdout.write(bytes);
    else writeFileSync(output, bytes);
  } catch (err) {
    throw new ImageError(output, 0, 'a writable output file', (err as NodeJS.ErrnoException).code);
  }
  return 0;
}
