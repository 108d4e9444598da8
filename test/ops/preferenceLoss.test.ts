import { describe, expect, test } from 'vitest';
import { manualSeed, ops, randint, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { preferenceLossRef, type PreferenceRefOptions } from '../reference/preferenceLoss.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

const CONFIGS: Omit<PreferenceRefOptions, 'chosenLengths' | 'rejectedLengths'>[] = [
  { type: 'sigmoid', beta: 0.1 },
  { type: 'sigmoid', beta: 0.1, labelSmoothing: 0.1 },
  { type: 'sigmoid', beta: 0.5, labelSmoothing: 0.5 },
  { type: 'robust', beta: 0.3, labelSmoothing: 0.2 },
  { type: 'hinge', beta: 0.5 },
  { type: 'ipo', beta: 0.1 },
];

describe('ops.preferenceLoss', () => {
  for (const cfg of CONFIGS) {
    for (const referenceFree of [false, true]) {
      const name = `${cfg.type} β=${cfg.beta} ε=${cfg.labelSmoothing ?? 0}${referenceFree ? ' reference-free' : ''}`;
      test(`${name}: loss, metrics and gradients equal the float64 oracle`, () => tidy(() => {
        manualSeed(11);
        const B = 29;
        const c0 = randn([B], { dtype: 'float64' }).mul(3).sub(60);
        const r0 = randn([B], { dtype: 'float64' }).mul(3).sub(60);
        const rc = c0.add(randn([B], { dtype: 'float64' }).mul(4));
        const rr = r0.add(randn([B], { dtype: 'float64' }).mul(4));
        const chosenLengths = randint(1, 80, [B]);
        const rejectedLengths = randint(1, 80, [B]);
        const a = c0.clone().requiresGrad_();
        const b = r0.clone().requiresGrad_();
        const a2 = c0.clone().requiresGrad_();
        const b2 = r0.clone().requiresGrad_();
        const o = { ...cfg, chosenLengths, rejectedLengths, referenceFree };
        const got = ops.preferenceLoss(a, b, referenceFree ? null : rc, referenceFree ? null : rr, o);
        const want = preferenceLossRef(a2, b2, rc, rr, o);
        expect(got.loss.dtype).toBe('float64');
        expect(got.loss.shape).toEqual([]);
        expect(maxDiff(got.loss, want.loss)).toBeLessThan(1e-12);
        for (const k of ['rewardsChosen', 'rewardsRejected', 'accuracy', 'margin'] as const) {
          expect(maxDiff(got.metrics[k], want[k])).toBeLessThan(1e-12);
          expect(got.metrics[k].requiresGrad).toBe(false);
        }
        got.loss.backward();
        want.loss.backward();
        expect(maxDiff(a.grad!, a2.grad!)).toBeLessThan(1e-13);
        expect(maxDiff(b.grad!, b2.grad!)).toBeLessThan(1e-13);
      }));
    }
  }

  test('policy == reference: sigmoid loss is ln 2 = 0.693147 in every dtype, metrics 0', () => tidy(() => {
    const lp = randn([16]).mul(5).sub(40);
    const lp2 = randn([16]).mul(5).sub(40);
    for (const dt of ['float32', 'float64', 'bfloat16', 'float16'] as const) {
      const c = lp.to(dt);
      const r = lp2.to(dt);
      const { loss, metrics } = ops.preferenceLoss(c, r, c, r);
      expect(loss.dtype).toBe(dt === 'float64' ? 'float64' : 'float32');
      expect(loss.item()).toBeCloseTo(0.693147, 6);
      expect([metrics.rewardsChosen.item(), metrics.rewardsRejected.item(), metrics.accuracy.item(), metrics.margin.item()]).toEqual([0, 0, 0, 0]);
      // robust and cDPO are ln 2 there too; hinge is 1; ipo is (1/(2β))²
      expect(ops.preferenceLoss(c, r, c, r, { type: 'robust', labelSmoothing: 0.3 }).loss.item()).toBeCloseTo(Math.LN2, 6);
      expect(ops.preferenceLoss(c, r, c, r, { type: 'hinge' }).loss.item()).toBe(1);
      const len = tensor([5], { dtype: 'int64' }).expand(16);
      expect(ops.preferenceLoss(c, r, c, r, { type: 'ipo', beta: 0.25, chosenLengths: len, rejectedLengths: len }).loss.item()).toBeCloseTo(4, 5);
    }
  }));

  test('hand-computed pair: DPO loss, metrics and gradient', () => tidy(() => {
    // ρ_c = −10 − (−12) = 2, ρ_r = −20 − (−19) = −1 → Δ = 3, z = 0.3 (β = 0.1)
    const c = tensor([-10], { dtype: 'float64' }).requiresGrad_();
    const r = tensor([-20], { dtype: 'float64' }).requiresGrad_();
    const { loss, metrics } = ops.preferenceLoss(c, r, tensor([-12], { dtype: 'float64' }), tensor([-19], { dtype: 'float64' }));
    expect(loss.item()).toBeCloseTo(Math.log1p(Math.exp(-0.3)), 14);
    expect(metrics.rewardsChosen.item()).toBeCloseTo(0.2, 14);
    expect(metrics.rewardsRejected.item()).toBeCloseTo(-0.1, 14);
    expect(metrics.margin.item()).toBeCloseTo(0.3, 14);
    expect(metrics.accuracy.item()).toBe(1);
    loss.backward();
    const s = 1 / (1 + Math.exp(0.3)); // σ(−z)
    expect(c.grad!.item()).toBeCloseTo(-0.1 * s, 14);
    expect(r.grad!.item()).toBeCloseTo(0.1 * s, 14);
  }));

  test('log-ratio gaps of ±1e4 stay finite in values and gradients', () => tidy(() => {
    const c = tensor([1e4, -1e4, 0, 5e3]).requiresGrad_();
    const z = zeros([4]);
    const r = zeros([4]).requiresGrad_();
    const { loss } = ops.preferenceLoss(c, r, z, z, { beta: 1 });
    loss.backward();
    expect(loss.item()).toBeCloseTo((1e4 + Math.LN2) / 4, 2);
    expect(c.grad!.toArray()).toEqual([0, -0.25, -0.125, 0]);
    expect(r.grad!.isfinite().all().item()).toBe(true);
    for (const type of ['robust', 'hinge'] as const) {
      const out = ops.preferenceLoss(c, r, z, z, { type, beta: 1, labelSmoothing: type === 'robust' ? 0.1 : 0 }).loss;
      expect(Number.isFinite(out.item())).toBe(true);
    }
  }));

  test('bfloat16 and float16 inputs: float32 loss, gradients in the input dtype, close to float64', () => tidy(() => {
    manualSeed(3);
    const c0 = randn([40], { dtype: 'float64' }).mul(3).sub(20);
    const r0 = randn([40], { dtype: 'float64' }).mul(3).sub(20);
    const rc0 = c0.add(randn([40], { dtype: 'float64' }).mul(4));
    const rr0 = r0.add(randn([40], { dtype: 'float64' }).mul(4));
    for (const dt of ['bfloat16', 'float16'] as const) {
      const c = c0.to(dt).requiresGrad_();
      const r = r0.to(dt).requiresGrad_();
      const c2 = c.detach().double().requiresGrad_();
      const r2 = r.detach().double().requiresGrad_();
      const got = ops.preferenceLoss(c, r, rc0.to(dt), rr0.to(dt), { labelSmoothing: 0.1 });
      const want = preferenceLossRef(c2, r2, rc0.to(dt).double(), rr0.to(dt).double(), { type: 'sigmoid', beta: 0.1, labelSmoothing: 0.1 });
      expect(got.loss.dtype).toBe('float32');
      expect(maxDiff(got.loss, want.loss)).toBeLessThan(1e-5);
      got.loss.backward();
      want.loss.backward();
      expect(c.grad!.dtype).toBe(dt);
      // one bf16/f16 rounding of each gradient (2^-8 relative for bfloat16)
      expect(maxDiff(c.grad!, c2.grad!) / c2.grad!.abs().max().item()).toBeLessThan(1e-2);
      expect(maxDiff(r.grad!, r2.grad!) / r2.grad!.abs().max().item()).toBeLessThan(1e-2);
    }
  }));

  test('reference log-probs get no gradient; an empty batch gives 0', () => tidy(() => {
    const c = randn([5]).requiresGrad_();
    const rc = randn([5]).requiresGrad_();
    ops.preferenceLoss(c, randn([5]), rc, randn([5])).loss.backward();
    expect(c.grad).not.toBeNull();
    expect(rc.grad).toBeNull();
    const e = zeros([0]).requiresGrad_();
    const { loss, metrics } = ops.preferenceLoss(e, e, e, e);
    expect(loss.item()).toBe(0);
    expect(metrics.accuracy.item()).toBe(0);
    loss.backward();
    expect(e.grad!.shape).toEqual([0]);
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const a = randn([4]);
    const len = tensor([3, 3, 3, 3], { dtype: 'int64' });
    expect(() => ops.preferenceLoss(a, randn([3]), a, a)).toThrow(/'rejected_logps' must have the shape of 'chosen_logps' \[4\], got \[3\]/);
    expect(() => ops.preferenceLoss(a, a, a, a, { type: 'dpo' as 'sigmoid' })).toThrow(/'type' must be one of 'sigmoid', 'ipo', 'hinge', 'robust'/);
    expect(() => ops.preferenceLoss(a, a, a, a, { beta: 0 })).toThrow(/'beta' must be a finite number > 0, got 0/);
    expect(() => ops.preferenceLoss(a, a, a, a, { labelSmoothing: 0.7 })).toThrow(/'labelSmoothing' must be in \[0, 0.5\] for 'sigmoid'/);
    expect(() => ops.preferenceLoss(a, a, a, a, { type: 'robust', labelSmoothing: 0.5 })).toThrow(/\[0, 0.5\) for 'robust'/);
    expect(() => ops.preferenceLoss(a, a, a, a, { type: 'hinge', labelSmoothing: 0.1 })).toThrow(/applies only to 'sigmoid' and 'robust'/);
    expect(() => ops.preferenceLoss(a, a, a, a, { type: 'ipo' })).toThrow(/'chosenLengths' and 'rejectedLengths' .* are required/);
    expect(() => ops.preferenceLoss(a, a, a, a, { type: 'ipo', chosenLengths: len, rejectedLengths: tensor([1, 0, 2, 2]) }))
      .toThrow(/'rejected_lengths' must be > 0/);
    expect(() => ops.preferenceLoss(a, a, null, null)).toThrow(/'refChosenLogps' and 'refRejectedLogps' are required unless referenceFree/);
    expect(() => ops.preferenceLoss(a, 3 as unknown as Tensor, a, a)).toThrow(/'rejectedLogps' must be a Tensor/);
    expect(ops.preferenceLoss(a, a, null, null, { referenceFree: true }).loss.item()).toBeCloseTo(Math.LN2, 6);
  }));
});
