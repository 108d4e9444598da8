import { describe, expect, test } from 'vitest';
import { manualSeed, ops, rand, randn, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { lossAggRef, type Aggregation } from '../reference/lossAgg.js';

const MODES: Aggregation[] = ['token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm', 'seq_mean_token_sum'];

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}

/** [B, T] mask with ~70% valid tokens, row 2 fully masked and row 5 cut short. */
function makeMask(B: number, T: number): Tensor {
  const m = rand([B, T]).gt(0.3);
  m.select(0, 2).fill_(false);
  m.select(0, 5).slice(0, 4).fill_(false);
  return m;
}

describe('ops.lossAgg', () => {
  for (const aggregation of MODES) {
    test(`${aggregation}: value and gradient equal the float64 oracle (fully masked rows excluded)`, () => tidy(() => {
      manualSeed(3);
      const L0 = randn([7, 19], { dtype: 'float64' });
      const mask = makeMask(7, 19);
      for (const maxLength of [undefined, 32]) {
        const a = L0.clone().requiresGrad_();
        const b = L0.clone().requiresGrad_();
        const got = ops.lossAgg(a, mask, { aggregation, maxLength });
        const want = lossAggRef(b, mask, aggregation, { maxLength });
        expect(got.shape).toEqual([]);
        expect(got.dtype).toBe('float64');
        expect(Math.abs(got.item() - want.item())).toBeLessThan(1e-13);
        got.backward();
        want.backward();
        expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-14);
      }
    }));

    test(`${aggregation}: micro-batches with global counts accumulate exactly the full-batch gradient`, () => tidy(() => {
      manualSeed(11);
      const B = 8, T = 23;
      const L0 = randn([B, T], { dtype: 'float64' });
      const mask = makeMask(B, T);
      const normalizer = mask.sum().item();
      const numSequences = mask.sum(1).gt(0).sum().item();
      const full = L0.clone().requiresGrad_();
      const fullLoss = ops.lossAgg(full, mask, { aggregation, maxLength: 40 });
      fullLoss.backward();
      const acc = L0.clone().requiresGrad_();
      let total = 0;
      for (const [s, e] of [[0, 3], [3, 4], [4, 8]]) {
        const part = ops.lossAgg(acc.slice(0, s, e), mask.slice(0, s, e), { aggregation, normalizer, numSequences, maxLength: 40 });
        total += part.item();
        part.backward();
      }
      expect(Math.abs(total - fullLoss.item())).toBeLessThan(1e-13);
      expect(maxDiff(acc.grad!, full.grad!)).toBeLessThan(1e-15);
      // Without the global counts the micro-batch means differ (the test can fail).
      const naive = L0.clone().requiresGrad_();
      for (const [s, e] of [[0, 3], [3, 4], [4, 8]]) ops.lossAgg(naive.slice(0, s, e), mask.slice(0, s, e), { aggregation, maxLength: 40 }).backward();
      expect(maxDiff(naive.grad!, full.grad!)).toBeGreaterThan(1e-3);
    }));
  }

  test('closed forms', () => tidy(() => {
    const L = tensor([[1, 2, 3, 0], [4, 0, 0, 0], [9, 9, 9, 9]], { dtype: 'float64' });
    const m = tensor([[true, true, true, false], [true, false, false, false], [false, false, false, false]]);
    // row sums 6 (3 tokens) and 4 (1 token); row 3 fully masked. N = 4, S = 2, T = 4.
    expect(ops.lossAgg(L, m).item()).toBe(10 / 4);
    expect(ops.lossAgg(L, m, { aggregation: 'seq_mean_token_mean' }).item()).toBe((2 + 4) / 2);
    expect(ops.lossAgg(L, m, { aggregation: 'seq_mean_token_sum_norm' }).item()).toBe(10 / (2 * 4));
    expect(ops.lossAgg(L, m, { aggregation: 'seq_mean_token_sum_norm', maxLength: 10 }).item()).toBe(10 / 20);
    expect(ops.lossAgg(L, m, { aggregation: 'seq_mean_token_sum' }).item()).toBe(10 / 2);
    // each mode reads only its own count
    expect(ops.lossAgg(L, m, { normalizer: 8, numSequences: 100 }).item()).toBe(10 / 8);
    expect(ops.lossAgg(L, m, { aggregation: 'seq_mean_token_sum', normalizer: 100, numSequences: 5 }).item()).toBe(10 / 5);
  }));

  test('all-masked batch and zero normaliser → 0 with zero gradient; masked NaN/Inf never leak', () => tidy(() => {
    const L = tensor([[1, NaN, Infinity], [-Infinity, 2, NaN]]);
    const m = tensor([[true, false, false], [false, true, false]]);
    for (const aggregation of MODES) {
      const x = L.clone().requiresGrad_();
      const out = ops.lossAgg(x, m, { aggregation });
      out.backward();
      expect(Number.isFinite(out.item())).toBe(true);
      expect(x.grad!.isfinite().all().item()).toBe(true);
      expect((x.grad!.toArray() as number[][]).map((r) => r.map((v) => v !== 0))).toEqual(m.toArray());
      for (const opts of [{ mask: zeros([2, 3]).bool(), normalizer: undefined }, { mask: m, normalizer: 0 }]) {
        const y = L.clone().requiresGrad_();
        const o = ops.lossAgg(y, opts.mask, { aggregation, normalizer: opts.normalizer, numSequences: opts.normalizer });
        o.backward();
        expect(o.item()).toBe(0);
        expect(y.grad!.abs().max().item()).toBe(0);
      }
    }
  }));

  test('bfloat16 / float16 losses give a float32 scalar and a gradient in the input dtype', () => tidy(() => {
    const L = randn([4, 30], { dtype: 'float64' });
    const m = rand([4, 30]).gt(0.2);
    for (const dt of ['bfloat16', 'float16'] as const) {
      const x = L.to(dt).requiresGrad_();
      const out = ops.lossAgg(x, m, { aggregation: 'seq_mean_token_mean' });
      out.backward();
      expect(out.dtype).toBe('float32');
      expect(x.grad!.dtype).toBe(dt);
      const want = lossAggRef(L.to(dt).double(), m, 'seq_mean_token_mean');
      expect(Math.abs(out.item() - want.item())).toBeLessThan(1e-6);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const L = randn([2, 3]);
    const m = rand([2, 3]).gt(0.5);
    expect(() => ops.lossAgg(L, m, { aggregation: 'mean' as Aggregation })).toThrow(/lossAgg: 'aggregation' must be one of 'token_mean'/);
    expect(() => ops.lossAgg(L, rand([3, 2]).gt(0.5))).toThrow(/lossAgg: 'mask' must have the shape of 'loss' \[2, 3\], got \[3, 2\]/);
    expect(() => ops.lossAgg(randn([6]), rand([6]).gt(0.5))).toThrow(/'loss' must have shape \[B, T\], got \[6\]/);
    expect(() => ops.lossAgg(L, m, { normalizer: -1 })).toThrow(/'normalizer' must be a finite number >= 0, got -1/);
    expect(() => ops.lossAgg(L, m, { numSequences: NaN })).toThrow(/'numSequences' must be a finite number >= 0/);
    expect(() => ops.lossAgg(L, m, { maxLength: 2.5 })).toThrow(/'maxLength' must be a positive integer, got 2.5/);
    expect(() => ops.lossAgg(L, 'mask' as unknown as Tensor)).toThrow(/lossAgg: argument 'mask' must be a Tensor/);
  }));
});
