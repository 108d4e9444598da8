import { describe, expect, test } from 'vitest';
import { manualSeed, memoryStats, ops, randint, randn, resetPeakMemory, tensor, tidy, zeros, type Tensor } from '../../src/index.js';
import { linearTokenLogprobsRef } from '../reference/linearTokenLogprobs.js';

function maxDiff(a: Tensor, b: Tensor): number {
  return a.double().sub(b.double()).abs().max().item();
}
function maxAbs(a: Tensor): number {
  return a.double().abs().max().item();
}

interface Run { logprobs: Tensor; entropy: Tensor; gh: Tensor; gw: Tensor; gb: Tensor | null }

// Values and the gradients of Σ(w1·logp + w2·H) w.r.t. hidden, weight, bias — fused or oracle.
function run(fused: boolean, h0: Tensor, w0: Tensor, t: Tensor, b0: Tensor | null, temperature: number, chunkSize: number, w1: Tensor, w2: Tensor): Run {
  const h = h0.clone().requiresGrad_();
  const wt = w0.clone().requiresGrad_();
  const b = b0 ? b0.clone().requiresGrad_() : null;
  const out = fused
    ? ops.linearTokenLogprobs(h, wt, t, { bias: b, temperature, chunkSize, withEntropy: true })
    : linearTokenLogprobsRef(h, wt, t, { bias: b ?? undefined, temperature });
  out.logprobs.mul(w1).sum().add(out.entropy!.mul(w2).sum()).backward();
  return { logprobs: out.logprobs.detach(), entropy: out.entropy!.detach(), gh: h.grad!, gw: wt.grad!, gb: b ? b.grad! : null };
}

function expectClose(got: Run, want: Run, atol: number, rtol: number): void {
  for (const k of ['logprobs', 'entropy', 'gh', 'gw', 'gb'] as const) {
    const g = got[k], e = want[k];
    if (!e) continue;
    expect(g!.shape, k).toEqual(e.shape);
    expect(maxDiff(g!, e), k).toBeLessThanOrEqual(atol + rtol * maxAbs(e));
  }
}

describe('ops.linearTokenLogprobs', () => {
  test('float64: values and gradients (hidden, weight, bias; logp and entropy) equal the oracle for every chunk size', () => tidy(() => {
    manualSeed(11);
    const [n, hd, v] = [13, 6, 29];
    const h = randn([n, hd], { dtype: 'float64' });
    const wt = randn([v, hd], { dtype: 'float64' });
    const b = randn([v], { dtype: 'float64' });
    const t = randint(0, v, [n], { dtype: 'int64' });
    const w1 = randn([n], { dtype: 'float64' });
    const w2 = randn([n], { dtype: 'float64' });
    for (const bias of [null, b]) {
      for (const tau of [1, 0.7, 1.6]) {
        const want = run(false, h, wt, t, bias, tau, 0, w1, w2);
        for (const chunk of [0, 1, 4, 5, 13, 50]) { // 4 and 5 do not divide 13
          expectClose(run(true, h, wt, t, bias, tau, chunk, w1, w2), want, 1e-11, 1e-11);
        }
      }
    }
  }));

  test('float32 matches the float64 oracle to 1e-5, and chunking only changes rounding', () => tidy(() => {
    manualSeed(12);
    const [n, hd, v] = [41, 16, 257];
    const h = randn([n, hd], { dtype: 'float64' });
    const wt = randn([v, hd], { dtype: 'float64' }).mul(0.5);
    const b = randn([v], { dtype: 'float64' });
    const t = randint(0, v, [n], { dtype: 'int64' });
    const w1 = randn([n], { dtype: 'float64' });
    const w2 = randn([n], { dtype: 'float64' });
    const want = run(false, h, wt, t, b, 0.8, 0, w1, w2);
    const f = (x: Tensor) => x.float();
    const first = run(true, f(h), f(wt), t, f(b), 0.8, 0, f(w1), f(w2));
    expectClose(first, want, 1e-5, 1e-6);
    for (const chunk of [1, 6, 40, 41]) {
      const got = run(true, f(h), f(wt), t, f(b), 0.8, chunk, f(w1), f(w2));
      expectClose(got, want, 1e-5, 1e-6);
      expectClose(got, first, 1e-6, 1e-6);
    }
  }));

  test('[B, T, H] hidden with [B, T] targets; entropy only when asked; logp ≤ 0 and H ≥ 0', () => tidy(() => {
    manualSeed(13);
    const h = randn([2, 5, 8]);
    const wt = randn([11, 8]);
    const t = randint(0, 11, [2, 5], { dtype: 'int64' });
    const plain = ops.linearTokenLogprobs(h, wt, t);
    expect(plain.entropy).toBeUndefined();
    expect(plain.logprobs.shape).toEqual([2, 5]);
    expect(plain.logprobs.dtype).toBe('float32');
    const both = ops.linearTokenLogprobs(h, wt, t, { withEntropy: true, chunkSize: 3 });
    expect(both.entropy!.shape).toEqual([2, 5]);
    expect(plain.logprobs.max().item()).toBeLessThanOrEqual(0);
    expect(both.entropy!.min().item()).toBeGreaterThanOrEqual(0);
    const ref = linearTokenLogprobsRef(h.double(), wt.double(), t);
    expect(maxDiff(both.logprobs, ref.logprobs)).toBeLessThan(1e-5);
    expect(maxDiff(both.entropy!, ref.entropy)).toBeLessThan(1e-5);
  }));

  test('gradient through the entropy alone (the part other libraries skip)', () => tidy(() => {
    manualSeed(14);
    const h0 = randn([7, 5], { dtype: 'float64' });
    const w0 = randn([9, 5], { dtype: 'float64' });
    const t = randint(0, 9, [7], { dtype: 'int64' });
    const [a, wa, c, wc] = [h0.clone().requiresGrad_(), w0.clone().requiresGrad_(), h0.clone().requiresGrad_(), w0.clone().requiresGrad_()];
    ops.linearTokenLogprobs(a, wa, t, { withEntropy: true, temperature: 1.3, chunkSize: 2 }).entropy!.sum().backward();
    linearTokenLogprobsRef(c, wc, t, { temperature: 1.3 }).entropy.sum().backward();
    expect(maxDiff(a.grad!, c.grad!)).toBeLessThan(1e-11);
    expect(maxDiff(wa.grad!, wc.grad!)).toBeLessThan(1e-11);
  }));

  test('−inf bias on part of the vocabulary: finite values and gradients, equal to the oracle on the rest', () => tidy(() => {
    manualSeed(15);
    const h = randn([6, 8]);
    const wt = randn([40, 8]);
    const bias = zeros([40]);
    bias.slice(0, 20, 40).fill_(-Infinity);
    const t = randint(0, 20, [6], { dtype: 'int64' });
    const [hh, ww, bb] = [h.clone().requiresGrad_(), wt.clone().requiresGrad_(), bias.clone().requiresGrad_()];
    const out = ops.linearTokenLogprobs(hh, ww, t, { bias: bb, temperature: 0.9, chunkSize: 4, withEntropy: true });
    out.logprobs.sum().add(out.entropy!.sum()).backward();
    for (const x of [out.logprobs, out.entropy!, hh.grad!, ww.grad!, bb.grad!]) expect(x.isfinite().all().item()).toBe(true);
    const ref = linearTokenLogprobsRef(h.double(), wt.slice(0, 0, 20).double(), t, { temperature: 0.9 });
    expect(maxDiff(out.logprobs, ref.logprobs)).toBeLessThan(1e-5);
    expect(maxDiff(out.entropy!, ref.entropy)).toBeLessThan(1e-5);
    expect(maxAbs(ww.grad!.slice(0, 20, 40))).toBe(0);
  }));

  test('bfloat16 and float16 keep their dtype and stay within rounding of the float64 oracle', () => tidy(() => {
    manualSeed(16);
    const [n, hd, v] = [24, 32, 300];
    const h = randn([n, hd], { dtype: 'float64' }).mul(0.5);
    const wt = randn([v, hd], { dtype: 'float64' }).mul(0.5);
    const b = randn([v], { dtype: 'float64' }).mul(0.1);
    const t = randint(0, v, [n], { dtype: 'int64' });
    const w1 = randn([n], { dtype: 'float64' });
    const w2 = randn([n], { dtype: 'float64' });
    for (const dt of ['bfloat16', 'float16'] as const) {
      const r = (x: Tensor) => x.to(dt);
      const want = run(false, r(h).double(), r(wt).double(), t, r(b).double(), 0.9, 0, w1, w2);
      for (const chunk of [0, 7]) { // one chunk; several (grad_W accumulated in float32 across chunks)
        const got = run(true, r(h), r(wt), t, r(b), 0.9, chunk, r(w1), r(w2));
        expect(got.logprobs.dtype).toBe(dt);
        expect(got.gw.dtype).toBe(dt);
        // outputs and logits are rounded to the dtype: 2^-8 relative for bfloat16, 2^-11 for float16
        expectClose(got, want, 0, dt === 'bfloat16' ? 1.5e-2 : 2e-3);
      }
    }
  }));

  test('peak extra memory stays far below the composed matmul + logSoftmax + gather', () => tidy(() => {
    manualSeed(17);
    const [n, hd, v] = [512, 64, 8000];
    const h = randn([n, hd]).requiresGrad_();
    const wt = randn([v, hd]).mul(0.1).requiresGrad_();
    const t = randint(0, v, [n], { dtype: 'int64' });
    const peak = (fn: () => void) => {
      h.grad = null;
      wt.grad = null;
      resetPeakMemory();
      const before = memoryStats().cpu.current;
      tidy(fn);
      return memoryStats().cpu.peak - before;
    };
    const composed = peak(() => {
      h.matmul(wt.t()).logSoftmax(-1).gather(-1, t.unsqueeze(-1)).sum().backward();
    });
    const fused = peak(() => {
      ops.linearTokenLogprobs(h, wt, t, { chunkSize: 64 }).logprobs.sum().backward();
    });
    const logitsBytes = n * v * 4; // 16 MB
    expect(composed).toBeGreaterThan(2 * logitsBytes);
    // fused: grad_W [V, H] (2 MB, also in the composed number) + one [64, V] buffer (2 MB) + small
    expect(fused).toBeLessThan(composed / 8);
    expect(fused).toBeLessThan(logitsBytes / 2);
  }));

  test('a target outside [0, V) and bad arguments give errors naming the argument', () => tidy(() => {
    const h = randn([4, 3]);
    const wt = randn([7, 3]);
    const t = tensor([0, 1, 2, 6], { dtype: 'int64' });
    expect(() => ops.linearTokenLogprobs(h, wt, tensor([0, 1, 7, 2], { dtype: 'int64' }))).toThrow(/'targets' must be in \[0, V\) = \[0, 7\), got a target of 7/);
    expect(() => ops.linearTokenLogprobs(h, wt, tensor([0, -1, 3, 2], { dtype: 'int64' }))).toThrow(/got a target of -1/);
    expect(() => ops.linearTokenLogprobs(h, randn([7, 4]), t)).toThrow(/'weight' must have shape \[V, H\] = \[V, 3\]/);
    expect(() => ops.linearTokenLogprobs(h, wt, t, { bias: randn([6]) })).toThrow(/'bias' must have shape \[V\] = \[7\]/);
    expect(() => ops.linearTokenLogprobs(h, wt, tensor([0, 1], { dtype: 'int64' }))).toThrow(/'targets' must have shape \[4\]/);
    expect(() => ops.linearTokenLogprobs(h, wt, t, { temperature: 0 })).toThrow(/'temperature' must be a finite number > 0/);
    expect(() => ops.linearTokenLogprobs(h, wt, t, { chunkSize: 1.5 })).toThrow(/'chunkSize' must be an integer/);
    expect(() => ops.linearTokenLogprobs(h, 3 as unknown as Tensor, t)).toThrow(/'weight' must be a Tensor/);
    expect(ops.linearTokenLogprobs(h, wt, t).logprobs.shape).toEqual([4]); // still usable after errors
  }));
});
