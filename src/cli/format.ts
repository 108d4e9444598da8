// Text formatting shared by the CLI's outputs: numbers on log lines, on the progress bar and in
// report.html tables, durations, and plain-text tables.

/** A number for a log line or text table: 4 decimals, exponent for tiny/huge values, '-' when absent. */
export function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return v === undefined ? '-' : String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4);
}

/** A short number (the bar, report tables): 3 significant digits (0.41, 0.0031, 0.123, 1.2e-5). */
export function short(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  return a < 1e-4 || a >= 1e6 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

/** Seconds as `45s`, `1m12s`, `2h05m`; `--` when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A plain-text table (first column left-aligned, numbers through `fmt`). */
export function textTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((v) => (typeof v === 'number' ? fmt(v) : v)))];
  const w = header.map((_, j) => Math.max(...cells.map((r) => String(r[j] ?? '').length)));
  const line = (r: (string | number)[]) => r.map((v, j) => (j === 0 ? String(v).padEnd(w[j]) : String(v).padStart(w[j]))).join('  ');
  return [line(cells[0]), w.map((n) => '-'.repeat(n)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
