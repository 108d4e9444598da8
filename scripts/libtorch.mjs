// Finds libtorch, or provisions it from the torch wheel that pip can fetch (DESIGN.md "libtorch").
// Order, first hit wins: LLMRL_LIBTORCH → the `torch` package of the Python on PATH (located without
// importing it) → a copy already provisioned in the cache → provision one now from `pip download`.
// CLI: `node scripts/libtorch.mjs [--json|--root|--cmake-prefix|--provision]`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** torch version provisioned by default; override with LLMRL_TORCH_VERSION. 2.13 headers need C++17. */
export const DEFAULT_TORCH_VERSION = '2.13.0';

export function cacheDir() {
  return process.env.LLMRL_CACHE ?? path.join(os.homedir(), '.cache', 'llmrl');
}

/** Reads what a libtorch root holds: version, CUDA support. Returns null if `root` is not one. */
export function inspectRoot(root) {
  const lib = path.join(root, 'lib');
  const cmake = path.join(root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake');
  if (!fs.existsSync(path.join(lib, 'libtorch.so')) || !fs.existsSync(cmake)) return null;
  let version = null;
  for (const f of ['version.py', 'build-version']) {
    const p = path.join(root, f);
    if (!fs.existsSync(p)) continue;
    const text = fs.readFileSync(p, 'utf8');
    const m = f === 'version.py' ? text.match(/__version__\s*=\s*'([^']+)'/) : text.match(/^(\S+)/);
    if (m) version = m[1];
    break;
  }
  const cuda = fs.existsSync(path.join(lib, 'libtorch_cuda.so'));
  return { root, lib, cmakePrefix: path.join(root, 'share', 'cmake'), version, cuda };
}

function pythonTorchRoot() {
  // find_spec locates the package without running torch's (slow) import.
  const code = "import importlib.util as u;s=u.find_spec('torch');print(s.submodule_search_locations[0] if s else '')";
  for (const py of ['python3', 'python']) {
    try {
      const out = execFileSync(py, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      return out || null;
    } catch { /* try the next name */ }
  }
  return null;
}

function provisionedRoot(version) {
  return path.join(cacheDir(), `libtorch-${version}`);
}

/** Finds libtorch without downloading. Returns { found, tried: [{ source, path, result }] }. */
export function findLibtorch() {
  const tried = [];
  const check = (source, root) => {
    if (!root) { tried.push({ source, path: null, result: 'not set' }); return null; }
    const info = inspectRoot(root);
    tried.push({ source, path: root, result: info ? `libtorch ${info.version ?? '?'}` : 'no libtorch there' });
    return info ? { ...info, source } : null;
  };
  const version = process.env.LLMRL_TORCH_VERSION ?? DEFAULT_TORCH_VERSION;
  const found =
    check('LLMRL_LIBTORCH', process.env.LLMRL_LIBTORCH) ??
    check('python torch', pythonTorchRoot()) ??
    check('llmrl cache', provisionedRoot(version));
  return { found, tried };
}

/** Provisions libtorch from the torch wheel into the cache folder (only lib/, include/, share/cmake). */
export function provisionLibtorch(version = process.env.LLMRL_TORCH_VERSION ?? DEFAULT_TORCH_VERSION) {
  const dest = provisionedRoot(version);
  if (inspectRoot(dest)) return dest;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-wheel-'));
  try {
    console.error(`llmrl: fetching the torch ${version} wheel with pip (one time, into ${dest})`);
    const spec = process.env.LLMRL_TORCH_WHEEL ? [process.env.LLMRL_TORCH_WHEEL] : [`torch==${version}`];
    execFileSync('python3', ['-m', 'pip', 'download', '--no-deps', '--retries', '0', '--timeout', '5',
      '-d', tmp, ...spec], { stdio: ['ignore', 'ignore', 'inherit'] });
    const wheel = fs.readdirSync(tmp).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new Error(`pip download produced no wheel for ${spec[0]}`);
    const stage = `${dest}.partial-${process.pid}`;
    fs.rmSync(stage, { recursive: true, force: true });
    fs.mkdirSync(stage, { recursive: true });
    execFileSync('python3', ['-c', UNPACK, path.join(tmp, wheel), stage], { stdio: 'inherit' });
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(stage, dest); // atomic: a half-unpacked copy is never found
    return dest;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// Unpacks torch/{lib,include,share/cmake,version.py} from a wheel, keeping executable bits off.
const UNPACK = `
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
keep = ('torch/lib/', 'torch/include/', 'torch/share/cmake/', 'torch/version.py')
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(keep) and not n.endswith('/'):
            if n.startswith('torch/lib/') and 'libtorch_python' in n: continue
            target = os.path.join(out, n[len('torch/'):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, 'wb') as dst:
                dst.write(src.read())
`;

/** Finds libtorch, provisioning it if nothing is found. */
export function ensureLibtorch() {
  const { found, tried } = findLibtorch();
  if (found) return { ...found, tried };
  const root = provisionLibtorch();
  return { ...inspectRoot(root), source: 'llmrl cache (provisioned now)', tried };
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = process.argv[2] ?? '--json';
  const info = arg === '--find' ? findLibtorch().found : ensureLibtorch();
  if (!info) { console.error('libtorch not found'); process.exit(1); }
  if (arg === '--root') console.log(info.root);
  else if (arg === '--cmake-prefix') console.log(info.cmakePrefix);
  else if (arg === '--lib') console.log(info.lib);
  else console.log(JSON.stringify(info, null, 2));
}
