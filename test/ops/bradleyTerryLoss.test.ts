import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { bradleyTerryLossRef } from '../reference/bradleyTerryLoss.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

describe('ops.bradleyTerryLoss', () => {
  for (const marginKind of ['none', 'tensor', 'number'] as const) {
    for (const centerCoef of [0, 0.01]) {
      test(`margin ${marginKind}, centerCoef ${centerCoef}: values and gradients equal the float64 oracle`, () => tidy(() => {
        manualSeed(5);
        const c0 = randn([33], { dtype: 'float64' }).mul(2);
        const r0 = randn([33], { dtype: 'float64' }).mul(2);
        const margin = marginKind === 'tensor' ? rand([33], { dtype: 'float64' }).mul(3) : marginKind === 'number' ? 0.75 : undefined;
        const a = c0.clone().requiresGrad_();
        const b = r0.clone().requiresGrad_();
        const a2 = c0.clone().requiresGrad_();
        const b2 = r0.clone().requiresGrad_();
        const got = ops.bradleyTerryLoss(a, b, { margin, centerCoef });
        const want = bradleyTerryLossRef(a2, b2, margin, centerCoef);
        expect(got.loss.dtype).toBe('float64');
        expect(maxDiff(got.loss, want.loss)).toBeLessThan(1e-12);
        expect(maxDiff(got.accuracy, want.accuracy)).toBeLessThan(1e-15);
        expect(maxDiff(got.meanMargin, want.meanMargin)).toBeLessThan(1e-12);
        expect(got.accuracy.requiresGrad).toBe(false);
        got.loss.backward();
        want.loss.backward();
        expect(maxDiff(a.grad!, a2.grad!)).toBeLessThan(1e-14);
        expect(maxDiff(b.grad!, b2.grad!)).toBeLessThan(1e-14);
      }));
    }
  }

  test('equal scores: loss ln 2, accuracy 0, gradients ∓1/(2B), in every dtype', () => tidy(() => {
    const s = randn([8]).mul(3);
    for (const dt of ['float32', 'float64', 'bfloat16', 'float16'] as const) {
      const c = s.to(dt).clone().requiresGrad_();
      const r = s.to(dt).clone().requiresGrad_(); // distinct leaves (to() may return s itself)
      const { loss, accuracy, meanMargin } = ops.bradleyTerryLoss(c, r);
      expect(loss.dtype).toBe(dt === 'float64' ? 'float64' : 'float32');
      expect(loss.item()).toBeCloseTo(0.693147, 6);
      expect([accuracy.item(), meanMargin.item()]).toEqual([0, 0]);
      loss.backward();
      expect(c.grad!.dtype).toBe(dt);
      expect(c.grad!.toArray()).toEqual(new Array(8).fill(-1 / 16));
      expect(r.grad!.toArray()).toEqual(new Array(8).fill(1 / 16));
    }
  }));

  test('hand-computed: margin and centering', () => tidy(() => {
    // d = (3 − 1 − 2, 1 − 0 − 1) = (0, 0) → ln 2; centering 0.5 · mean(4², 1²) = 4.25
    const { loss, accuracy, meanMargin } = ops.bradleyTerryLoss(tensor([3, 1], { dtype: 'float64' }), tensor([1, 0], { dtype: 'float64' }),
      { margin: tensor([2, 1]), centerCoef: 0.5 });
    expect(loss.item()).toBeCloseTo(Math.LN2 + 4.25, 14);
    expect(accuracy.item()).toBe(1);
    expect(meanMargin.item()).toBe(1.5);
  }));

  test('huge score gaps stay finite', () => tidy(() => {
    const c = tensor([1e4, -1e4, 0]).requiresGrad_();
    const r = zeros([3]).requiresGrad_();
    const { loss } = ops.bradleyTerryLoss(c, r);
    loss.backward();
    expect(loss.item()).toBeCloseTo((1e4 + Math.LN2) / 3, 2);
    const g = c.grad!.toArray() as number[];
    expect(g[0]).toBe(0);
    expect(g[1]).toBeCloseTo(-1 / 3, 6);
    expect(g[2]).toBeCloseTo(-1 / 6, 6);
  }));

  test('bfloat16 scores: float32 loss close to float64 on the same values', () => tidy(() => {
    manualSeed(2);
    const c = randn([50]).mul(2).to('bfloat16');
    const r = randn([50]).mul(2).to('bfloat16');
    const got = ops.bradleyTerryLoss(c, r, { margin: 0.5 });
    const want = bradleyTerryLossRef(c.double(), r.double(), 0.5);
    expect(got.loss.dtype).toBe('float32');
    expect(maxDiff(got.loss, want.loss)).toBeLessThan(1e-6);
    expect(maxDiff(got.meanMargin, want.meanMargin)).toBeLessThan(1e-6);
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const a = randn([4]);
    expect(() => ops.bradleyTerryLoss(a, randn([5]))).toThrow(/'rejected_scores' must have the shape of 'chosen_scores' \[4\], got \[5\]/);
    expect(() => ops.bradleyTerryLoss(a, a, { centerCoef: -1 })).toThrow(/'centerCoef' must be a finite number ≥ 0, got -1/);
    expect(() => ops.bradleyTerryLoss(a, a, { margin: randn([2]) })).toThrow(/'margin' must have the shape of 'chosen_scores'/);
    expect(() => ops.bradleyTerryLoss(a, a, { margin: 'x' as unknown as number })).toThrow(/'margin' must be a Tensor or a number/);
    expect(() => ops.bradleyTerryLoss(a, null as unknown as Tensor)).toThrow(/'rejectedScores' must be a Tensor/);
    expect(ops.bradleyTerryLoss(a, a).loss.item()).toBeCloseTo(Math.LN2, 6);
  }));
});
