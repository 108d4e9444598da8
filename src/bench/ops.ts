// `llmrl bench ops` (npm run bench:ops): every fused op against the same math composed from plain
// tensor ops through llmrl's own tensor layer, forward and forward+backward — median ms and peak extra
// memory. Each op's cases live in src/bench/ops/<op>.ts exporting `cases(quick: boolean): BenchCase[]`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { machineLine, measure, table, type BenchRow } from './harness.js';

export interface BenchCase {
  name: string;
  /** First variant is the baseline (the composed math). Each fn does one call (and backward if fwd+bwd). */
  variants: { variant: string; fn: () => void }[];
  /** Builds inputs before timing; returns a disposer. */
  setup?: () => () => void;
  repeats?: number;
}

export async function benchOps(opts: { quick?: boolean; filter?: string; json?: boolean } = {}): Promise<BenchRow[]> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ops');
  const files = fs.readdirSync(dir).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts')).sort();
  const rows: BenchRow[] = [];
  console.log(`llmrl bench ops — ${machineLine()}\n`);
  for (const f of files) {
    const mod = (await import(pathToFileURL(path.join(dir, f)).href)) as { cases(quick: boolean): BenchCase[] };
    for (const c of mod.cases(opts.quick ?? false)) {
      if (opts.filter && !c.name.includes(opts.filter)) continue;
      const dispose = c.setup?.();
      try {
        for (const v of c.variants) {
          const r = measure(c.name, v.variant, v.fn, c.repeats ?? 5);
          rows.push(r);
          if (!opts.json) console.log(`${c.name} — ${v.variant}: ${r.medianMs.toFixed(1)} ms, peak extra ${(r.peakExtraBytes / 2 ** 20).toFixed(1)} MiB`);
        }
      } finally {
        dispose?.();
      }
    }
  }
  console.log(opts.json ? JSON.stringify(rows, null, 2) : `\n${table(rows)}`);
  return rows;
}
