// `llmrl doctor`: what llmrl found and chose — Node and N-API, libtorch (every place tried), the addon
// file, CUDA, threads, huge pages — with the fix for each failure.
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadReport, native, packageRoot } from '../native/addon.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

interface LibtorchInfo {
  root: string;
  version: string | null;
  cuda: boolean;
  source: string;
}

export async function doctor(opts: { json?: boolean } = {}): Promise<boolean> {
  const checks: Check[] = [];
  checks.push({ name: 'node', ok: Number(process.versions.node.split('.')[0]) >= 20, detail: `${process.version} (N-API ${process.versions.napi})`, fix: 'install Node.js 20.17 or newer' });
  checks.push({ name: 'machine', ok: true, detail: `${os.platform()}-${os.arch()}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB` });

  // libtorch as the build would find it (no provisioning here).
  try {
    const mod = (await import(pathToFileURL(path.join(packageRoot, 'scripts', 'libtorch.mjs')).href)) as {
      findLibtorch(): { found: LibtorchInfo | null; tried: { source: string; path: string | null; result: string }[] };
    };
    const { found, tried } = mod.findLibtorch();
    const triedText = tried.map((t) => `${t.source}: ${t.path ?? '(unset)'} → ${t.result}`).join('; ');
    checks.push(found
      ? { name: 'libtorch', ok: true, detail: `${found.version} from ${found.source} at ${found.root} (CUDA ${found.cuda ? 'yes' : 'no'}). Tried: ${triedText}` }
      : { name: 'libtorch', ok: false, detail: `not found. Tried: ${triedText}`, fix: 'run `node scripts/libtorch.mjs` to provision it from the torch wheel via pip, or set LLMRL_LIBTORCH to a libtorch root or a site-packages/torch folder' });
  } catch (e) {
    checks.push({ name: 'libtorch', ok: false, detail: `could not run the locator: ${(e as Error).message}`, fix: 'reinstall llmrl (scripts/libtorch.mjs is missing)' });
  }

  let addonOk = false;
  try {
    const n = native();
    addonOk = true;
    const b = n.buildInfo;
    checks.push({ name: 'addon', ok: true, detail: `${loadReport.addonPath} (libtorch ${b.torchVersion})` });
    const hasOps = (() => { try { n.opHandle('llmrl::kl_penalty', ''); return true; } catch { return false; } })();
    checks.push({ name: 'fused ops', ok: hasOps, detail: hasOps ? 'llmrl::* ops registered' : 'llmrl ops missing', fix: 'rebuild: `npm run build` (the op library must be linked as a shared library)' });
    checks.push({ name: 'cuda', ok: true, detail: b.cudaBuilt ? `libtorch with CUDA, ${b.cudaDeviceCount} device(s); llmrl CUDA kernels ${b.llmrlCudaKernels ? 'built' : 'not built'}` : 'CPU-only libtorch (set LLMRL_LIBTORCH to a CUDA libtorch and rebuild for GPUs)' });
    checks.push({ name: 'threads', ok: true, detail: `${n.getNumThreads()} intra-op threads` });
    checks.push({ name: 'huge pages', ok: true, detail: loadReport.hugePages ? 'THP_MEM_ALLOC_ENABLE=1 (large CPU allocations use transparent huge pages; LLMRL_HUGE_PAGES=0 turns it off)' : 'off (THP_MEM_ALLOC_ENABLE is not 1): large fresh CPU allocations will be slower' });
    const t = n.call(n.opHandle('aten::add', 'Tensor'), n.fromBuffer(new Float32Array([1, 2]), [2], n.dtypes.float32), n.fromBuffer(new Float32Array([3, 4]), [2], n.dtypes.float32));
    const sum = Array.from(new Float32Array(n.toBuffer(t)));
    checks.push({ name: 'smoke op', ok: sum[0] === 4 && sum[1] === 6, detail: `[1,2]+[3,4] = [${sum.join(',')}]` });
  } catch (e) {
    checks.push({ name: 'addon', ok: false, detail: (e as Error).message, fix: 'run `npm run build` in the llmrl folder' });
  }

  if (opts.json) console.log(JSON.stringify({ ok: checks.every((c) => c.ok), checks }, null, 2));
  else {
    for (const c of checks) {
      console.log(`${c.ok ? '✓' : '✗'} ${c.name.padEnd(11)} ${c.detail}`);
      if (!c.ok && c.fix) console.log(`  fix: ${c.fix}`);
    }
  }
  return addonOk && checks.every((c) => c.ok);
}
