// Loads the native addon (build/Release/llmrl.node, or a prebuilt one) and types its exports.
// Before libtorch loads, it turns on transparent huge pages for large CPU allocations
// (THP_MEM_ALLOC_ENABLE=1; DESIGN.md "CPU performance facts") unless the user set it already.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type Handle = { readonly __llmrlTensor: unique symbol };
export type OptimHandle = { readonly __llmrlOptimizer: unique symbol };

export interface NativeAddon {
  fromBuffer(data: ArrayBuffer | ArrayBufferView, shape: number[], dtype: number, device?: string): Handle;
  toBuffer(h: Handle): ArrayBuffer;
  item(h: Handle): number | boolean;
  shape(h: Handle): number[];
  dtype(h: Handle): number;
  device(h: Handle): string;
  requiresGrad(h: Handle): boolean;
  setRequiresGrad(h: Handle, v: boolean): void;
  isLeaf(h: Handle): boolean;
  grad(h: Handle): Handle | null;
  setGrad(h: Handle, g: Handle | null): void;
  backward(h: Handle, gradient: Handle | null, retainGraph: boolean, createGraph: boolean): void;
  dispose(h: Handle): void;
  isDisposed(h: Handle): boolean;
  isTensor(v: unknown): boolean;
  memory(): { liveTensors: number; bytes: { cpu: number; cuda?: number } };
  memoryStats(): { cpu: { current: number; peak: number } };
  resetPeakMemory(): void;
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  enterInferenceMode(): number;
  exitInferenceMode(): void;
  isInferenceMode(): boolean;
  manualSeed(seed: number | bigint): void;
  getRngState(): Handle;
  setRngState(state: Handle): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  dtypes: Record<string, number>;
  opHandle(name: string, overload?: string): number;
  opSchema(op: number): string;
  call(op: number, ...args: unknown[]): any;
  createAdamW(groups: object[], defaults: object): OptimHandle;
  createSGD(groups: object[], defaults: object): OptimHandle;
  optimStep(h: OptimHandle): void;
  optimZeroGrad(h: OptimHandle, setToNone: boolean): void;
  optimSetLr(h: OptimHandle, lr: number | number[]): void;
  optimGetLr(h: OptimHandle): number[];
  optimGetState(h: OptimHandle): (Record<string, Handle | number> | null)[];
  optimSetState(h: OptimHandle, state: (Record<string, Handle | number> | null)[]): void;
  optimDispose(h: OptimHandle): void;
  clipGradNorm(params: Handle[], maxNorm: number, normType?: number): number;
  buildInfo: {
    torchVersion: string;
    cudaBuilt: boolean;
    llmrlCudaKernels: boolean;
    cudaDeviceCount: number;
    config: string;
    parallel: string;
  };
}

export interface LoadReport {
  addonPath: string | null;
  tried: { path: string; result: string }[];
  hugePages: boolean;
  error?: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// src/native or dist/native → package root
export const packageRoot = path.resolve(here, '..', '..');

function candidates(): string[] {
  const list: string[] = [];
  if (process.env.LLMRL_ADDON) list.push(path.resolve(process.env.LLMRL_ADDON));
  list.push(path.join(packageRoot, 'build', 'Release', 'llmrl.node'));
  list.push(path.join(packageRoot, 'build', 'Debug', 'llmrl.node'));
  const prebuilds = path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  if (fs.existsSync(prebuilds)) {
    for (const f of fs.readdirSync(prebuilds)) if (f.endsWith('.node')) list.push(path.join(prebuilds, f));
  }
  return list;
}

export const loadReport: LoadReport = { addonPath: null, tried: [], hugePages: false };
let addon: NativeAddon | null = null;

/** The loaded addon; throws a clear error (with what was tried and the fix) if it cannot load. */
export function native(): NativeAddon {
  if (addon) return addon;
  if (process.env.THP_MEM_ALLOC_ENABLE === undefined && process.env.LLMRL_HUGE_PAGES !== '0') {
    process.env.THP_MEM_ALLOC_ENABLE = '1';
  }
  loadReport.hugePages = process.env.THP_MEM_ALLOC_ENABLE === '1';
  const require = createRequire(import.meta.url);
  for (const p of candidates()) {
    if (!fs.existsSync(p)) {
      loadReport.tried.push({ path: p, result: 'not found' });
      continue;
    }
    try {
      addon = require(p) as NativeAddon;
      loadReport.addonPath = p;
      loadReport.tried.push({ path: p, result: 'loaded' });
      return addon;
    } catch (e) {
      loadReport.tried.push({ path: p, result: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  loadReport.error =
    'llmrl: the native addon could not be loaded. Tried:\n' +
    loadReport.tried.map((t) => `  ${t.path}: ${t.result}`).join('\n') +
    '\nFix: run `npm run build` (or `node scripts/build-native.mjs`) in the llmrl package folder, ' +
    'then `npx llmrl doctor` to see where libtorch was found.';
  throw new Error(loadReport.error);
}
