// report.ts without a browser: the moving average that long runs are drawn with.
import { expect, test } from 'vitest';
import { smooth, svgChart } from '../../src/cli/report.js';

test('smooth: debiased EMA — a constant stays constant from the first point, a step is followed with lag, length kept', () => {
  expect(smooth([3, 3, 3, 3])).toEqual([3, 3, 3, 3]);
  const ys = Array.from({ length: 400 }, (_, i) => (i < 200 ? 0 : 1));
  const s = smooth(ys);
  expect(s).toHaveLength(400);
  expect(s[199]).toBe(0);
  // β = 1 − 1/10 for 400 points: after the step s_t = 1 − β^(t−199) (the debias factor is ~1 by then).
  expect(s[200]).toBeCloseTo(0.1, 6);
  expect(s[209]).toBeCloseTo(1 - 0.9 ** 10, 6);
  expect(s[399]).toBeCloseTo(1, 6);
  // Noise shrinks: alternating ±1 averages out.
  const alt = smooth(Array.from({ length: 600 }, (_, i) => (i % 2 ? 1 : -1)));
  expect(Math.max(...alt.slice(100).map(Math.abs))).toBeLessThan(0.1);
});

test('svgChart: runs over 50 steps get a faint raw path and a smoothed one; short runs only the raw values', () => {
  const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: i % 2 }));
  const long = svgChart('Loss', ['loss'], [{ label: 'a', rows: rows(80) }])!;
  expect(long.match(/class="raw"/g)).toHaveLength(1);
  expect(long.match(/class="series"/g)).toHaveLength(1);
  const short = svgChart('Loss', ['loss'], [{ label: 'a', rows: rows(20) }])!;
  expect(short).not.toContain('class="raw"');
  expect(svgChart('Loss', ['nothing'], [{ label: 'a', rows: rows(20) }])).toBeNull();
});
