// A self-contained report.html for a run (or several): inline SVG line charts of metrics over steps,
// no scripts, no network. Written atomically (temporary file + rename).
import fs from 'node:fs';
import path from 'node:path';

export type MetricRow = { step: number } & Record<string, number>;
export interface Series { label: string; rows: MetricRow[] }

/** The charts a report shows: title and the metric keys tried in order (first present wins). */
export const REPORT_CHARTS: { title: string; keys: string[] }[] = [
  { title: 'Reward', keys: ['reward/mean', 'rewards/margins', 'rewards/chosen'] },
  { title: 'KL to reference', keys: ['kl/mean', 'objective/kl', 'policy/approxKl'] },
  { title: 'Loss', keys: ['loss'] },
  { title: 'Entropy', keys: ['policy/entropy', 'entropy'] },
  { title: 'Clip fraction', keys: ['policy/clipFrac'] },
  { title: 'Accuracy', keys: ['accuracy', 'rewards/accuracies', 'eval/accuracy'] },
];

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  return a < 1e-3 || a >= 1e5 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

/** One SVG line chart; null when no series has the metric. */
export function svgChart(title: string, keys: string[], series: Series[], w = 460, h = 260): string | null {
  const lines: { label: string; pts: [number, number][]; key: string }[] = [];
  for (const s of series) {
    const key = keys.find((k) => s.rows.some((r) => Number.isFinite(r[k])));
    if (!key) continue;
    lines.push({ label: s.label, key, pts: s.rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.step, r[key]]) });
  }
  if (lines.length === 0) return null;
  const all = lines.flatMap((l) => l.pts);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const m = { l: 56, r: 12, t: 28, b: 36 };
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (w - m.l - m.r);
  const py = (y: number) => h - m.b - ((y - y0) / (y1 - y0)) * (h - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<rect x="0" y="0" width="${w}" height="${h}" fill="#fff"/>`);
  parts.push(`<text x="${w / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4;
    const y = py(yv).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${w - m.r}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 4}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="10" fill="#555">${fmt(yv)}</text>`);
    const xv = x0 + ((x1 - x0) * i) / 4;
    parts.push(`<text x="${px(xv).toFixed(1)}" y="${h - m.b + 14}" text-anchor="middle" font-size="10" fill="#555">${fmt(Math.round(xv * 10) / 10)}</text>`);
  }
  parts.push(`<text x="${(m.l + w - m.r) / 2}" y="${h - 6}" text-anchor="middle" font-size="11" fill="#333">step</text>`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${w - m.l - m.r}" height="${h - m.t - m.b}" fill="none" stroke="#999"/>`);
  lines.forEach((l, i) => {
    const c = COLORS[i % COLORS.length];
    const d = l.pts.map((p, j) => `${j ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.8"/>`);
    if (l.pts.length === 1) parts.push(`<circle cx="${px(l.pts[0][0]).toFixed(1)}" cy="${py(l.pts[0][1]).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<text x="${m.l + 8}" y="${m.t + 14 + 13 * i}" font-size="11" fill="${c}">${esc(`${l.label} (${l.key})`)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** The HTML of a report: a title, an optional summary table, and the charts present in the data. */
export function reportHtml(title: string, series: Series[], table?: { header: string[]; rows: (string | number)[][] }): string {
  const charts = REPORT_CHARTS.map((c) => svgChart(c.title, c.keys, series)).filter((s): s is string => !!s);
  const tableHtml = table
    ? `<table><thead><tr>${table.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${table.rows
      .map((r) => `<tr>${r.map((v) => `<td>${esc(typeof v === 'number' ? fmt(v) : v)}</td>`).join('')}</tr>`).join('')}</tbody></table>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}.charts{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}</style>
</head><body><h1>${esc(title)}</h1>
<p>Generated by llmrl on ${esc(new Date().toISOString())}. Steps: ${series.map((s) => `${esc(s.label)} ${s.rows.length}`).join(', ')}.</p>
${tableHtml}
<div class="charts">${charts.join('\n')}</div>
${charts.length === 0 ? '<p>No metrics to chart.</p>' : ''}
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
