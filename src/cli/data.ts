// Small synthetic data for the CLI demo.
import { tensor, type Tensor } from '../tensor/index.js';

/** `n` points evenly spaced on [lo, hi] as a column `[n, 1]`, and f of each `[n, 1]`. */
export function linspaceColumn(lo: number, hi: number, n: number, f: (x: number) => number): { x: Tensor; y: Tensor } {
  const xs = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
  return { x: tensor(xs, { shape: [n, 1] }), y: tensor(xs.map(f), { shape: [n, 1] }) };
}
