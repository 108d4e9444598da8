import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { valueLossRef } from '../reference/valueLoss.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

describe('ops.valueLoss', () => {
  for (const clip of [0.2, 0.05, 1]) {
    test(`clip ${clip}: loss, gradient and clipFrac equal the float64 oracle`, () => tidy(() => {
      manualSeed(2);
      const v0 = randn([6, 31], { dtype: 'float64' });
      const vOld = v0.add(randn([6, 31], { dtype: 'float64' }).mul(0.3));
      const R = randn([6, 31], { dtype: 'float64' });
      const mask = rand([6, 31]).gt(0.3);
      const a = v0.clone().requiresGrad_();
      const b = v0.clone().requiresGrad_();
      const got = ops.valueLoss(a, vOld, R, mask, { clip });
      const want = valueLossRef(b, vOld, R, mask, clip);
      expect(got.loss.shape).toEqual([]);
      expect(Math.abs(got.loss.item() - want.loss.item())).toBeLessThan(1e-13);
      expect(got.clipFrac.item()).toBeCloseTo(want.clipFrac, 14);
      expect(want.clipFrac).toBeGreaterThan(0);
      expect(got.clipFrac.requiresGrad).toBe(false);
      got.loss.mul(2).backward();
      want.loss.mul(2).backward();
      expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-15);
    }));
  }

  test('closed forms: clipped branch (no gradient), tie inside the clip range, unclipped branch', () => tidy(() => {
    // V = 1.5, V_old = 1, R = 2, ε = 0.2 → v_clip = 1.2, ½·max(0.25, 0.64) = 0.32, gradient 0
    // V = 1.1 → both terms 0.81, loss 0.405, gradient V − R = −0.9
    // V = 0.5 → v_clip = 0.8, ½·max(2.25, 1.44) = 1.125, gradient −1.5
    const v = tensor([1.5, 1.1, 0.5], { dtype: 'float64' }).requiresGrad_();
    const vOld = tensor([1, 1, 1], { dtype: 'float64' });
    const R = tensor([2, 2, 2], { dtype: 'float64' });
    const r = ops.valueLoss(v, vOld, R, tensor([true, true, true]));
    expect(r.loss.item()).toBeCloseTo((0.32 + 0.405 + 1.125) / 3, 12);
    expect(r.clipFrac.item()).toBeCloseTo(1 / 3, 12);
    r.loss.backward();
    expect((v.grad!.toArray() as number[]).map((g) => g * 3)).toEqual([expect.closeTo(0, 12), expect.closeTo(-0.9, 12), expect.closeTo(-1.5, 12)]);
  }));

  test('micro-batches with normalizer accumulate the full-batch gradient', () => tidy(() => {
    manualSeed(5);
    const v0 = randn([6, 9], { dtype: 'float64' });
    const vOld = v0.add(randn([6, 9], { dtype: 'float64' }).mul(0.3));
    const R = randn([6, 9], { dtype: 'float64' });
    const mask = rand([6, 9]).gt(0.3);
    const full = v0.clone().requiresGrad_();
    const fl = ops.valueLoss(full, vOld, R, mask).loss;
    fl.backward();
    const normalizer = mask.sum().item();
    const acc = v0.clone().requiresGrad_();
    let total = 0;
    for (const [s, e] of [[0, 1], [1, 4], [4, 6]]) {
      const sl = (t: Tensor) => t.slice(0, s, e);
      const l = ops.valueLoss(sl(acc), sl(vOld), sl(R), sl(mask), { normalizer }).loss;
      total += l.item();
      l.backward();
    }
    expect(Math.abs(total - fl.item())).toBeLessThan(1e-13);
    expect(maxDiff(acc.grad!, full.grad!)).toBeLessThan(1e-15);
  }));

  test('masked NaN/Inf never leak; all-masked or zero normalizer → 0 with zero gradient', () => tidy(() => {
    const v = tensor([[1, NaN], [Infinity, 0.5]]);
    const vOld = tensor([[1.1, 0], [NaN, -Infinity]]);
    const R = tensor([[2, NaN], [1, Infinity]]);
    const mask = tensor([[true, false], [false, false]]);
    const x = v.clone().requiresGrad_();
    const r = ops.valueLoss(x, vOld, R, mask);
    r.loss.backward();
    expect(r.loss.item()).toBeCloseTo(0.5, 6);
    expect(x.grad!.isfinite().all().item()).toBe(true);
    expect((x.grad!.toArray() as number[][]).flat().slice(1)).toEqual([0, 0, 0]);
    for (const [m, normalizer] of [[zeros([2, 2]).bool(), undefined], [mask, 0]] as const) {
      const y = v.clone().requiresGrad_();
      const z = ops.valueLoss(y, vOld, R, m, { normalizer });
      z.loss.backward();
      expect(z.loss.item()).toBe(0);
      expect(y.grad!.abs().max().item()).toBe(0);
    }
  }));

  test('bfloat16 / float16 values: float32 loss, gradient in the input dtype', () => tidy(() => {
    const v = randn([4, 50], { dtype: 'float64' });
    const vOld = v.add(randn([4, 50], { dtype: 'float64' }).mul(0.3));
    const R = randn([4, 50], { dtype: 'float64' });
    const mask = rand([4, 50]).gt(0.3);
    for (const dt of ['bfloat16', 'float16'] as const) {
      const x = v.to(dt).requiresGrad_();
      const r = ops.valueLoss(x, vOld.to(dt), R.to(dt), mask);
      r.loss.backward();
      expect(r.loss.dtype).toBe('float32');
      expect(x.grad!.dtype).toBe(dt);
      const xd = v.to(dt).double().requiresGrad_();
      const want = valueLossRef(xd, vOld.to(dt).double(), R.to(dt).double(), mask);
      want.loss.backward();
      expect(Math.abs(r.loss.item() - want.loss.item())).toBeLessThan(1e-5);
      expect(maxDiff(x.grad!, xd.grad!)).toBeLessThan(1e-3);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const v = randn([2, 3]);
    const m = rand([2, 3]).gt(0.5);
    expect(() => ops.valueLoss(v, randn([3, 2]), v, m)).toThrow(/valueLoss: 'oldValues' must have the shape of 'values' \[2, 3\], got \[3, 2\]/);
    expect(() => ops.valueLoss(v, v, randn([2]), m)).toThrow(/'returns' must have the shape of 'values'/);
    expect(() => ops.valueLoss(v, v, v, rand([3]).gt(0))).toThrow(/'mask' must have the shape of 'values'/);
    expect(() => ops.valueLoss(v, v, v.double(), m)).toThrow(/'returns' must have dtype Float/);
    expect(() => ops.valueLoss(v, v, v, m, { clip: -0.2 })).toThrow(/valueLoss: 'clip' must be a finite number >= 0, got -0.2/);
    expect(() => ops.valueLoss(v, v, v, m, { normalizer: -1 })).toThrow(/'normalizer' must be a finite number >= 0/);
    expect(() => ops.valueLoss(v, null as unknown as Tensor, v, m)).toThrow(/valueLoss: argument 'oldValues' must be a Tensor/);
  }));
});
