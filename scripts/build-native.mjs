// Builds the native addon and op library with cmake-js (N-API headers from node-api-headers, nothing
// downloaded), after finding or provisioning libtorch (scripts/libtorch.mjs). Runs on `npm install`.
// Flags: --force (clean rebuild), --debug. Env: LLMRL_SKIP_BUILD=1 skips (e.g. prebuilt binary in use);
// LLMRL_BUILD_DIR=build-x builds elsewhere; LLMRL_OPS=a;b builds only those ops (for op development).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ensureLibtorch } from './libtorch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

if (process.env.LLMRL_SKIP_BUILD === '1') {
  console.log('llmrl: LLMRL_SKIP_BUILD=1, not building the native addon');
  process.exit(0);
}

const torch = ensureLibtorch();
console.log(`llmrl: libtorch ${torch.version} (${torch.source}) at ${torch.root}`);
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const addonApi = require('node-addon-api').include_dir ?? require('node-addon-api').include.replace(/"/g, '');
const buildDir = process.env.LLMRL_BUILD_DIR ?? 'build';
const args = [
  cmakeJs, process.argv.includes('--force') ? 'rebuild' : 'compile',
  '--directory', root, '--out', path.resolve(root, buildDir),
  '--parallel', String(Math.max(1, Number(process.env.LLMRL_BUILD_JOBS ?? 2))),
  `--CDCMAKE_PREFIX_PATH=${torch.cmakePrefix}`,
  `--CDNODE_ADDON_API_DIR=${path.resolve(root, addonApi)}`,
];
if (process.argv.includes('--debug')) args.push('--debug');
if (process.env.LLMRL_CUDA === '0') args.push('--CDLLMRL_CUDA=OFF');
if (process.env.LLMRL_OPS !== undefined) args.push(`--CDLLMRL_OPS=${process.env.LLMRL_OPS}`);
execFileSync(process.execPath, args, { stdio: 'inherit', cwd: root });
const built = path.join(path.resolve(root, buildDir), process.argv.includes('--debug') ? 'Debug' : 'Release', 'llmrl.node');
if (!fs.existsSync(built)) throw new Error(`llmrl: the build finished but ${built} is missing`);
console.log(`llmrl: built ${path.relative(root, built)}`);
