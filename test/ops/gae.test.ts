import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, type Tensor } from '../../src/index.js';
import { gaeRef } from '../reference/gae.js';

const rows = (t: Tensor) => t.double().toArray() as number[][];
const maxAbsDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((row, i) => row.map((x, j) => Math.abs(x - b[i][j]))));

describe('ops.gae', () => {
  test('λ = 0 closed form: r = [0, 0, 5], V = [1, 2, 3], γ = 1 → A = [1, 1, 2], returns = A + V', () => tidy(() => {
    const { advantages, returns } = ops.gae(tensor([[0, 0, 5]]), tensor([[1, 2, 3]]), tensor([[true, true, true]]), { gamma: 1, lambda: 0 });
    expect(advantages.toArray()).toEqual([[1, 1, 2]]);
    expect(returns.toArray()).toEqual([[2, 3, 5]]);
  }));

  for (const [gamma, lambda] of [[undefined, undefined], [0.99, 0.9], [0.5, 1], [1, 0]] as const) {
    test(`γ=${gamma ?? '1 (default)'}, λ=${lambda ?? '0.95 (default)'}: equals the JS reverse-loop oracle, masked gaps and an all-masked row`, () => tidy(() => {
      manualSeed(11);
      const r = randn([6, 37], { dtype: 'float64' });
      const v = randn([6, 37], { dtype: 'float64' });
      const mask = rand([6, 37]).gt(0.3);
      const m = mask.toArray() as boolean[][];
      m[3] = m[3].map(() => false);
      const maskT = tensor(m, { dtype: 'bool' });
      const got = ops.gae(r, v, maskT, { gamma, lambda });
      const want = gaeRef(rows(r), rows(v), m, gamma ?? 1, lambda ?? 0.95);
      expect(maxAbsDiff(rows(got.advantages), want.advantages)).toBeLessThan(1e-12);
      expect(maxAbsDiff(rows(got.returns), want.returns)).toBeLessThan(1e-12);
      expect(got.advantages.select(0, 3).abs().max().item()).toBe(0);
    }));
  }

  test('a masked gap is skipped: the next valid value and advantage carry over it', () => tidy(() => {
    // valid tokens at t = 0 and 3; λ = 0, γ = 1: A_0 = r_0 + V_3 − V_0 = 1 + 4 − 2 = 3, A_3 = r_3 − V_3 = 6 − 4 = 2
    const { advantages, returns } = ops.gae(tensor([[1, 100, 100, 6]]), tensor([[2, 50, 50, 4]]), tensor([[1, 0, 0, 1]]), { lambda: 0 });
    expect(advantages.toArray()).toEqual([[3, 0, 0, 2]]);
    expect(returns.toArray()).toEqual([[5, 0, 0, 6]]);
  }));

  test('masked NaN / Inf garbage never leaks', () => tidy(() => {
    const r = tensor([[1, NaN, Infinity, 2]]);
    const v = tensor([[0.5, Infinity, NaN, 1]]);
    const mask = tensor([[true, false, false, true]]);
    const { advantages, returns } = ops.gae(r, v, mask, { lambda: 0.5 });
    const want = gaeRef([[1, 0, 0, 2]], [[0.5, 0, 0, 1]], [[true, false, false, true]], 1, 0.5);
    expect(maxAbsDiff(rows(advantages), want.advantages)).toBeLessThan(1e-6);
    expect(maxAbsDiff(rows(returns), want.returns)).toBeLessThan(1e-6);
  }));

  test('outputs never require grad, even when rewards and values do', () => tidy(() => {
    const r = randn([2, 5]).requiresGrad_();
    const v = randn([2, 5]).requiresGrad_();
    const { advantages, returns } = ops.gae(r, v, rand([2, 5]).gt(0.2));
    expect(advantages.requiresGrad).toBe(false);
    expect(returns.requiresGrad).toBe(false);
  }));

  test('float32, bfloat16 and float16 keep their dtype and match the oracle on the rounded inputs', () => tidy(() => {
    manualSeed(12);
    const r64 = randn([4, 200], { dtype: 'float64' });
    const v64 = randn([4, 200], { dtype: 'float64' });
    const mask = rand([4, 200]).gt(0.1);
    const m = mask.toArray() as boolean[][];
    for (const dt of ['float32', 'bfloat16', 'float16'] as const) {
      const r = r64.to(dt);
      const v = v64.to(dt);
      const got = ops.gae(r, v, mask);
      expect(got.advantages.dtype).toBe(dt);
      expect(got.returns.dtype).toBe(dt);
      const want = gaeRef(rows(r), rows(v), m, 1, 0.95);
      const scale = Math.max(...want.returns.flat().map(Math.abs));
      const tol = dt === 'float32' ? 1e-5 * (1 + scale) : 1e-2 * (1 + scale); // one output rounding
      expect(maxAbsDiff(rows(got.advantages), want.advantages)).toBeLessThan(tol);
      expect(maxAbsDiff(rows(got.returns), want.returns)).toBeLessThan(tol);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const a = randn([2, 3]);
    const m = tensor([[1, 1, 1], [1, 1, 0]]);
    expect(() => ops.gae(a, randn([3, 2]), m)).toThrow(/gae: 'values' must have the shape of 'rewards' \[2, 3\], got \[3, 2\]/);
    expect(() => ops.gae(a, a, randn([2, 4]))).toThrow(/'mask' must have the shape of 'rewards'/);
    expect(() => ops.gae(randn([6]), randn([6]), randn([6]))).toThrow(/'rewards' must have shape \[B, T\], got \[6\]/);
    expect(() => ops.gae(a, a.double(), m)).toThrow(/'values' must have dtype Float like 'rewards', got Double/);
    expect(() => ops.gae(a, a, m, { lambda: 1.5 })).toThrow(/gae: 'lambda' must be a number in \[0, 1\], got 1.5/);
    expect(() => ops.gae(a, a, m, { gamma: NaN })).toThrow(/'gamma' must be a number in \[0, 1\]/);
    expect(() => ops.gae(a, a, null as unknown as Tensor)).toThrow(/gae: argument 'mask' must be a Tensor, got null/);
    expect(ops.gae(a, a, m).advantages.shape).toEqual([2, 3]); // still usable after errors
  }));
});
