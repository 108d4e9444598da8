import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, type Tensor } from '../../src/index.js';
import { klPenaltyRef } from '../reference/klPenalty.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

describe('ops.klPenalty', () => {
  for (const est of ['k1', 'k2', 'k3', 'abs'] as const) {
    for (const ratio of [false, true]) {
      test(`${est}${ratio ? ' ratio-weighted' : ''}: values and gradients equal the float64 oracle`, () => tidy(() => {
        manualSeed(7);
        const lp0 = randn([3, 17], { dtype: 'float64' }).sub(2);
        const ref = randn([3, 17], { dtype: 'float64' }).sub(2);
        const old = ratio ? randn([3, 17], { dtype: 'float64' }).sub(2) : undefined;
        const mask = rand([3, 17]).gt(0.3);
        const a = lp0.clone().requiresGrad_();
        const b = lp0.clone().requiresGrad_();
        const got = ops.klPenalty(a, ref, { estimator: est, mask, oldLogprobs: old });
        const want = klPenaltyRef(b, ref, est, mask, old);
        expect(maxDiff(got, want)).toBeLessThan(1e-12);
        const wgt = randn([3, 17], { dtype: 'float64' });
        got.mul(wgt).sum().backward();
        want.mul(wgt).sum().backward();
        expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-12);
      }));
    }
  }

  test('k3 is zero when policy equals reference and ≥ 0 elsewhere', () => tidy(() => {
    const lp = randn([4, 9]);
    expect(ops.klPenalty(lp, lp).abs().max().item()).toBe(0);
    expect(ops.klPenalty(lp, randn([4, 9])).min().item()).toBeGreaterThanOrEqual(0);
  }));

  test('masked garbage (NaN, inf) never leaks into values or gradients', () => tidy(() => {
    const lp = tensor([-1, NaN, Infinity, -1e4]).requiresGrad_();
    const ref = tensor([-2, 1, NaN, 0]);
    const mask = tensor([true, false, false, true]);
    const out = ops.klPenalty(lp, ref, { mask });
    out.sum().backward();
    expect(out.isfinite().all().item()).toBe(true);
    expect(lp.grad!.isfinite().all().item()).toBe(true);
    const v = out.toArray() as number[];
    expect(v[0]).toBeCloseTo(Math.exp(-1) - -1 - 1, 6);
    expect([v[1], v[2]]).toEqual([0, 0]);
  }));

  test('bfloat16 and float16 inputs keep their dtype and stay close to float64', () => tidy(() => {
    const lp = randn([8, 33], { dtype: 'float64' }).sub(1);
    const ref = randn([8, 33], { dtype: 'float64' }).sub(1);
    for (const dt of ['bfloat16', 'float16'] as const) {
      const got = ops.klPenalty(lp.to(dt), ref.to(dt));
      expect(got.dtype).toBe(dt);
      const want = klPenaltyRef(lp.to(dt).double(), ref.to(dt).double(), 'k3');
      // relative error of one bf16/f16 rounding of the output (2^-8 for bfloat16)
      const rel = got.double().sub(want).abs().div(want.abs().add(1)).max().item();
      expect(rel).toBeLessThan(1e-2);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const a = randn([2, 3]);
    expect(() => ops.klPenalty(a, randn([3, 2]))).toThrow(/'ref_logprobs' must have the shape of 'logprobs' \[2, 3\], got \[3, 2\]/);
    expect(() => ops.klPenalty(a, a, { estimator: 'k9' as 'k1' })).toThrow(/'estimator' must be one of/);
    expect(() => ops.klPenalty(a, 3 as unknown as Tensor)).toThrow(/'refLogprobs' must be a Tensor/);
    expect(ops.klPenalty(a, a).shape).toEqual([2, 3]); // still usable after errors
  }));
});
