// Builds the node-gyp twin (binding.gyp) in a staging folder, build-gyp/, so that it does not touch
// the cmake-js build in build/. Proves the addon builds with node-gyp too: `npm run build:gyp`.
// The result is build-gyp/build/Release/llmrl.node (load it with LLMRL_ADDON=<that path>).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ensureLibtorch } from './libtorch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stage = path.join(root, 'build-gyp');
ensureLibtorch();
fs.mkdirSync(stage, { recursive: true });
for (const item of ['binding.gyp', 'native', 'scripts']) {
  fs.rmSync(path.join(stage, item), { recursive: true, force: true });
  fs.cpSync(path.join(root, item), path.join(stage, item), { recursive: true });
}
fs.rmSync(path.join(stage, 'node_modules'), { force: true, recursive: true });
fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
const require = createRequire(import.meta.url);
const gyp = path.join(path.dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
// Offline: build against the Node headers installed with this Node (its prefix's include/node),
// never a headers download. npm's `nodedir` setting wins when set.
const nodedir = process.env.npm_config_nodedir ?? path.resolve(path.dirname(process.execPath), '..');
if (!fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) {
  throw new Error(`llmrl: no Node headers under ${nodedir}/include/node; set npm_config_nodedir to a Node source or headers folder`);
}
execFileSync(process.execPath, [gyp, 'rebuild', '--jobs', process.env.LLMRL_BUILD_JOBS ?? '2', `--nodedir=${nodedir}`], { cwd: stage, stdio: 'inherit' });
console.log(`llmrl: node-gyp built ${path.relative(root, path.join(stage, 'build', 'Release', 'llmrl.node'))}`);
