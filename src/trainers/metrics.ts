// Metrics of a run: namespaced keys (`reward/mean`, `policy/clipFrac`, …; DESIGN.md "Names") written as
// one JSON line per step to <outputDir>/metrics.jsonl and, optionally, a short console line.
import fs from 'node:fs';
import path from 'node:path';

export type Metrics = Record<string, number>;

export class MetricsLogger {
  private readonly file: string | null;
  constructor(outputDir: string | null, private readonly console: boolean = true, append = false) {
    this.file = outputDir ? path.join(outputDir, 'metrics.jsonl') : null;
    if (this.file) {
      fs.mkdirSync(outputDir!, { recursive: true });
      if (!append) fs.writeFileSync(this.file, '');
    }
  }

  log(step: number, metrics: Metrics): void {
    const row = { step, ...metrics };
    if (this.file) fs.appendFileSync(this.file, `${JSON.stringify(row)}\n`);
    if (this.console) console.log(formatMetrics(step, metrics));
  }

  /** Drops lines after `step` (used when resuming from a checkpoint taken at `step`). */
  truncateAfter(step: number): void {
    if (!this.file || !fs.existsSync(this.file)) return;
    const keep = fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= step);
    fs.writeFileSync(this.file, keep.map((l) => `${l}\n`).join(''));
  }
}

const SHOWN = ['loss', 'reward/mean', 'kl/mean', 'policy/clipFrac', 'rewards/accuracies', 'accuracy', 'lr', 'perf/tokensPerSec'];

export function formatMetrics(step: number, m: Metrics): string {
  const parts = SHOWN.filter((k) => k in m).map((k) => `${k}=${fmt(m[k])}`);
  return `step ${step}: ${parts.join('  ')}`;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4);
}

/** Reads a metrics.jsonl back into rows. */
export function readMetrics(file: string): ({ step: number } & Metrics)[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number } & Metrics);
}
