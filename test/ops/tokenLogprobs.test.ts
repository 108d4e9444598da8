import { describe, expect, test } from 'vitest';
import { arange, manualSeed, memoryStats, noGrad, ops, rand, randint, randn, resetPeakMemory, tensor, tidy, type Tensor } from '../../src/index.js';
import { tokenLogprobsRef } from '../reference/tokenLogprobs.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}
function maxAbs(a: Tensor): number {
  return a.double().abs().max().item();
}

interface Run { logprobs: Tensor; entropy: Tensor; grad: Tensor }

// Values, and the gradient of Σ(w1·logp + w2·H) w.r.t. logits — fused, or the oracle in float64 on
// the same (dtype-rounded) logits.
function run(fused: boolean, x0: Tensor, t: Tensor, temperature: number, w1: Tensor, w2: Tensor): Run {
  const x = (fused ? x0 : x0.double()).detach().clone().requiresGrad_();
  const out = fused ? ops.tokenLogprobs(x, t, { temperature, withEntropy: true }) : tokenLogprobsRef(x, t, temperature);
  out.logprobs.double().mul(w1).sum().add(out.entropy!.double().mul(w2).sum()).backward();
  return { logprobs: out.logprobs.detach(), entropy: out.entropy!.detach(), grad: x.grad! };
}

function expectClose(got: Run, want: Run, atol: number, rtol: number): void {
  for (const k of ['logprobs', 'entropy', 'grad'] as const) {
    expect(got[k].shape, k).toEqual(want[k].shape);
    expect(got[k].isfinite().all().item(), `${k} finite`).toBe(true);
    expect(maxDiff(got[k], want[k]), k).toBeLessThanOrEqual(atol + rtol * maxAbs(want[k]));
  }
}

function check(x: Tensor, t: Tensor, temperature: number, atol: number, rtol: number): void {
  const w1 = randn(t.shape, { dtype: 'float64' });
  const w2 = randn(t.shape, { dtype: 'float64' });
  const got = run(true, x, t, temperature, w1, w2);
  expect(got.logprobs.dtype).toBe(x.dtype);
  expect(got.entropy.dtype).toBe(x.dtype);
  expect(got.grad.dtype).toBe(x.dtype);
  expectClose(got, run(false, x, t, temperature, w1, w2), atol, rtol);
}

describe('ops.tokenLogprobs', () => {
  for (const shape of [[2, 3], [7]]) {
    for (const v of [1, 37, 1001]) { // odd V: below and off the SIMD width
      test(`[${[...shape, 'V'].join(', ')}] with V=${v}: values and gradients (logp and entropy, τ ≠ 1) equal the float64 oracle`, () => tidy(() => {
        manualSeed(21 + v);
        const x = randn([...shape, v], { dtype: 'float64' }).mul(3);
        const t = randint(0, v, shape, { dtype: 'int64' });
        for (const tau of [1, 0.7, 1.5]) {
          check(x, t, tau, 1e-12, 1e-12);   // float64
          check(x.float(), t, tau, 1e-5, 1e-5); // float32: ALGORITHMS.md §1 asks for 1e-5
        }
      }));
    }
  }

  test('logprobs ≤ 0 and entropy ≥ 0, also for peaked rows; gather(log_softmax) agrees', () => tidy(() => {
    manualSeed(22);
    const x = randn([64, 300]).mul(10).maskedFill(arange(64 * 300).eq(5).view(64, 300), 1e4); // row 0: p ≈ one-hot
    const t = randint(0, 300, [64], { dtype: 'int64' });
    const { logprobs, entropy } = ops.tokenLogprobs(x, t, { withEntropy: true });
    expect(logprobs.le(0).all().item()).toBe(true);
    expect(entropy!.ge(0).all().item()).toBe(true);
    const want = x.logSoftmax(-1).gather(-1, t.unsqueeze(-1)).squeeze(-1);
    expect(maxDiff(logprobs, want)).toBeLessThan(1e-5);
  }));

  test('−inf logits on non-target entries: finite values and gradients, zero gradient there', () => tidy(() => {
    manualSeed(23);
    const x0 = randn([4, 6, 37]);
    const t = randint(0, 37, [4, 6], { dtype: 'int64' });
    // mask about half the vocabulary, never the target
    const notTarget = t.unsqueeze(-1).ne(tensor([...Array(37).keys()], { dtype: 'int64' }));
    const masked = rand([4, 6, 37]).lt(0.5).logicalAnd(notTarget);
    const x = x0.maskedFill(masked, -Infinity);
    for (const tau of [1, 0.6]) {
      check(x, t, tau, 1e-5, 1e-5);
      const xg = x.clone().requiresGrad_();
      const { logprobs, entropy } = ops.tokenLogprobs(xg, t, { temperature: tau, withEntropy: true });
      logprobs.sum().add(entropy!.sum()).backward();
      expect(xg.grad!.isfinite().all().item()).toBe(true);
      expect(xg.grad!.maskedFill(masked.logicalNot(), 0).abs().max().item()).toBe(0);
    }
  }));

  test('bfloat16 and float16 keep their dtype and stay within one rounding of the float64 oracle', () => tidy(() => {
    manualSeed(24);
    for (const dt of ['bfloat16', 'float16'] as const) {
      for (const v of [37, 1001]) {
        const x = randn([3, 5, v]).mul(3).to(dt);
        const t = randint(0, v, [3, 5], { dtype: 'int64' });
        // oracle on the rounded logits; outputs and gradients are rounded once to dt (2^-8 for bfloat16)
        check(x, t, 0.8, dt === 'bfloat16' ? 3e-2 : 4e-3, dt === 'bfloat16' ? 1e-2 : 2e-3);
      }
    }
  }));

  test('entropy only when asked; a gradient through logprobs alone is the oracle\'s', () => tidy(() => {
    manualSeed(25);
    const x = randn([5, 29], { dtype: 'float64' });
    const t = randint(0, 29, [5], { dtype: 'int64' });
    const a = x.clone().requiresGrad_();
    const out = ops.tokenLogprobs(a, t, { temperature: 1.3 });
    expect(out.entropy).toBeUndefined();
    out.logprobs.sum().backward();
    const b = x.clone().requiresGrad_();
    tokenLogprobsRef(b, t, 1.3).logprobs.sum().backward();
    expect(maxDiff(a.grad!, b.grad!)).toBeLessThan(1e-12);
  }));

  test('a strided view logits[:, :-1] is read in place and gives the contiguous result', () => tidy(() => {
    manualSeed(26);
    const full = randn([2, 9, 40]);
    const t = randint(0, 40, [2, 8], { dtype: 'int64' });
    const view = full.slice(1, 0, 8);
    const a = ops.tokenLogprobs(view, t, { withEntropy: true });
    const b = ops.tokenLogprobs(view.contiguous(), t, { withEntropy: true });
    expect(maxDiff(a.logprobs, b.logprobs)).toBe(0);
    expect(maxDiff(a.entropy!, b.entropy!)).toBe(0);
  }));

  test('no [N, V] intermediate: forward extra memory is O(N); forward+backward only adds the gradient', () => tidy(() => {
    const [n, v] = [64, 8192];
    const x = randn([n, v]);
    const t = randint(0, v, [n], { dtype: 'int64' });
    const peak = (fn: () => void): number => {
      resetPeakMemory();
      const before = memoryStats().cpu.current;
      tidy(fn);
      return memoryStats().cpu.peak - before;
    };
    const fwd = peak(() => { noGrad(() => ops.tokenLogprobs(x, t, { withEntropy: true })); });
    expect(fwd).toBeLessThan(64 * 1024); // [N] outputs only; the logits are 2 MiB
    const xg = x.clone().requiresGrad_();
    const both = peak(() => {
      const { logprobs, entropy } = ops.tokenLogprobs(xg, t, { withEntropy: true });
      logprobs.sum().add(entropy!.sum()).backward();
    });
    expect(both).toBeLessThan(n * v * 4 + 64 * 1024); // the gradient itself, plus [N] tensors
  }));

  test('a target outside [0, V) throws, naming the value and V', () => tidy(() => {
    const x = randn([2, 3, 37]);
    for (const bad of [37, -1]) {
      const t = tensor([[0, 1, 2], [3, 4, bad]], { dtype: 'int64' });
      expect(() => ops.tokenLogprobs(x, t)).toThrow(/token_logprobs: 'targets' must be in \[0, V\) with V = 37 .*got -?\d+ at flat position 5/);
    }
  }));

  test('bad arguments give errors naming the argument', () => tidy(() => {
    const x = randn([2, 3, 5]);
    const t = randint(0, 5, [2, 3], { dtype: 'int64' });
    expect(() => ops.tokenLogprobs(x, randint(0, 5, [3, 2], { dtype: 'int64' }))).toThrow(/'targets' must have shape \[2, 3\] \(the leading dims of 'logits' \[2, 3, 5\]\), got \[3, 2\]/);
    expect(() => ops.tokenLogprobs(x, t.float())).toThrow(/'targets' must be int64, got float32/);
    expect(() => ops.tokenLogprobs(x, t, { temperature: 0 })).toThrow(/'temperature' must be a positive finite number, got 0/);
    expect(() => ops.tokenLogprobs(x, 3 as unknown as Tensor)).toThrow(/'targets' must be a Tensor/);
    expect(() => ops.tokenLogprobs(x.long(), t)).toThrow(/'logits' must be float32, float64, bfloat16 or float16/);
    expect(ops.tokenLogprobs(x, t).logprobs.shape).toEqual([2, 3]); // still usable after errors
  }));
});
