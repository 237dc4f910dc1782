// Makes dist-cjs/ (the second half of `npm run build:ts`): a CommonJS copy of dist/ that
// bin/crr.js runs. Node 20 loads CommonJS about twice as fast as ES modules, and only CommonJS
// can be given a V8 code cache there (Node 20 has no compile cache for ES modules;
// src/cli/code-cache.ts): the CLI's start-up is mostly loading ~90 modules. The library
// (package.json "exports") stays ES modules in dist/.
//
// Each dist/ module is turned into CommonJS by TypeScript's own transpiler. Two rewrites are made
// by hand: import.meta.url, which the transpiler leaves as it is (CommonJS has __filename), and
// the source-map comment (the maps describe dist/).
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const from = join(root, 'dist');
const to = join(root, 'dist-cjs');

function* modules(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* modules(path);
    else if (entry.name.endsWith('.js')) yield path;
  }
}

const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
const IMPORT_META_URL = /\bimport\.meta\.url\b/g;

rmSync(to, { recursive: true, force: true });
let count = 0;
for (const path of modules(from)) {
  const { outputText } = ts.transpileModule(readFileSync(path, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, ''), {
    compilerOptions,
    fileName: path,
  });
  const out = join(to, relative(from, path));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, outputText.replace(IMPORT_META_URL, "require('node:url').pathToFileURL(__filename).href"));
  count++;
}
// The package is "type": "module"; this folder's .js files are CommonJS.
writeFileSync(join(to, 'package.json'), '{ "type": "commonjs" }\n');
console.error(`build-cjs: ${count} modules in dist-cjs/`);
