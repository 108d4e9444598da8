import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { maskedWhitenRef } from '../reference/maskedWhiten.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

describe('ops.maskedWhiten', () => {
  for (const shiftMean of [true, false]) {
    for (const shape of [[5, 23], [2, 3, 9], [30000]]) {
      test(`shiftMean=${shiftMean} [${shape}]: values and gradients equal the float64 oracle`, () => tidy(() => {
        manualSeed(5);
        const x0 = randn(shape, { dtype: 'float64' }).mul(3).add(2);
        const mask = rand(shape).gt(0.4);
        const a = x0.clone().requiresGrad_();
        const b = x0.clone().requiresGrad_();
        const got = ops.maskedWhiten(a, mask, { shiftMean });
        const want = maskedWhitenRef(b, mask, shiftMean);
        expect(maxDiff(got, want)).toBeLessThan(1e-12);
        const wgt = randn(shape, { dtype: 'float64' });
        got.mul(wgt).sum().backward();
        want.mul(wgt).sum().backward();
        expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-12);
      }));
    }
  }

  test('closed form: x = [1, 2, 3, 4] → (x − 2.5)/sqrt(5/3 + 1e-8); shiftMean=false adds 2.5', () => tidy(() => {
    const x = tensor([[1, 2, 3, 4]], { dtype: 'float64' });
    const m = tensor([[true, true, true, true]]);
    const s = 1 / Math.sqrt(5 / 3 + 1e-8);
    const y = ops.maskedWhiten(x, m).toArray() as number[][];
    [-1.5, -0.5, 0.5, 1.5].forEach((d, i) => expect(y[0][i]).toBeCloseTo(d * s, 14));
    const y2 = ops.maskedWhiten(x, m, { shiftMean: false }).toArray() as number[][];
    [-1.5, -0.5, 0.5, 1.5].forEach((d, i) => expect(y2[0][i]).toBeCloseTo(d * s + 2.5, 14));
  }));

  test('one valid token → 0 (or x itself with shiftMean=false); no valid token → zeros and zero gradient', () => tidy(() => {
    const x = tensor([5, 7, -1], { dtype: 'float64' });
    const one = tensor([false, true, false]);
    expect(ops.maskedWhiten(x, one).toArray()).toEqual([0, 0, 0]);
    expect(ops.maskedWhiten(x, one, { shiftMean: false }).toArray()).toEqual([0, 7, 0]);
    const xg = x.clone().requiresGrad_();
    const y = ops.maskedWhiten(xg, zeros([3], { dtype: 'bool' }), { shiftMean: false });
    y.sum().backward();
    expect(y.toArray()).toEqual([0, 0, 0]);
    expect(xg.grad!.toArray()).toEqual([0, 0, 0]);
  }));

  test('masked NaN / Inf garbage never leaks into values or gradients', () => tidy(() => {
    const x = tensor([1, NaN, 3, Infinity, 2]).requiresGrad_();
    const mask = tensor([1, 0, 1, 0, 1]);
    const y = ops.maskedWhiten(x, mask);
    y.backward(tensor([1, NaN, -2, 5, 0.5]));
    expect(y.isfinite().all().item()).toBe(true);
    expect(x.grad!.isfinite().all().item()).toBe(true);
    const v = y.toArray() as number[];
    const s = 1 / Math.sqrt(1 + 1e-8); // valid [1, 3, 2]: μ = 2, var = 1
    expect(v[0]).toBeCloseTo(-s, 6);
    expect(v[2]).toBeCloseTo(s, 6);
    expect([v[1], v[3], v[4]]).toEqual([0, 0, 0]);
    const g = x.grad!.toArray() as number[];
    expect([g[1], g[3]]).toEqual([0, 0]);
  }));

  test('bfloat16 and float16 keep their dtype; values and gradients stay close to float64', () => tidy(() => {
    manualSeed(6);
    const x64 = randn([8, 65], { dtype: 'float64' }).mul(2).add(1);
    const mask = rand([8, 65]).gt(0.3);
    for (const dt of ['float32', 'bfloat16', 'float16'] as const) {
      const x = x64.to(dt).requiresGrad_();
      const y = ops.maskedWhiten(x, mask, { shiftMean: false });
      expect(y.dtype).toBe(dt);
      const wgt = randn([8, 65]).to(dt);
      y.mul(wgt).sum().backward();
      expect(x.grad!.dtype).toBe(dt);
      const xr = x64.to(dt).double().requiresGrad_();
      const yr = maskedWhitenRef(xr, mask, false);
      yr.mul(wgt.double()).sum().backward();
      const tol = dt === 'float32' ? 1e-5 : 5e-2;
      expect(maxDiff(y, yr)).toBeLessThan(tol);
      expect(maxDiff(x.grad!, xr.grad!)).toBeLessThan(tol);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const x = randn([2, 3]);
    expect(() => ops.maskedWhiten(x, randn([3, 2]))).toThrow(/masked_whiten: 'mask' must have the shape of 'x' \[2, 3\], got \[3, 2\]/);
    expect(() => ops.maskedWhiten(x, x, { shiftMean: 1 as unknown as boolean })).toThrow(/maskedWhiten: 'shiftMean' must be a boolean/);
    expect(() => ops.maskedWhiten(x, undefined as unknown as Tensor)).toThrow(/maskedWhiten: argument 'mask' must be a Tensor/);
    expect(ops.maskedWhiten(x, x.gt(0)).shape).toEqual([2, 3]);
  }));
});
