import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, where, fullLike, type Tensor } from '../../src/index.js';
import { groupAdvantagesRef, trlGroupAdvantages } from '../reference/groupAdvantages.js';

const arr = (t: Tensor) => t.double().toArray() as number[];
const maxAbsDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

describe('ops.groupAdvantages', () => {
  test("TRL's GRPO numbers: [1, 0, 0, 1 | 2, 2, 2, 2], G = 4", () => tidy(() => {
    const r = tensor([1, 0, 0, 1, 2, 2, 2, 2], { dtype: 'float64' });
    const { advantages, groupStd } = ops.groupAdvantages(r, { groupSize: 4 });
    const v = 0.5 / (Math.sqrt(1 / 3) + 1e-4); // σ = sqrt(1/3) (Bessel), ε added to σ
    expect(maxAbsDiff(arr(advantages), [v, -v, -v, v, 0, 0, 0, 0])).toBeLessThan(1e-15);
    expect(maxAbsDiff(arr(groupStd), [Math.sqrt(1 / 3), 0])).toBeLessThan(1e-15);
    expect(groupStd.le(1e-8).float().mean().item()).toBe(0.5); // groups/zeroStdFrac
    expect(arr(ops.groupAdvantages(r, { groupSize: 4, scale: 'none' }).advantages)).toEqual([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]);
    const rloo = arr(ops.groupAdvantages(r, { groupSize: 4, scale: 'rloo' }).advantages);
    expect(maxAbsDiff(rloo, [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])).toBeLessThan(1e-15);
  }));

  for (const scale of ['group', 'batch', 'none'] as const) {
    test(`scale '${scale}' equals TRL's view/mean/std composition`, () => tidy(() => {
      manualSeed(3);
      const r = randn([8 * 16], { dtype: 'float64' }).mul(2).add(1);
      const got = ops.groupAdvantages(r, { groupSize: 8, scale }).advantages;
      expect(got.sub(trlGroupAdvantages(r, 8, scale)).abs().max().item()).toBeLessThan(1e-12);
    }));
  }

  for (const scale of ['group', 'batch', 'none', 'rloo'] as const) {
    test(`scale '${scale}' with NaN rewards equals the JS oracle (NaN left out, A = 0; an all-NaN group → 0)`, () => tidy(() => {
      manualSeed(4);
      const clean = randn([6 * 5], { dtype: 'float64' });
      let r = where(rand([6 * 5]).gt(0.8), fullLike(clean, NaN), clean);
      const vals = arr(r);
      for (let i = 10; i < 15; i++) vals[i] = NaN; // group 2 entirely NaN
      vals[20] = 1; vals[21] = NaN; vals[22] = NaN; vals[23] = NaN; vals[24] = NaN; // group 4: one valid reward
      r = tensor(vals, { dtype: 'float64' });
      const { advantages, groupStd } = ops.groupAdvantages(r, { groupSize: 5, scale });
      const want = groupAdvantagesRef(vals, 5, scale);
      expect(advantages.isfinite().all().item()).toBe(true);
      expect(maxAbsDiff(arr(advantages), want.advantages)).toBeLessThan(1e-12);
      expect(maxAbsDiff(arr(groupStd), want.groupStd)).toBeLessThan(1e-12);
      expect(arr(advantages).slice(10, 15)).toEqual([0, 0, 0, 0, 0]);
      expect(arr(advantages)[20]).toBe(0);
    }));
  }

  test('outputs never require grad', () => tidy(() => {
    const r = randn([8]).requiresGrad_();
    const { advantages, groupStd } = ops.groupAdvantages(r, { groupSize: 4 });
    expect(advantages.requiresGrad).toBe(false);
    expect(groupStd.requiresGrad).toBe(false);
  }));

  test('float32, bfloat16 and float16 keep their dtype and match the oracle on the rounded inputs', () => tidy(() => {
    manualSeed(5);
    const r64 = randn([64], { dtype: 'float64' });
    for (const dt of ['float32', 'bfloat16', 'float16'] as const) {
      const r = r64.to(dt);
      const { advantages, groupStd } = ops.groupAdvantages(r, { groupSize: 8 });
      expect(advantages.dtype).toBe(dt);
      expect(groupStd.shape).toEqual([8]);
      const want = groupAdvantagesRef(arr(r), 8, 'group');
      expect(maxAbsDiff(arr(advantages), want.advantages)).toBeLessThan(dt === 'float32' ? 1e-5 : 3e-2);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const r = randn([10]);
    expect(() => ops.groupAdvantages(r, { groupSize: 4 })).toThrow(/the length of 'rewards' \(B = 10\) must be divisible by 'groupSize' \(G = 4\)/);
    expect(() => ops.groupAdvantages(r, { groupSize: 1 })).toThrow(/'groupSize' must be at least 2 with scale 'group'/);
    expect(() => ops.groupAdvantages(r, { groupSize: 1, scale: 'rloo' })).toThrow(/'groupSize' must be at least 2 with scale 'rloo'/);
    expect(() => ops.groupAdvantages(r, { groupSize: 2.5 })).toThrow(/'groupSize' must be a positive integer, got 2.5/);
    expect(() => ops.groupAdvantages(r, {} as { groupSize: number })).toThrow(/'groupSize' must be a positive integer, got undefined/);
    expect(() => ops.groupAdvantages(r, { groupSize: 2, scale: 'grpo' as 'group' })).toThrow(/'scale' must be one of 'group', 'batch', 'none', 'rloo', got "grpo"/);
    expect(() => ops.groupAdvantages(randn([2, 4]), { groupSize: 4 })).toThrow(/'rewards' must have shape \[B\] \(one reward per completion\), got \[2, 4\]/);
    expect(() => ops.groupAdvantages([1, 2] as unknown as Tensor, { groupSize: 2 })).toThrow(/groupAdvantages: argument 'rewards' must be a Tensor/);
    expect(ops.groupAdvantages(r, { groupSize: 1, scale: 'none' }).advantages.abs().max().item()).toBe(0); // G = 1: A = 0
  }));
});
