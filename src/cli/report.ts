// A self-contained report.html for a run (or several): inline SVG line charts of metrics over steps,
// no scripts, no network. Long runs are drawn as a debiased exponential moving average (TensorBoard's
// smoothing) over the faint raw per-step values. Written atomically (temporary file + rename).
import fs from 'node:fs';
import path from 'node:path';
import { short } from './format.js';

export type MetricRow = { step: number } & Record<string, number>;
export interface Series { label: string; rows: MetricRow[] }

/** A chart: its title and the metric keys tried in order per series (the first one present wins). */
export interface ChartSpec { title: string; keys: string[] }

/** The charts a report shows by default. */
export const REPORT_CHARTS: ChartSpec[] = [
  { title: 'Reward', keys: ['reward/mean'] },
  { title: 'KL to reference', keys: ['kl/mean', 'objective/kl'] },
  { title: 'Loss', keys: ['loss'] },
  { title: 'Entropy', keys: ['policy/entropy', 'entropy'] },
  { title: 'Clip fraction', keys: ['policy/clipFrac'] },
  // Not a KL to the reference: how far each update moved from the rollout (old) policy.
  { title: 'Approx. KL to the rollout policy', keys: ['policy/approxKl'] },
  // DPO's implicit reward margin β·(log-ratio chosen − rejected); a reward model's score margin.
  { title: 'Preference margin', keys: ['rewards/margins', 'margin'] },
  { title: 'Accuracy', keys: ['accuracy', 'rewards/accuracies', 'eval/accuracy'] },
];

// One colour per series, the same in every chart (tab10).
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];

/** Runs longer than this many points are smoothed. */
const SMOOTH_FROM = 50;

/**
 * Debiased EMA of `ys` (as TensorBoard: s_t = β·s_{t−1} + (1−β)·y_t, divided by 1 − β^t), with β set so
 * the effective window is ~1/40 of the run: 600 steps → a 15-step window.
 */
export function smooth(ys: number[]): number[] {
  const beta = 1 - 1 / Math.max(1, ys.length / 40);
  let s = 0;
  let w = 0;
  return ys.map((y) => {
    s = beta * s + (1 - beta) * y;
    w = beta * w + (1 - beta);
    return s / w;
  });
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A 1/2/5 × 10^k step giving about `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

/** Tick values: multiples of `step` in [lo, hi]. */
function ticks(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

/** Tick labels precise enough to tell neighbouring ticks apart (2.5765, 2.577 — not 2.58, 2.58). */
function tickLabels(values: number[], step: number): string[] {
  const maxAbs = Math.max(...values.map(Math.abs));
  if (maxAbs >= 1e5 || maxAbs < 1e-3) {
    const digits = Math.max(0, Math.floor(Math.log10(maxAbs || 1)) - Math.floor(Math.log10(step)));
    return values.map((v) => (v === 0 ? '0' : v.toExponential(digits)));
  }
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return values.map((v) => (Math.abs(v) < step / 2 ? '0' : v.toFixed(decimals)));
}

/**
 * One SVG line chart of the first present key of `keys` per series, null when no series has one. Series
 * keep their colour across charts (by index in `series`); the legend sits under the plot, never on it.
 */
export function svgChart(title: string, keys: string[], series: Series[], w = 460, h = 260): string | null {
  const lines: { label: string; pts: [number, number][]; key: string; color: string }[] = [];
  series.forEach((s, si) => {
    const key = keys.find((k) => s.rows.some((r) => Number.isFinite(r[k])));
    if (!key) return;
    lines.push({ label: s.label, key, color: COLORS[si % COLORS.length], pts: s.rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.step, r[key]]) });
  });
  if (lines.length === 0) return null;
  const all = lines.flatMap((l) => l.pts);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  // y: 5% margins (lines stay off the frame), ticks at round values inside; x: whole steps.
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const ys = niceStep(y1 - y0, 4);
  const xs = Math.max(1, Math.round(niceStep(x1 - x0, 5)));
  const yt = ticks(y0, y1, ys);
  const yl = tickLabels(yt, ys);
  const xt = ticks(x0, x1, xs);
  // Legend entries (swatch + "label · key") in rows under the plot; ~6.2 px per 11 px character.
  const legend = lines.map((l) => ({ text: `${l.label} · ${l.key}`, color: l.color }));
  const rows: { text: string; color: string; x: number }[][] = [[]];
  let cx = 0;
  for (const e of legend) {
    const ew = 22 + e.text.length * 6.2 + 14;
    if (cx > 0 && cx + ew > w - 16) { rows.push([]); cx = 0; }
    rows[rows.length - 1].push({ ...e, x: cx });
    cx += ew;
  }
  const legendH = rows.length * 16 + 4;
  const m = { l: Math.max(40, 10 + 6 * Math.max(...yl.map((t) => t.length))), r: 14, t: 28, b: 36 };
  const plotB = h - m.b; // the plot keeps its size; the legend adds height below
  const H = h + legendH;
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (w - m.l - m.r);
  const py = (y: number) => plotB - ((y - y0) / (y1 - y0)) * (plotB - m.t);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(title)}" width="${w}" height="${H}" viewBox="0 0 ${w} ${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<rect x="0" y="0" width="${w}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${w / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  yt.forEach((v, i) => {
    const y = py(v).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${w - m.r}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 5}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="10" fill="#555">${yl[i]}</text>`);
  });
  for (const v of xt) {
    const x = px(v).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${plotB}" y2="${plotB + 4}" stroke="#999"/>`);
    parts.push(`<text x="${x}" y="${plotB + 15}" text-anchor="middle" font-size="10" fill="#555">${v}</text>`);
  }
  parts.push(`<text x="${(m.l + w - m.r) / 2}" y="${plotB + 30}" text-anchor="middle" font-size="11" fill="#333">step</text>`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${w - m.l - m.r}" height="${plotB - m.t}" fill="none" stroke="#999"/>`);
  const pathOf = (xs: number[], ys: number[]) => xs.map((x, j) => `${j ? 'L' : 'M'}${px(x).toFixed(1)},${py(ys[j]).toFixed(1)}`).join('');
  for (const l of lines) {
    const xs = l.pts.map((p) => p[0]);
    let ys = l.pts.map((p) => p[1]);
    if (l.pts.length > SMOOTH_FROM) {
      parts.push(`<path d="${pathOf(xs, ys)}" class="raw" fill="none" stroke="${l.color}" stroke-opacity="0.2" stroke-width="1"/>`);
      ys = smooth(ys);
    }
    parts.push(`<path d="${pathOf(xs, ys)}" class="series" data-series="${esc(l.label)}" data-key="${esc(l.key)}" fill="none" stroke="${l.color}" stroke-width="1.8" stroke-linejoin="round"/>`);
    if (l.pts.length === 1) parts.push(`<circle cx="${px(l.pts[0][0]).toFixed(1)}" cy="${py(l.pts[0][1]).toFixed(1)}" r="3" fill="${l.color}"/>`);
  }
  rows.forEach((row, ri) => {
    const y = h + 4 + ri * 16;
    for (const e of row) {
      const x = 8 + e.x;
      parts.push(`<g class="legend"><line x1="${x}" x2="${x + 16}" y1="${y}" y2="${y}" stroke="${e.color}" stroke-width="3"/><text x="${x + 22}" y="${y}" dominant-baseline="middle" font-size="11" fill="#333">${esc(e.text)}</text></g>`);
    }
  });
  parts.push('</svg>');
  return parts.join('');
}

/** The HTML of a report: a title, an optional summary table, and those of `charts` present in the data. */
export function reportHtml(title: string, series: Series[], table?: { header: string[]; rows: (string | number)[][] }, charts: ChartSpec[] = REPORT_CHARTS): string {
  const svgs = charts.map((c) => svgChart(c.title, c.keys, series)).filter((s): s is string => !!s);
  const tableHtml = table
    ? `<table class="summary"><thead><tr>${table.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${table.rows
      .map((r) => `<tr>${r.map((v) => `<td>${esc(typeof v === 'number' ? short(v) : v)}</td>`).join('')}</tr>`).join('')}</tbody></table>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}svg{max-width:100%;height:auto}</style>
</head><body><h1>${esc(title)}</h1>
<p>Generated by llmrl on ${esc(new Date().toISOString())}. Steps: ${series.map((s) => `${esc(s.label)} ${s.rows.length}`).join(', ')}.</p>
${tableHtml}
${series.some((x) => x.rows.length > SMOOTH_FROM) ? `<p>Runs over ${SMOOTH_FROM} steps: a moving average (bold) over the per-step values (faint).</p>` : ''}
<div class="charts">${svgs.join('\n')}</div>
${svgs.length === 0 ? '<p>No metrics to chart.</p>' : ''}
</body></html>
`;
}

/** Writes `file` atomically (temporary file in the same folder, then rename). */
export function writeFileAtomic(file: string, data: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
