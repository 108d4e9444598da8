// report.html in a real browser: headless Chromium (the system's, driven by puppeteer-core) opens the
// report from file://, and the test reads what it rendered — charts, paths, legends, table, no errors, no
// network — then screenshots the page and checks the charts' pixels carry the series' colours.
// Chromium: LLMRL_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH. Without one the test
// is skipped, except under CI (CI set), where it fails: CI must run it (.ci/run installs chromium).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PNG } from 'pngjs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { reportHtml, type MetricRow, type Series } from '../../src/cli/report.js';
import { rlDemo } from '../../src/cli/rldemo.js';

const INSTALL = 'install Chromium (Debian/Ubuntu: apt-get install chromium) or set LLMRL_CHROMIUM=/path/to/chrome';
const inCI = !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());

function findChromium(): { path: string | null; why: string } {
  const env = process.env.LLMRL_CHROMIUM;
  if (env) return fs.existsSync(env) ? { path: env, why: '' } : { path: null, why: `LLMRL_CHROMIUM=${env} does not exist` };
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
      const p = path.join(dir, name);
      if (fs.existsSync(p)) return { path: p, why: '' };
    }
  }
  return { path: null, why: 'no chromium, chromium-browser or google-chrome on PATH' };
}

const chromium = findChromium();
const missing = `report.html browser test: ${chromium.why}; ${INSTALL}`;
if (!chromium.path && !inCI) console.warn(`SKIPPED ${missing}`);
const browserTest = chromium.path || inCI ? test : test.skip;

let browser: Browser | null = null;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-report-browser-'));

beforeAll(async () => {
  if (!chromium.path) return;
  browser = await puppeteer.launch({
    executablePath: chromium.path,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars'],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A metric curve: `a + (b - a)·(1 - e^(-i/tau))` with a little deterministic wiggle. */
function curve(n: number, a: number, b: number, wiggle: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => a + (b - a) * (1 - Math.exp(-i / (n / 3))) + wiggle * Math.sin(1.7 * i + seed));
}

function rows(n: number, metrics: Record<string, number[]>): MetricRow[] {
  return Array.from({ length: n }, (_, i) => {
    const r: MetricRow = { step: i + 1 };
    for (const [k, v] of Object.entries(metrics)) r[k] = v[i];
    return r;
  });
}

/** The metric keys the trainers log (as in metrics.jsonl), with plausible values. */
function rlRows(n: number, seed: number, opts: { kl?: boolean; ppo?: boolean } = {}): MetricRow[] {
  return rows(n, {
    'reward/mean': curve(n, 0.1 + 0.05 * seed, 0.6 + 0.05 * seed, 0.03, seed),
    'reward/std': curve(n, 0.3, 0.2, 0.01, seed),
    ...(opts.kl === false ? {} : { 'kl/mean': curve(n, 0, 0.04 + 0.01 * seed, 0.002, seed) }),
    'policy/approxKl': curve(n, 0, 0.002 * (seed + 1), 0.0002, seed),
    loss: curve(n, 0.05 * (seed + 1), 0.01, 0.004, seed),
    'policy/entropy': curve(n, 2.7 - 0.05 * seed, 2.1 - 0.1 * seed, 0.02, seed),
    'policy/clipFrac': curve(n, 0.01 * (seed + 1), 0.05 + 0.02 * seed, 0.005, seed),
    'perf/tokensPerSec': curve(n, 800, 900, 20, seed),
    gradNorm: curve(n, 1.2, 0.6, 0.05, seed),
    ...(opts.ppo ? { 'value/loss': curve(n, 0.5, 0.1, 0.01, seed), 'kl/coef': curve(n, 0.05, 0.05, 0, seed) } : {}),
  });
}

function dpoRows(n: number): MetricRow[] {
  return rows(n, {
    loss: curve(n, 0.693, 0.2, 0.01, 4),
    'rewards/accuracies': curve(n, 0.5, 0.95, 0.03, 4),
    'rewards/margins': curve(n, 0, 1.5, 0.05, 4),
    'rewards/chosen': curve(n, 0, 0.4, 0.02, 4),
    'rewards/rejected': curve(n, 0, -1.1, 0.02, 4),
    'logps/chosen': curve(n, -12, -10, 0.1, 4),
    nll: curve(n, 1.5, 1.2, 0.01, 4),
  });
}

interface Rendered {
  charts: {
    title: string; heading: string; x: number; y: number; w: number; h: number;
    paths: { series: string; key: string; points: number; length: number; x: number; y: number; w: number; h: number; stroke: string }[];
    legend: string[];
    /** Faint raw per-step paths under the smoothed ones (runs over 50 steps). */
    raw: number;
  }[];
  tableRows: number; tableCells: string[][]; tableBox: { w: number; h: number } | null;
  bodyText: string;
}

/** Opens `html` from file:// and returns what the browser rendered, its errors and every request made. */
async function open(name: string, html: string): Promise<{ page: Page; url: string; r: Rendered; errors: string[]; requests: string[] }> {
  const file = path.join(dir, name);
  fs.writeFileSync(file, html);
  const url = pathToFileURL(file).href;
  const page = await browser!.newPage();
  await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') errors.push(`console.${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${String(e)}`));
  page.on('requestfailed', (q) => errors.push(`request failed: ${q.url()}`));
  page.on('request', (q) => requests.push(q.url()));
  const res = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  expect(res?.ok() ?? true).toBe(true);
  const r = await page.evaluate((): Rendered => {
    const box = (e: Element) => e.getBoundingClientRect();
    const charts = [...document.querySelectorAll('svg')].map((svg) => {
      const b = box(svg);
      return {
        title: svg.getAttribute('aria-label') ?? '',
        heading: svg.querySelector('text')?.textContent ?? '',
        x: b.x + window.scrollX, y: b.y + window.scrollY, w: b.width, h: b.height,
        paths: [...svg.querySelectorAll('path.series')].map((p) => {
          const pb = box(p);
          return {
            series: p.getAttribute('data-series') ?? '',
            key: p.getAttribute('data-key') ?? '',
            points: ((p.getAttribute('d') ?? '').match(/[ML]/g) ?? []).length,
            length: (p as SVGPathElement).getTotalLength(),
            x: pb.x + window.scrollX, y: pb.y + window.scrollY, w: pb.width, h: pb.height,
            stroke: getComputedStyle(p).stroke,
          };
        }),
        legend: [...svg.querySelectorAll('text')].map((t) => t.textContent ?? '').filter((t) => t.includes(' · ')),
        raw: svg.querySelectorAll('path.raw').length,
      };
    });
    const table = document.querySelector('table');
    const tb = table ? box(table) : null;
    return {
      charts,
      tableRows: table ? table.querySelectorAll('tbody tr').length : 0,
      tableCells: table ? [...table.querySelectorAll('tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')) : [],
      tableBox: tb ? { w: tb.width, h: tb.height } : null,
      bodyText: document.body.innerText,
    };
  });
  return { page, url, r, errors, requests };
}

function rgb(css: string): [number, number, number] {
  const m = /rgb\((\d+), (\d+), (\d+)\)/.exec(css);
  if (!m) throw new Error(`not an rgb() colour: ${css}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Pixels in the box within `tol` (RGB distance) of `color`, and pixels that are not near-white. */
function countPixels(png: PNG, bx: { x: number; y: number; w: number; h: number }, color: [number, number, number], tol = 40): { color: number; ink: number } {
  let hits = 0;
  let ink = 0;
  for (let y = Math.max(0, Math.floor(bx.y)); y < Math.min(png.height, Math.ceil(bx.y + bx.h)); y++) {
    for (let x = Math.max(0, Math.floor(bx.x)); x < Math.min(png.width, Math.ceil(bx.x + bx.w)); x++) {
      const i = (y * png.width + x) * 4;
      const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
      if (Math.hypot(r - color[0], g - color[1], b - color[2]) <= tol) hits++;
      if (r < 235 || g < 235 || b < 235) ink++;
    }
  }
  return { color: hits, ink };
}

/** A full-page screenshot, decoded; also kept as `name` in the temp folder and, if asked, copied to `copyTo`. */
async function screenshot(page: Page, name: string, copyTo?: string): Promise<PNG> {
  const buf = Buffer.from(await page.screenshot({ type: 'png', fullPage: true }));
  const file = path.join(dir, name);
  fs.writeFileSync(file, buf);
  if (copyTo) {
    try { fs.copyFileSync(file, copyTo); } catch { /* only a convenience for looking at it */ }
  }
  return PNG.sync.read(buf);
}

browserTest('report.html renders its charts, legends and table in headless Chromium, self-contained (two methods × 30 steps)', async () => {
  if (!chromium.path) throw new Error(missing); // CI without a browser: fail, naming the fix
  const series: Series[] = [{ label: 'GRPO', rows: rlRows(30, 0) }, { label: 'GSPO', rows: rlRows(30, 1) }];
  const table = { header: ['metric', 'first', 'last', 'mean'], rows: [['reward/mean', 0.1, 0.6, 0.4], ['kl/mean', 0, 0.04, 0.02], ['loss', 0.05, 0.01, 0.02]] as (string | number)[][] };
  const { page, url, r, errors, requests } = await open('two-methods.html', reportHtml('llmrl train grpo vs gspo', series, table));
  try {
    expect(errors).toEqual([]);
    expect(requests).toEqual([url]); // nothing but the file itself: no scripts, fonts, images or styles fetched
    const expected = ['Reward', 'KL to reference', 'Loss', 'Entropy', 'Clip fraction', 'Approx. KL to the rollout policy'];
    expect(r.charts.map((c) => c.title)).toEqual(expected); // no accuracy metric: no Accuracy chart
    for (const c of r.charts) {
      expect(c.heading).toBe(c.title);
      expect(c.w).toBeGreaterThan(200);
      expect(c.h).toBeGreaterThan(150);
      expect(c.paths.map((p) => p.series)).toEqual(['GRPO', 'GSPO']);
      for (const p of c.paths) {
        expect(p.points, `${c.title}/${p.series}`).toBe(30); // one vertex per step
        expect(p.length).toBeGreaterThan(50);
        expect(p.w).toBeGreaterThan(100);
        expect(p.stroke).not.toBe('none');
      }
      expect(c.paths[0].stroke).not.toBe(c.paths[1].stroke);
      expect(c.legend.some((l) => l.startsWith('GRPO'))).toBe(true);
      expect(c.legend.some((l) => l.startsWith('GSPO'))).toBe(true);
    }
    expect(r.charts.find((c) => c.title === 'KL to reference')!.paths.map((p) => p.key)).toEqual(['kl/mean', 'kl/mean']);
    expect(r.tableRows).toBe(3);
    expect(r.tableCells[0]).toEqual(['reward/mean', '0.1', '0.6', '0.4']);
    expect(r.tableBox!.w).toBeGreaterThan(100);
    expect(r.bodyText).toContain('llmrl train grpo vs gspo');

    // The pixels: in every chart each line is drawn in its colour (counted inside the line's own box, so
    // the legend's swatch does not count), and the chart is not a blank box.
    const png = await screenshot(page, 'two-methods.png', '/tmp/report-screenshot.png');
    expect(png.width).toBe(1280);
    for (const c of r.charts) {
      for (const p of c.paths) {
        const n = countPixels(png, p, rgb(p.stroke));
        expect(n.color, `${c.title}: pixels of ${p.series}'s colour ${p.stroke}`).toBeGreaterThan(150);
      }
      expect(countPixels(png, c, [0, 0, 0], 0).ink).toBeGreaterThan(0.03 * c.w * c.h); // axes, labels, lines
    }
  } finally {
    await page.close();
  }
}, 120_000);

browserTest('the demo report: four methods with different metric keys, charts with only some of them', async () => {
  if (!chromium.path) throw new Error(missing);
  // As `npm start` writes it: PPO (RM), DPO, GRPO and GSPO (beta 0: no kl/mean), with their own keys and step counts.
  const series: Series[] = [
    { label: 'PPO (RM)', rows: rlRows(30, 0, { ppo: true }) },
    { label: 'DPO', rows: dpoRows(24) },
    { label: 'GRPO', rows: rlRows(30, 1) },
    { label: 'GSPO', rows: rlRows(18, 2, { kl: false }) },
  ];
  const header = ['method', 'acc before', 'acc after', 'mean reward', 'KL to SFT', 'wall s', 'tokens/s'];
  const tableRows = [['SFT (start)', '-', '42.0%', '0.420', '0', '30.1', '5000'], ...series.map((s, i) => [s.label, '42.0%', `${50 + i}.0%`, '0.5', '0.01', '20', '900'])];
  const { page, r, errors, requests, url } = await open('demo.html', reportHtml('llmrl demo: PPO, DPO, GRPO and GSPO from one SFT checkpoint', series, { header, rows: tableRows }));
  try {
    expect(errors).toEqual([]);
    expect(requests).toEqual([url]);
    const byTitle = Object.fromEntries(r.charts.map((c) => [c.title, c]));
    expect(Object.keys(byTitle)).toEqual(['Reward', 'KL to reference', 'Loss', 'Entropy', 'Clip fraction', 'Approx. KL to the rollout policy', 'Preference margin', 'Accuracy']);
    const shown = (t: string) => byTitle[t].paths.map((p) => `${p.series}:${p.key}:${p.points}`);
    expect(shown('Reward')).toEqual(['PPO (RM):reward/mean:30', 'GRPO:reward/mean:30', 'GSPO:reward/mean:18']);
    expect(shown('KL to reference')).toEqual(['PPO (RM):kl/mean:30', 'GRPO:kl/mean:30']); // GSPO (beta 0) has no reference KL
    expect(shown('Approx. KL to the rollout policy')).toEqual(['PPO (RM):policy/approxKl:30', 'GRPO:policy/approxKl:30', 'GSPO:policy/approxKl:18']);
    expect(shown('Preference margin')).toEqual(['DPO:rewards/margins:24']);
    expect(shown('Loss')).toEqual(['PPO (RM):loss:30', 'DPO:loss:24', 'GRPO:loss:30', 'GSPO:loss:18']);
    expect(shown('Clip fraction')).toEqual(['PPO (RM):policy/clipFrac:30', 'GRPO:policy/clipFrac:30', 'GSPO:policy/clipFrac:18']);
    expect(shown('Accuracy')).toEqual(['DPO:rewards/accuracies:24']);
    for (const c of r.charts) {
      expect(c.w).toBeGreaterThan(200);
      expect(c.legend.map((l) => l.split(' · ')[0])).toEqual(c.paths.map((p) => p.series)); // legend = the lines drawn
      for (const p of c.paths) expect(p.length, `${c.title}/${p.series}`).toBeGreaterThan(20);
    }
    // A series keeps its colour in every chart (DPO in Loss and Accuracy; GSPO in Reward and Clip fraction).
    const stroke = (t: string, s: string) => byTitle[t].paths.find((p) => p.series === s)!.stroke;
    expect(stroke('Loss', 'DPO')).toBe(stroke('Accuracy', 'DPO'));
    expect(stroke('Reward', 'GSPO')).toBe(stroke('Clip fraction', 'GSPO'));
    expect(new Set(byTitle.Loss.paths.map((p) => p.stroke)).size).toBe(4);
    expect(r.tableRows).toBe(5);
    expect(r.tableCells.map((c) => c[0])).toEqual(['SFT (start)', 'PPO (RM)', 'DPO', 'GRPO', 'GSPO']);

    const png = await screenshot(page, 'demo.png', '/tmp/report-screenshot-demo.png');
    for (const c of r.charts) {
      for (const p of c.paths) expect(countPixels(png, p, rgb(p.stroke)).color, `${c.title}: ${p.series}`).toBeGreaterThan(100);
    }
  } finally {
    await page.close();
  }
}, 120_000);

browserTest("the real demo's report.html (llmrl demo --quick, 60 RL steps): its charts, smoothed curves over the raw ones", async () => {
  if (!chromium.path) throw new Error(missing);
  const res = await rlDemo({ quick: true, budget: { rlSteps: 60 }, outputDir: path.join(dir, 'demo-run'), log: () => {} });
  const { page, r, errors, requests, url } = await open('demo-real.html', fs.readFileSync(res.report, 'utf8'));
  try {
    expect(errors).toEqual([]);
    expect(requests).toEqual([url]);
    const byTitle = Object.fromEntries(r.charts.map((c) => [c.title, c]));
    const shown = (t: string) => byTitle[t]?.paths.map((p) => `${p.series}:${p.points}`);
    expect(shown('Accuracy of the sampled completions')).toEqual(['PPO (RM):60', 'GRPO:60', 'GSPO:60']); // PPO's weight-0 monitor
    expect(shown('Reward-model score (PPO)')).toEqual(['PPO (RM):60']);
    expect(shown('KL to the SFT model')).toEqual(['PPO (RM):60', 'GRPO:60']); // GSPO runs without a reference (beta 0)
    expect(shown('Loss')).toEqual(['PPO (RM):60', 'DPO:60', 'GRPO:60', 'GSPO:60']);
    expect(shown('DPO: preference accuracy')).toEqual(['DPO:60']);
    expect(shown('DPO: implicit reward margin')).toEqual(['DPO:60']);
    for (const c of r.charts) expect(c.raw, `${c.title}: a faint raw path under each smoothed one`).toBe(c.paths.length);
    expect(r.tableCells.map((c) => c[0])).toEqual(['SFT (start)', 'PPO (RM)', 'DPO', 'GRPO', 'GSPO']);
    expect(r.bodyText).toContain('moving average');
    const png = await screenshot(page, 'demo-real.png', '/tmp/report-screenshot-demo-real.png');
    // The quick run's curves often coincide (an untrained model: every accuracy 0), so a later line may
    // hide an earlier one: each chart shows at least its top line's colour, and every line has extent.
    for (const c of r.charts) {
      const top = c.paths[c.paths.length - 1];
      expect(countPixels(png, top, rgb(top.stroke)).color, `${c.title}: ${top.series}`).toBeGreaterThan(60);
      for (const p of c.paths) expect(p.w, `${c.title}: ${p.series}`).toBeGreaterThan(100);
    }
  } finally {
    await page.close();
  }
}, 300_000);
