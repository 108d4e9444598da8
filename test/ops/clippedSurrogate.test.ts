import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { clippedSurrogateRef, surrogateMetricsRef, type SurrogateRefOptions } from '../reference/clippedSurrogate.js';
import { lossAggRef, type Aggregation } from '../reference/lossAgg.js';

const MODES: Aggregation[] = ['token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm', 'seq_mean_token_sum'];

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

function metricsOf(r: ReturnType<typeof ops.clippedSurrogate>): number[] {
  const m = r.metrics;
  return [m.clipFrac.item(), m.clipFracLow.item(), m.clipFracHigh.item(), m.approxKl.item()];
}

/** Inputs with both advantage signs, a fully masked row and clipping at every level. */
function inputs(B: number, T: number, perTokenAdv: boolean, spread: number) {
  const lp0 = randn([B, T], { dtype: 'float64' }).sub(2);
  const old = lp0.add(randn([B, T], { dtype: 'float64' }).mul(spread));
  const adv = perTokenAdv ? randn([B, T], { dtype: 'float64' }) : randn([B], { dtype: 'float64' });
  if (!perTokenAdv) adv.slice(0, 0, 2).copy_(tensor([0.7, -0.9], { dtype: 'float64' }));
  const mask = rand([B, T]).gt(0.25);
  mask.select(0, 3).fill_(false);
  return { lp0, old, adv, mask };
}

describe('ops.clippedSurrogate', () => {
  const cases: { name: string; o: SurrogateRefOptions }[] = [
    { name: 'ε = 0.2', o: { epsLow: 0.2 } },
    { name: 'clip-higher ε = (0.2, 0.28)', o: { epsLow: 0.2, epsHigh: 0.28 } },
    { name: 'dual-clip c = 3', o: { epsLow: 0.2, dualClip: 3 } },
    { name: 'delta 1.4 + dual-clip 2', o: { epsLow: 0.1, epsHigh: 0.3, delta: 1.4, dualClip: 2 } },
  ];
  for (const level of ['token', 'sequence', 'sequence_token'] as const) {
    for (const { name, o } of cases) {
      for (const perTokenAdv of level === 'sequence' ? [false] : [false, true]) {
        test(`${level}, ${name}, advantages ${perTokenAdv ? '[B, T]' : '[B]'}: per-token loss, loss, gradient and metrics equal the float64 oracle`, () => tidy(() => {
          manualSeed(21);
          const opts = level === 'token' ? o : { ...o, epsLow: (o.epsLow ?? 0.2) / 10, epsHigh: (o.epsHigh ?? o.epsLow ?? 0.2) / 10 };
          const { lp0, old, adv, mask } = inputs(16, 27, perTokenAdv, level === 'token' ? 0.5 : 0.3);
          const a = lp0.clone().requiresGrad_();
          const b = lp0.clone().requiresGrad_();
          for (const aggregation of MODES) {
            a.grad = null;
            b.grad = null;
            const got = ops.clippedSurrogate(a, old, adv, mask, { ...opts, level, aggregation });
            const wantTok = clippedSurrogateRef(b, old, adv, mask, level, opts);
            const want = lossAggRef(wantTok, mask, aggregation);
            expect(got.perToken.dtype).toBe('float64');
            expect(maxDiff(got.perToken, wantTok)).toBeLessThan(1e-12);
            expect(Math.abs(got.loss.item() - want.item())).toBeLessThan(1e-12);
            got.loss.backward();
            want.backward();
            expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-13);
          }
          const got = ops.clippedSurrogate(lp0, old, adv, mask, { ...opts, level });
          const m = metricsOf(got);
          const wantM = surrogateMetricsRef(lp0, old, adv, mask, level, opts);
          for (let i = 0; i < 4; i++) expect(Math.abs(m[i] - wantM[i])).toBeLessThan(1e-12);
          expect(wantM[1]).toBeGreaterThan(0); // the data exercise both clips
          expect(wantM[2]).toBeGreaterThan(0);
        }));
      }
    }
  }

  test('closed form: w = [0.5, 1, 1.5], A = [1, −1, 2], ε = 0.2 → token-mean loss −0.6333', () => tidy(() => {
    const logprobs = tensor([[0.5, 1, 1.5]], { dtype: 'float64' }).log();
    const r = ops.clippedSurrogate(logprobs, zeros([1, 3], { dtype: 'float64' }), tensor([[1, -1, 2]], { dtype: 'float64' }), tensor([[true, true, true]]));
    expect(r.loss.item()).toBeCloseTo(-0.6333, 4);
    expect(r.loss.item()).toBeCloseTo(-1.9 / 3, 12);
    expect(r.perToken.toArray()).toEqual([[-0.5, 1, -2.4]].map((row) => row.map((v) => expect.closeTo(v, 12))));
    expect(metricsOf(r).slice(0, 3)).toEqual([1 / 3, 0, 1 / 3]);
  }));

  test('on-policy (oldLogprobs = logprobs.detach()): ratio 1, loss −mean A, gradient −A·∇ℓ', () => tidy(() => {
    manualSeed(4);
    const lp = randn([5, 12]).sub(1).requiresGrad_();
    const adv = randn([5]);
    const mask = rand([5, 12]).gt(0.2);
    const r = ops.clippedSurrogate(lp, lp.detach(), adv, mask); // token_mean
    const A = adv.unsqueeze(1).expand([5, 12]);
    const N = mask.sum().item();
    const minusA = A.neg().mul(mask.float());
    expect(maxDiff(r.perToken, minusA)).toBe(0);
    expect(Math.abs(r.loss.item() - minusA.sum().item() / N)).toBeLessThan(1e-6);
    r.loss.backward();
    expect(maxDiff(lp.grad!, minusA.div(N))).toBeLessThan(1e-7);
    expect(metricsOf(r)).toEqual([0, 0, 0, 0]);
  }));

  test('sequence vs sequence_token: equal values; equal gradients under seq_mean_token_mean', () => tidy(() => {
    manualSeed(8);
    const { lp0, old, adv, mask } = inputs(10, 21, false, 0.2);
    const a = lp0.clone().requiresGrad_();
    const b = lp0.clone().requiresGrad_();
    const opts = { epsLow: 0.03, epsHigh: 0.04, aggregation: 'seq_mean_token_mean' as const };
    const seq = ops.clippedSurrogate(a, old, adv, mask, { ...opts, level: 'sequence' });
    const tok = ops.clippedSurrogate(b, old, adv, mask, { ...opts, level: 'sequence_token' });
    expect(maxDiff(seq.perToken, tok.perToken)).toBe(0);
    expect(Math.abs(seq.loss.item() - tok.loss.item())).toBeLessThan(1e-15);
    seq.loss.backward();
    tok.loss.backward();
    expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-15);
    expect(a.grad!.abs().sum().item()).toBeGreaterThan(0);
  }));

  test("level 'sequence' defaults to the mean over sequences of L_b (GSPO), other levels to token_mean", () => tidy(() => {
    manualSeed(9);
    const { lp0, old, adv, mask } = inputs(6, 15, false, 0.2);
    const seq = ops.clippedSurrogate(lp0, old, adv, mask, { level: 'sequence', epsLow: 3e-4, epsHigh: 4e-4 });
    const ref = clippedSurrogateRef(lp0, old, adv, mask, 'sequence', { epsLow: 3e-4, epsHigh: 4e-4 });
    expect(Math.abs(seq.loss.item() - lossAggRef(ref, mask, 'seq_mean_token_mean').item())).toBeLessThan(1e-14);
    const tok = ops.clippedSurrogate(lp0, old, adv, mask);
    const refTok = clippedSurrogateRef(lp0, old, adv, mask, 'token');
    expect(Math.abs(tok.loss.item() - lossAggRef(refTok, mask, 'token_mean').item())).toBeLessThan(1e-14);
  }));

  for (const level of ['token', 'sequence', 'sequence_token'] as const) {
    test(`${level}: micro-batches with normalizer / numSequences accumulate the full-batch gradient for all four aggregations`, () => tidy(() => {
      manualSeed(13);
      const { lp0, old, adv, mask } = inputs(8, 17, false, 0.3);
      const normalizer = mask.sum().item();
      const numSequences = mask.sum(1).gt(0).sum().item();
      for (const aggregation of MODES) {
        const full = lp0.clone().requiresGrad_();
        ops.clippedSurrogate(full, old, adv, mask, { level, aggregation, epsLow: 0.05 }).loss.backward();
        const acc = lp0.clone().requiresGrad_();
        for (const [s, e] of [[0, 2], [2, 7], [7, 8]]) {
          const sl = (t: Tensor) => t.slice(0, s, e);
          ops.clippedSurrogate(sl(acc), sl(old), sl(adv), sl(mask), { level, aggregation, epsLow: 0.05, normalizer, numSequences }).loss.backward();
        }
        expect(maxDiff(acc.grad!, full.grad!)).toBeLessThan(1e-15);
        expect(full.grad!.abs().sum().item()).toBeGreaterThan(0);
      }
    }));
  }

  test('masked NaN/Inf and log-ratio overflow stay finite; an all-masked batch gives 0 and zero gradient', () => tidy(() => {
    const lp = tensor([[-1, NaN, Infinity], [50, -1, -2]]);
    const old = tensor([[-1.2, 1, NaN], [-50, -Infinity, -2.5]]);
    const mask = tensor([[true, false, false], [true, false, true]]);
    for (const level of ['token', 'sequence', 'sequence_token'] as const) {
      const adv = level === 'sequence' ? tensor([1, -1]) : tensor([[1, NaN, Infinity], [-1, NaN, 2]]);
      const x = lp.clone().requiresGrad_();
      const r = ops.clippedSurrogate(x, old, adv, mask, { level });
      r.loss.backward();
      expect(r.perToken.isfinite().all().item()).toBe(true);
      expect(Number.isFinite(r.loss.item())).toBe(true);
      expect(x.grad!.isfinite().all().item()).toBe(true);
      expect(metricsOf(r).every(Number.isFinite)).toBe(true);
      const y = lp.clone().requiresGrad_();
      const z = ops.clippedSurrogate(y, old, adv, zeros([2, 3]).bool(), { level });
      z.loss.backward();
      expect(z.loss.item()).toBe(0);
      expect(y.grad!.abs().max().item()).toBe(0);
      expect(metricsOf(z)).toEqual([0, 0, 0, 0]);
    }
  }));

  test('metrics are 0-d tensors without gradient', () => tidy(() => {
    const lp = randn([2, 4]).requiresGrad_();
    const r = ops.clippedSurrogate(lp, randn([2, 4]), randn([2]), rand([2, 4]).gt(0.1));
    for (const t of Object.values(r.metrics)) {
      expect(t.shape).toEqual([]);
      expect(t.requiresGrad).toBe(false);
    }
    expect(r.loss.requiresGrad).toBe(true);
  }));

  test('bfloat16 / float16 log-probs: per-token loss and gradient keep the dtype, loss is float32', () => tidy(() => {
    manualSeed(6);
    const lp = randn([6, 40], { dtype: 'float64' }).sub(2);
    const old = lp.add(randn([6, 40], { dtype: 'float64' }).mul(0.2));
    const adv = randn([6]);
    const mask = rand([6, 40]).gt(0.3);
    for (const dt of ['bfloat16', 'float16'] as const) {
      for (const level of ['token', 'sequence', 'sequence_token'] as const) {
        const x = lp.to(dt).requiresGrad_();
        const r = ops.clippedSurrogate(x, old.to(dt), adv, mask, { level });
        r.loss.backward();
        expect(r.perToken.dtype).toBe(dt);
        expect(r.loss.dtype).toBe('float32');
        expect(x.grad!.dtype).toBe(dt);
        const xd = lp.to(dt).double().requiresGrad_();
        const want = lossAggRef(clippedSurrogateRef(xd, old.to(dt).double(), adv.double(), mask, level), mask,
          level === 'sequence' ? 'seq_mean_token_mean' : 'token_mean');
        want.backward();
        expect(Math.abs(r.loss.item() - want.item())).toBeLessThan(2e-2);
        expect(maxDiff(x.grad!, xd.grad!)).toBeLessThan(1e-3);
      }
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const lp = randn([2, 3]);
    const adv = randn([2]);
    const m = rand([2, 3]).gt(0.5);
    const cs = ops.clippedSurrogate;
    expect(() => cs(lp, randn([3, 2]), adv, m)).toThrow(/clippedSurrogate: 'oldLogprobs' must have the shape of 'logprobs' \[2, 3\], got \[3, 2\]/);
    expect(() => cs(lp, lp, randn([3]), m)).toThrow(/'advantages' must have shape \[B\] = \[2\] or \[B, T\] = \[2, 3\], got \[3\]/);
    expect(() => cs(lp, lp, randn([2, 3]), m, { level: 'sequence' })).toThrow(/'advantages' must have shape \[B\] = \[2\] at level 'sequence'/);
    expect(() => cs(lp, lp, adv, rand([2, 2]).gt(0))).toThrow(/'mask' must have the shape of 'logprobs'/);
    expect(() => cs(randn([6]), randn([6]), adv, rand([6]).gt(0))).toThrow(/'logprobs' must have shape \[B, T\], got \[6\]/);
    expect(() => cs(lp, lp.double(), adv, m)).toThrow(/'old_logprobs' must have dtype Float/);
    expect(() => cs(lp, lp, adv, m, { level: 'seq' as 'token' })).toThrow(/'level' must be one of 'token', 'sequence', 'sequence_token'/);
    expect(() => cs(lp, lp, adv, m, { epsLow: -0.1 })).toThrow(/'epsLow' must be a finite number >= 0, got -0.1/);
    expect(() => cs(lp, lp, adv, m, { epsHigh: Infinity })).toThrow(/'epsHigh' must be a finite number >= 0/);
    expect(() => cs(lp, lp, adv, m, { dualClip: 1 })).toThrow(/'dualClip' must be a finite number > 1, got 1/);
    expect(() => cs(lp, lp, adv, m, { delta: 0 })).toThrow(/'delta' must be a finite number > 0/);
    expect(() => cs(lp, lp, adv, m, { aggregation: 'sum' as Aggregation })).toThrow(/clippedSurrogate: 'aggregation' must be one of/);
    expect(() => cs(lp, lp, 1 as unknown as Tensor, m)).toThrow(/clippedSurrogate: argument 'advantages' must be a Tensor/);
    expect(cs(lp, lp, adv, m).perToken.shape).toEqual([2, 3]); // still usable after errors
  }));
});
