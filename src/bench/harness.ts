// Benchmark helpers shared by `llmrl bench …`: median wall time and peak extra CPU bytes of a
// function (through the counting allocator, so "extra" means beyond what was live before the call),
// and Markdown table output. Timed code runs inside tidy so every round frees what it made.
import os from 'node:os';
import { native } from '../native/addon.js';
import { memoryStats, resetPeakMemory, tidy } from '../tensor/index.js';

export interface BenchRow {
  /** e.g. 'tokenLogprobs fwd+bwd [4096, 32000] float32' */
  case: string;
  /** 'fused' | 'composed' | … */
  variant: string;
  medianMs: number;
  /** Peak CPU bytes allocated during one call beyond those live before it. */
  peakExtraBytes: number;
}

/** Median milliseconds of `fn` over `repeats` runs after `warmup` runs. */
export function medianMs(fn: () => void, repeats = 5, warmup = 1): number {
  for (let i = 0; i < warmup; i++) tidy(fn);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    tidy(fn);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Peak CPU bytes allocated while `fn` runs, beyond what was allocated before it. */
export function peakExtraBytes(fn: () => void): number {
  resetPeakMemory();
  const before = memoryStats().cpu.current;
  tidy(fn);
  return memoryStats().cpu.peak - before;
}

/** Runs one variant: time and memory. */
export function measure(caseName: string, variant: string, fn: () => void, repeats = 5): BenchRow {
  const peak = peakExtraBytes(fn);
  return { case: caseName, variant, medianMs: medianMs(fn, repeats), peakExtraBytes: peak };
}

export function machineLine(): string {
  const n = native();
  return `${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, libtorch ${n.buildInfo.torchVersion}, ${n.getNumThreads()} threads, THP_MEM_ALLOC_ENABLE=${process.env.THP_MEM_ALLOC_ENABLE ?? 'unset'}`;
}

const mb = (b: number) => (b / 2 ** 20).toFixed(1);

/** Markdown table; rows of one case are compared against the case's first row (the baseline). */
export function table(rows: BenchRow[]): string {
  const lines = ['| case | variant | median ms | speed-up vs first | peak extra MiB | memory vs first |', '|---|---|---:|---:|---:|---:|'];
  const base = new Map<string, BenchRow>();
  for (const r of rows) {
    if (!base.has(r.case)) base.set(r.case, r);
    const b = base.get(r.case)!;
    lines.push(`| ${r.case} | ${r.variant} | ${r.medianMs.toFixed(1)} | ${(b.medianMs / r.medianMs).toFixed(2)}× | ${mb(r.peakExtraBytes)} | ${b.peakExtraBytes ? (r.peakExtraBytes / b.peakExtraBytes).toFixed(3) : 'n/a'} |`);
  }
  return lines.join('\n');
}
