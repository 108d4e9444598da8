// `npm run cuda-check`: compiles (does not run) every CUDA kernel, native/ops/*/cuda.cu, with nvcc
// against the CUDA torch wheel's headers, so CUDA compile errors show up on machines without a GPU
// (DESIGN.md "libtorch": the CPU wheel lacks c10/cuda/impl/cuda_cmake_macros.h). The headers are fetched
// once with pip into <llmrl cache>/torch-cuda-headers-<version>: include/ from the torch wheel, and
// cuda-libs/include/ from the cuBLAS/cuSPARSE/cuSOLVER wheels it pins (ATen/cuda/CUDAContext.h needs
// them and a bare CUDA toolkit may lack them). Headers only; the wheels (~1.3 GB) are deleted.
//
// Flags: --list (print the files and stop), --force (recompile even if up to date), --verbose (show
// warnings and the nvcc command lines), --jobs N (default 2, or LLMRL_BUILD_JOBS).
// Env: LLMRL_TORCH_CUDA_VERSION (default 2.14.1, whose headers need C++20), LLMRL_TORCH_CUDA_WHEEL (a
// wheel file or pip spec to take torch's headers from instead), LLMRL_CUDA_ARCHS (default "80;90"),
// NVCC (the nvcc to use; else PATH, $CUDA_HOME/bin, /usr/local/cuda/bin), CUDAHOSTCXX (host compiler).
// Objects go to build/cuda-check/ and are reused while the source, every header it read (nvcc -MD) and
// the flags are unchanged. Exit status: 0 when every file compiles (or nvcc is absent: skipped), else 1.
// About 1.5 min per file on a 2-core machine (ATen's headers through nvcc's front ends, twice per arch).
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from './libtorch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_TORCH_CUDA_VERSION = '2.14.1';

/** Every CUDA source of the op library, repo-relative, sorted. */
export function cudaSources() {
  const ops = path.join(root, 'native', 'ops');
  return fs.readdirSync(ops, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(ops, d.name, 'cuda.cu')))
    .map((d) => path.posix.join('native', 'ops', d.name, 'cuda.cu'))
    .sort();
}

/** The nvcc to use, or null when there is none. */
export function findNvcc() {
  const candidates = [];
  if (process.env.NVCC) candidates.push(process.env.NVCC);
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir) candidates.push(path.join(dir, 'nvcc'));
  if (process.env.CUDA_HOME) candidates.push(path.join(process.env.CUDA_HOME, 'bin', 'nvcc'));
  candidates.push('/usr/local/cuda/bin/nvcc');
  for (const c of candidates) {
    try { fs.accessSync(c, fs.constants.X_OK); return c; } catch { /* next */ }
  }
  return null;
}

// Present only in a CUDA build of torch (the CPU wheel lacks it), and in the math libraries' wheels.
const HEADER_MARKS = [path.join('include', 'c10', 'cuda', 'impl', 'cuda_cmake_macros.h'),
  ...['cublas_v2.h', 'cublasLt.h', 'cusparse.h', 'cusolverDn.h'].map((h) => path.join('cuda-libs', 'include', h))];

function pipDownload(specs, dir, { deps = false } = {}) {
  execFileSync('python3', ['-m', 'pip', 'download', ...(deps ? [] : ['--no-deps']), '--retries', '0', '--timeout', '5',
    '-d', dir, ...specs], { stdio: ['ignore', 'ignore', 'inherit'] });
}

const wheelMetadata = (wheel) => execFileSync('python3', ['-c', WHEEL_METADATA, wheel], { encoding: 'utf8' });

// ATen/cuda/CUDAContext.h (which kernels include for the current stream) includes cuBLAS, cuSPARSE and
// cuSOLVER headers; a bare CUDA toolkit may lack them, so they come from the same NVIDIA wheels that the
// torch wheel depends on, at the versions it pins (directly, or through the cuda-toolkit meta-package).
function mathLibSpecs(torchWheel, tmp) {
  const libs = ['cublas', 'cusparse', 'cusolver'];
  const req = (meta) => meta.split('\n').filter((l) => l.startsWith('Requires-Dist:')).map((l) => l.slice(14).trim());
  const torchReqs = req(wheelMetadata(torchWheel));
  const direct = torchReqs.map((r) => /^(nvidia-(?:cublas|cusparse|cusolver)(?:-cu\d+)?)(?![\w-])\s*(==[^;\s]+)?/.exec(r))
    .filter(Boolean).map((m) => `${m[1]}${m[2] ?? ''}`);
  if (direct.length) return direct;
  const toolkit = torchReqs.map((r) => /^cuda-toolkit(\[[^\]]*\])?\s*(==[^;\s]+)/.exec(r)).find(Boolean);
  if (!toolkit) throw new Error(`${path.basename(torchWheel)} names no cuBLAS/cuSPARSE/cuSOLVER wheels: not a CUDA build of torch`);
  const dir = path.join(tmp, 'toolkit');
  pipDownload([`cuda-toolkit${toolkit[2]}`], dir);
  const meta = wheelMetadata(path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.whl'))));
  const specs = [];
  for (const lib of libs) {
    const m = req(meta).map((r) => new RegExp(`^(nvidia-${lib}(?:-cu\\d+)?)(?![\\w-])\\s*(==[^;\\s]+)?;.*extra == '${lib}'`).exec(r))
      .find(Boolean);
    if (!m) throw new Error(`cuda-toolkit${toolkit[2]} names no nvidia-${lib} wheel`);
    specs.push(`${m[1]}${m[2] ?? ''}`);
  }
  return specs;
}

/**
 * Ensures the CUDA torch wheel's headers (include/) and the cuBLAS/cuSPARSE/cuSOLVER headers it needs
 * (cuda-libs/include/) are in the cache; returns that folder. The wheels are fetched with pip once,
 * unpacked headers only into a stage folder renamed into place, and deleted.
 */
export function ensureCudaHeaders(version = process.env.LLMRL_TORCH_CUDA_VERSION ?? DEFAULT_TORCH_CUDA_VERSION) {
  const dest = path.join(cacheDir(), `torch-cuda-headers-${version}`);
  if (HEADER_MARKS.every((m) => fs.existsSync(path.join(dest, m)))) return dest;
  const t0 = Date.now();
  const spec = process.env.LLMRL_TORCH_CUDA_WHEEL ?? `torch==${version}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-cuda-wheel-'));
  const stage = `${dest}.partial-${process.pid}`;
  try {
    let torchWheel = spec;
    if (!(spec.endsWith('.whl') && fs.existsSync(spec))) {
      console.log(`cuda-check: fetching the torch ${version} (CUDA) wheel with pip for its headers (one time, into ${dest})`);
      const dir = path.join(tmp, 'torch');
      pipDownload([spec], dir);
      const name = fs.readdirSync(dir).find((f) => f.endsWith('.whl'));
      if (!name) throw new Error(`pip download produced no wheel for ${spec}`);
      torchWheel = path.join(dir, name);
    }
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.rmSync(stage, { recursive: true, force: true });
    fs.mkdirSync(stage, { recursive: true });
    execFileSync('python3', ['-c', UNPACK, torchWheel, stage, '^torch/(include/.+)$'], { stdio: 'inherit' });
    if (!fs.existsSync(path.join(stage, HEADER_MARKS[0]))) {
      throw new Error(`${path.basename(torchWheel)} has no torch/${HEADER_MARKS[0]}: not a CUDA build of torch`);
    }
    const specs = mathLibSpecs(torchWheel, tmp);
    if (torchWheel.startsWith(tmp)) fs.rmSync(torchWheel); // ~550 MB: drop before fetching the next ones
    console.log(`cuda-check: fetching ${specs.join(', ')} with pip for their headers (one time)`);
    const libs = path.join(tmp, 'libs');
    pipDownload(specs, libs);
    for (const w of fs.readdirSync(libs).filter((f) => f.endsWith('.whl'))) {
      execFileSync('python3', ['-c', UNPACK, path.join(libs, w), path.join(stage, 'cuda-libs'), '^nvidia/(?:[^/]+/)?(include/.+)$'],
        { stdio: 'inherit' });
      fs.rmSync(path.join(libs, w)); // hundreds of MB each: drop as soon as unpacked
    }
    const missing = HEADER_MARKS.filter((m) => !fs.existsSync(path.join(stage, m)));
    if (missing.length) throw new Error(`the fetched wheels lack ${missing.join(', ')}`);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(stage, dest); // atomic: a half-unpacked copy is never used
    console.log(`cuda-check: headers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return dest;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
    fs.rmSync(tmp, { recursive: true, force: true }); // the wheels are ~1.3 GB together: never kept
  }
}

// Unpacks the members of a wheel whose name matches a regex to out/<first group> (headers only).
const UNPACK = `
import sys, zipfile, os, re
whl, out, pattern = sys.argv[1], sys.argv[2], re.compile(sys.argv[3])
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        m = pattern.match(n)
        if m and not n.endswith('/'):
            target = os.path.join(out, m.group(1))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, 'wb') as dst:
                dst.write(src.read())
`;

const WHEEL_METADATA = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
    sys.stdout.write(z.read(name).decode('utf-8', 'replace'))
`;

/** nvcc flags for one compile, matching torch.utils.cpp_extension's plus the project's own. */
export function nvccFlags(hdr) {
  const archs = (process.env.LLMRL_CUDA_ARCHS ?? '80;90').split(/[;, ]+/).filter(Boolean);
  const flags = [
    '-std=c++20',
    '-I', path.join(root, 'native', 'ops'),
    '-isystem', path.join(hdr, 'include'),
    '-isystem', path.join(hdr, 'include', 'torch', 'csrc', 'api', 'include'),
    '-isystem', path.join(hdr, 'cuda-libs', 'include'),
    '-DLLMRL_WITH_CUDA=1',
    '-D_GLIBCXX_USE_CXX11_ABI=1',
    // torch.utils.cpp_extension.COMMON_NVCC_FLAGS: ATen's own half/bfloat16 types, not CUDA's operators
    '-D__CUDA_NO_HALF_OPERATORS__', '-D__CUDA_NO_HALF_CONVERSIONS__',
    '-D__CUDA_NO_BFLOAT16_CONVERSIONS__', '-D__CUDA_NO_HALF2_OPERATORS__',
    '--expt-relaxed-constexpr',
    '-Xcompiler', '-fPIC',
    ...archs.flatMap((a) => [`-gencode=arch=compute_${a},code=sm_${a}`]),
  ];
  if (process.env.CUDAHOSTCXX) flags.unshift('-ccbin', process.env.CUDAHOSTCXX);
  return flags;
}

function nvccVersion(nvcc) {
  try {
    const out = execFileSync(nvcc, ['--version'], { encoding: 'utf8' });
    return /release ([\d.]+)/.exec(out)?.[1] ?? '?';
  } catch { return '?'; }
}

// Up to date when the object, its dependency file and flag stamp exist, the flags match and no
// dependency (source or header, as nvcc -MD listed them) is newer than the object.
function upToDate(obj, depFile, stampFile, stamp) {
  try {
    if (fs.readFileSync(stampFile, 'utf8') !== stamp) return false;
    const objTime = fs.statSync(obj).mtimeMs;
    const deps = fs.readFileSync(depFile, 'utf8').replace(/\\\n/g, ' ').split(':').slice(1).join(':')
      .split(/\s+/).filter(Boolean).map((p) => p.replace(/\\ /g, ' '));
    if (deps.length === 0) return false;
    return deps.every((p) => fs.statSync(p).mtimeMs <= objTime);
  } catch { return false; }
}

function compile(nvcc, src, flags, outDir, verbose) {
  const stem = src.split('/').slice(-2, -1)[0];
  const obj = path.join(outDir, `${stem}.cuda.o`);
  const dep = path.join(outDir, `${stem}.cuda.d`);
  const stampFile = path.join(outDir, `${stem}.cuda.flags`);
  const args = [...flags, '-MD', '-MF', dep, '-c', path.join(root, src), '-o', obj];
  const stamp = crypto.createHash('sha256').update(`${nvcc}\n${args.join('\n')}`).digest('hex');
  const start = Date.now();
  if (!force && upToDate(obj, dep, stampFile, stamp)) {
    return Promise.resolve({ src, ok: true, cached: true, seconds: 0, output: '' });
  }
  fs.rmSync(stampFile, { force: true });
  if (verbose) console.log(`$ ${nvcc} ${args.join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn(nvcc, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.on('error', (e) => { output += String(e); });
    child.on('close', (code) => {
      const ok = code === 0;
      if (ok) {
        // dated to the compile's start, so a source edited while nvcc ran counts as newer next time
        fs.utimesSync(obj, new Date(start), new Date(start));
        fs.writeFileSync(stampFile, stamp);
      }
      resolve({ src, ok, cached: false, seconds: (Date.now() - start) / 1000, output });
    });
  });
}

// The first error and what follows it (nvcc prints the instantiation context after the error).
function firstErrorLines(output, max = 14) {
  const lines = output.split('\n').filter((l) => l.trim());
  const i = lines.findIndex((l) => /\berror\b/i.test(l));
  return lines.slice(i < 0 ? Math.max(0, lines.length - max) : i, (i < 0 ? lines.length : i + max))
    .map((l) => l.replaceAll(`${root}/`, ''));
}

const argv = process.argv.slice(2);
const force = argv.includes('--force');

async function main() {
  const verbose = argv.includes('--verbose');
  const jobsArg = argv.indexOf('--jobs');
  const jobs = Math.max(1, Number(jobsArg >= 0 ? argv[jobsArg + 1] : process.env.LLMRL_BUILD_JOBS ?? 2) || 1);
  const sources = cudaSources();
  if (argv.includes('--list')) {
    for (const s of sources) console.log(s);
    return 0;
  }
  const nvcc = findNvcc();
  if (!nvcc) {
    console.log('cuda-check: nvcc not found (PATH, $NVCC, $CUDA_HOME/bin, /usr/local/cuda/bin); skipping the CUDA compile check');
    return 0;
  }
  if (sources.length === 0) {
    console.log('cuda-check: no native/ops/*/cuda.cu files; nothing to compile');
    return 0;
  }
  const t0 = Date.now();
  const hdr = ensureCudaHeaders();
  const flags = nvccFlags(hdr);
  const outDir = path.join(root, 'build', 'cuda-check');
  fs.mkdirSync(outDir, { recursive: true });
  console.log(`cuda-check: nvcc ${nvccVersion(nvcc)} (${nvcc}), torch headers ${path.basename(hdr)}, ` +
    `${sources.length} file(s), ${jobs} job(s)`);

  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < sources.length) {
      const src = sources[next++];
      const r = await compile(nvcc, src, flags, outDir, verbose);
      results.push(r);
      if (r.ok) {
        const warnings = r.output.split('\n').filter((l) => /\bwarning\b/i.test(l));
        const note = r.cached ? 'up to date' : `${r.seconds.toFixed(1)} s`;
        console.log(`ok      ${src} (${note}${warnings.length ? `, ${warnings.length} warning line(s)` : ''})`);
        if (verbose && r.output.trim()) console.log(r.output.trimEnd());
      } else {
        console.log(`FAILED  ${src} (${r.seconds.toFixed(1)} s)`);
        for (const l of (verbose ? r.output.split('\n') : firstErrorLines(r.output))) console.log(`    ${l}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, sources.length) }, worker));
  const failed = results.filter((r) => !r.ok);
  const cached = results.filter((r) => r.cached).length;
  console.log(`cuda-check: ${results.length - failed.length} ok, ${failed.length} failed` +
    `${cached ? ` (${cached} up to date)` : ''} in ${((Date.now() - t0) / 1000).toFixed(1)} s` +
    (failed.length ? `; rerun with --verbose for the full nvcc output` : ''));
  return failed.length ? 1 : 0;
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((code) => process.exit(code), (e) => {
    console.error(`cuda-check: ${e.message}`);
    process.exit(1);
  });
}
