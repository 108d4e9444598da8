// Autograd against central finite differences in float64: ∂f/∂xⱼ ≈ (f(x + h·eⱼ) − f(x − h·eⱼ)) / 2h.
// Each function reduces to a scalar; the analytic gradient comes from one backward().
import { describe, expect, test } from 'vitest';
import {
  Tensor, layerNorm, manualSeed, memory, noGrad, randn, rmsNorm, scaledDotProductAttention, softmax, tensor, tidy,
} from '../../src/index.js';

interface Input { data: Float64Array; shape: number[] }

function input(shape: number[]): Input {
  const t = randn(shape, { dtype: 'float64' });
  const data = t.toTypedArray() as Float64Array;
  t.dispose();
  return { data, shape };
}

/** Max |analytic − numeric| / max(1, |numeric|) over every element of every input. */
function gradcheck(f: (xs: Tensor[]) => Tensor, inputs: Input[], h = 1e-6): number {
  const analytic = tidy(() => {
    const xs = inputs.map((i) => tensor(i.data, { shape: i.shape, requiresGrad: true }));
    const y = f(xs);
    expect(y.numel).toBe(1);
    y.backward();
    return xs.map((x) => x.grad!.toTypedArray() as Float64Array);
  });
  const evalF = (): number => tidy(() => noGrad(() => f(inputs.map((i) => tensor(i.data, { shape: i.shape }))).item()));
  let worst = 0;
  inputs.forEach((inp, k) => {
    for (let j = 0; j < inp.data.length; j++) {
      const v = inp.data[j];
      inp.data[j] = v + h;
      const fp = evalF();
      inp.data[j] = v - h;
      const fm = evalF();
      inp.data[j] = v;
      const num = (fp - fm) / (2 * h);
      worst = Math.max(worst, Math.abs(analytic[k][j] - num) / Math.max(1, Math.abs(num)));
    }
  });
  return worst;
}

const idx = (rows: number[][]): Tensor => tensor(rows, { dtype: 'int64' });

describe('gradcheck (float64, central differences)', () => {
  test('the check has teeth: a gradient cut by detach() is caught', () => {
    manualSeed(9);
    // f = Σ x·stopgrad(x): backward gives x, the true derivative is 2x.
    expect(gradcheck(([x]) => x.mul(x.detach()).sum(), [input([4])])).toBeGreaterThan(0.1);
  });

  test('matmul, bias, tanh, softmax: sum(tanh(x·W + b) · softmax(x·W))', () => {
    manualSeed(10);
    const err = gradcheck(([x, w, b]) => {
      const xw = x.matmul(w);
      return xw.add(b).tanh().mul(softmax(xw, -1)).sum();
    }, [input([3, 4]), input([4, 5]), input([5])]);
    expect(err).toBeLessThan(1e-6);
  });

  test('logSoftmax + gather (token log-probs)', () => {
    manualSeed(11);
    const err = gradcheck(([logits]) => logits.logSoftmax(-1).gather(-1, idx([[2], [0], [4]])).mul(tensor([[1], [-2], [0.5]], { dtype: 'float64' })).sum(), [input([3, 5])]);
    expect(err).toBeLessThan(1e-6);
  });

  test('layerNorm with weight and bias; rmsNorm with weight', () => {
    manualSeed(12);
    const proj = randn([2, 3, 4], { dtype: 'float64' }); // a fixed random projection so the sum is not trivially 0
    expect(gradcheck(([x, g, b]) => layerNorm(x, [4], { weight: g, bias: b }).mul(proj).sum(), [input([2, 3, 4]), input([4]), input([4])])).toBeLessThan(1e-6);
    expect(gradcheck(([x, g]) => rmsNorm(x, [4], { weight: g, eps: 1e-6 }).mul(proj).sum(), [input([2, 3, 4]), input([4])])).toBeLessThan(1e-6);
    proj.dispose();
  });

  test('scaledDotProductAttention (causal, and with a boolean mask)', () => {
    manualSeed(13);
    const proj = randn([1, 2, 3, 4], { dtype: 'float64' });
    const mask = tensor([[true, false, true], [true, true, false], [false, true, true]]);
    expect(gradcheck(([q, k, v]) => scaledDotProductAttention(q, k, v, { isCausal: true }).mul(proj).sum(),
      [input([1, 2, 3, 4]), input([1, 2, 3, 4]), input([1, 2, 3, 4])])).toBeLessThan(1e-6);
    expect(gradcheck(([q, k, v]) => scaledDotProductAttention(q, k, v, { attnMask: mask }).mul(proj).sum(),
      [input([1, 2, 3, 4]), input([1, 2, 3, 4]), input([1, 2, 3, 4])])).toBeLessThan(1e-6);
    proj.dispose(); mask.dispose();
  });

  test('one composed block: embedding-free transformer step ending in token log-probs', () => {
    manualSeed(14);
    const base = memory().liveTensors;
    // x [T=3, H=4] → rmsNorm → q, k, v projections → causal attention → layerNorm → logits [3, 5] → log p(target)
    const err = gradcheck(([x, wq, wk, wv, wo, g]) => {
      const h = rmsNorm(x, [4], { weight: g });
      const heads = (t: Tensor): Tensor => t.reshape(1, 3, 2, 2).transpose(1, 2); // [B=1, heads=2, T=3, D=2]
      const att = scaledDotProductAttention(heads(h.matmul(wq)), heads(h.matmul(wk)), heads(h.matmul(wv)), { isCausal: true });
      const merged = att.transpose(1, 2).reshape(3, 4).add(x); // residual
      const logits = layerNorm(merged, [4]).matmul(wo).tanh().mul(3);
      return logits.logSoftmax(-1).gather(-1, idx([[1], [4], [0]])).sum();
    }, [input([3, 4]), input([4, 4]), input([4, 4]), input([4, 4]), input([4, 5]), input([4])]);
    expect(err).toBeLessThan(1e-6);
    expect(memory().liveTensors).toBe(base);
  });
});
