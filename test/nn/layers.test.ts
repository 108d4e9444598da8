// Layers equal their formulas written with plain tensor ops; PyTorch's init ranges; input errors.
import { describe, expect, test } from 'vitest';
import { Tensor, manualSeed, memory, nn, noGrad, ones, randn, tensor, tidy } from '../../src/index.js';

const maxDiff = (a: Tensor, b: Tensor): number => tidy(() => a.to('float64').sub(b.to('float64')).abs().max().item());
/** Overwrites a parameter with random values (so formulas are tested with non-trivial γ, β). */
const randomize = (t: Tensor): void => noGrad(() => tidy(() => { t.copy_(randn(t.shape, { dtype: t.dtype })); }));

describe('Linear', () => {
  test('y = x·Wᵀ + b with weight [out, in]', () => tidy(() => {
    manualSeed(0);
    const lin = new nn.Linear(4, 3, { dtype: 'float64' });
    expect(lin.weight.shape).toEqual([3, 4]);
    expect(lin.bias!.shape).toEqual([3]);
    const x = randn([2, 5, 4], { dtype: 'float64' });
    const y = lin.forward(x);
    expect(y.shape).toEqual([2, 5, 3]);
    expect(maxDiff(y, x.matmul(lin.weight.t()).add(lin.bias!))).toBeLessThan(1e-12);
    const nb = new nn.Linear(4, 3, { bias: false, dtype: 'float64' });
    expect(nb.bias).toBe(null);
    expect(nb.namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(maxDiff(nb.forward(x), x.matmul(nb.weight.t()))).toBeLessThan(1e-12);
    lin.dispose(); nb.dispose();
  }));

  test('init: weight and bias ~ U(−1/√in, 1/√in) (kaiming_uniform a=√5)', () => tidy(() => {
    manualSeed(1);
    const lin = new nn.Linear(100, 400);
    const bound = 1 / Math.sqrt(100);
    for (const t of [lin.weight, lin.bias!]) {
      expect(t.abs().max().item()).toBeLessThanOrEqual(bound);
      expect(t.max().item()).toBeGreaterThan(0.95 * bound);
      expect(t.min().item()).toBeLessThan(-0.95 * bound);
    }
    // Moments of U(−b, b): mean 0, variance b²/3.
    expect(Math.abs(lin.weight.mean().item())).toBeLessThan(0.002);
    expect(lin.weight.var().item()).toBeCloseTo(bound * bound / 3, 4);
    lin.dispose();
  }));

  test('input errors name the layer and the fix', () => tidy(() => {
    const lin = new nn.Linear(3, 2);
    expect(() => lin.forward(tensor([[1, 2, 3]], { dtype: 'int64' }))).toThrow(/Linear\.forward: 'input' has dtype int64 but the layer's weights are float32; convert with input\.to\('float32'\)/);
    expect(() => lin.forward([1, 2, 3] as unknown as Tensor)).toThrow(/Linear\.forward: 'input' must be a Tensor, got an array/);
    expect(() => lin.forward(ones([2, 4]))).toThrow(/aten::linear: .*2x4 and 3x2/);
    expect(() => new nn.Linear(-1, 2)).toThrow(/Linear: 'inFeatures' must be a non-negative integer, got -1/);
    expect(lin.forward(ones([1, 3])).shape).toEqual([1, 2]); // still works afterwards
    lin.dispose();
  }));
});

describe('Embedding', () => {
  test('rows of the weight; init N(0, 1); padding row zero and without gradient', () => {
    manualSeed(2);
    const emb = new nn.Embedding(1000, 16, { paddingIdx: 3 });
    tidy(() => {
      const w = emb.weight;
      expect(w.shape).toEqual([1000, 16]);
      expect(w.select(0, 3).abs().sum().item()).toBe(0);
      expect(Math.abs(w.mean().item())).toBeLessThan(0.03);
      expect(w.std().item()).toBeGreaterThan(0.97);
      expect(w.std().item()).toBeLessThan(1.03);
      const ids = tensor([[3, 7], [999, 3]], { dtype: 'int64' });
      const out = emb.forward(ids);
      expect(out.shape).toEqual([2, 2, 16]);
      expect(maxDiff(out, w.indexSelect(0, ids.flatten()).reshape(2, 2, 16))).toBe(0);
      out.sum().backward();
      const g = w.grad!;
      expect(g.select(0, 3).abs().sum().item()).toBe(0); // padding_idx gets no gradient
      expect(g.select(0, 7).sum().item()).toBe(16);
      expect(emb.forward(tensor([1], { dtype: 'int32' })).shape).toEqual([1, 16]);
    });
    const neg = new nn.Embedding(5, 2, { paddingIdx: -1 });
    expect(neg.paddingIdx).toBe(4);
    tidy(() => expect(neg.weight.select(0, 4).abs().sum().item()).toBe(0));
    expect(() => new nn.Embedding(5, 2, { paddingIdx: 5 })).toThrow(/'paddingIdx' must be an integer in \[-5, 4\], got 5/);
    expect(() => tidy(() => emb.forward(tensor([1.5])))).toThrow(/Embedding\.forward: 'indices' must be an int64 or int32 tensor, got float32/);
    emb.dispose(); neg.dispose();
  });
});

describe('norms', () => {
  test('LayerNorm = (x − mean) / √(var + eps) · γ + β over the trailing dims', () => tidy(() => {
    manualSeed(3);
    const ln = new nn.LayerNorm([3, 4], { dtype: 'float64' });
    expect(ln.eps).toBe(1e-5);
    expect(ln.weight!.toArray()).toEqual([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]);
    expect(ln.bias!.abs().sum().item()).toBe(0);
    randomize(ln.weight!);
    randomize(ln.bias!);
    const x = randn([2, 3, 4], { dtype: 'float64' }).mul(3).add(1);
    const flat = x.reshape(2, 12);
    const mu = flat.mean(-1, { keepdim: true });
    const varr = flat.var(-1, { keepdim: true, correction: 0 });
    const ref = flat.sub(mu).div(varr.add(1e-5).sqrt()).reshape(2, 3, 4).mul(ln.weight!).add(ln.bias!);
    expect(maxDiff(ln.forward(x), ref)).toBeLessThan(1e-12);
    const plain = new nn.LayerNorm(4, { elementwiseAffine: false, dtype: 'float64' });
    expect(plain.parameters().length).toBe(0);
    const noBias = new nn.LayerNorm(4, { bias: false });
    expect(noBias.namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(() => ln.forward(randn([2, 4], { dtype: 'float64' }))).toThrow(/LayerNorm\.forward: 'input' of shape \[2, 4\] must end with normalizedShape \[3, 4\]/);
    for (const m of [ln, plain, noBias]) m.dispose();
  }));

  test('RMSNorm = x / √(mean(x²) + eps) · γ, eps 1e-6 by default (HF Llama)', () => tidy(() => {
    manualSeed(4);
    const rn = new nn.RMSNorm(8, { dtype: 'float64' });
    expect(rn.eps).toBe(1e-6);
    randomize(rn.weight!);
    const x = randn([3, 5, 8], { dtype: 'float64' }).mul(1e-3); // small values make eps matter
    const ref = x.div(x.square().mean(-1, { keepdim: true }).add(1e-6).sqrt()).mul(rn.weight!);
    expect(maxDiff(rn.forward(x), ref)).toBeLessThan(1e-10);
    const r5 = new nn.RMSNorm(8, { eps: 1e-5, dtype: 'float64' });
    const ref5 = x.div(x.square().mean(-1, { keepdim: true }).add(1e-5).sqrt());
    expect(maxDiff(r5.forward(x), ref5)).toBeLessThan(1e-10);
    expect(() => new nn.RMSNorm(8, { eps: -1 })).toThrow(/RMSNorm: 'eps' must be a finite number >= 0, got -1/);
    rn.dispose(); r5.dispose();
  }));
});

describe('Dropout, activations, Sequential', () => {
  test('Dropout zeroes with probability p and rescales in training; identity in eval', () => tidy(() => {
    manualSeed(5);
    const d = new nn.Dropout(0.25);
    const y = d.forward(ones([20000]));
    const zerosFrac = y.eq(0).float().mean().item();
    expect(zerosFrac).toBeGreaterThan(0.23);
    expect(zerosFrac).toBeLessThan(0.27);
    expect(y.max().item()).toBeCloseTo(1 / 0.75, 6);
    d.eval();
    expect(d.forward(ones([100])).sum().item()).toBe(100);
    expect(() => new nn.Dropout(1.5)).toThrow(/Dropout: 'p' must be in \[0, 1\], got 1.5/);
  }));

  test('activation modules', () => tidy(() => {
    const x = tensor([-2, -0.5, 0, 0.5, 2], { dtype: 'float64' });
    expect(maxDiff(new nn.ReLU().forward(x), x.clamp(0))).toBe(0);
    expect(maxDiff(new nn.Tanh().forward(x), x.tanh())).toBe(0);
    expect(maxDiff(new nn.SiLU().forward(x), x.mul(x.sigmoid()))).toBeLessThan(1e-15);
    const c = Math.sqrt(2 / Math.PI);
    const geluTanh = x.mul(0.5).mul(x.add(x.pow(3).mul(0.044715)).mul(c).tanh().add(1));
    expect(maxDiff(new nn.GELU({ approximate: 'tanh' }).forward(x), geluTanh)).toBeLessThan(1e-12);
    // Exact GELU: x·Φ(x); Φ(0.5) = 0.6914624612740131, Φ(2) = 0.9772498680518208.
    expect(maxDiff(new nn.GELU().forward(x), tensor([-2 * (1 - 0.9772498680518208), -0.5 * (1 - 0.6914624612740131), 0, 0.5 * 0.6914624612740131, 2 * 0.9772498680518208], { dtype: 'float64' }))).toBeLessThan(1e-12);
  }));

  test('Sequential chains children named "0", "1", … and frees intermediates', () => {
    manualSeed(6);
    const seq = new nn.Sequential(new nn.Linear(3, 5, { dtype: 'float64' }), new nn.ReLU(), new nn.Linear(5, 2, { dtype: 'float64' }));
    expect(seq.length).toBe(3);
    expect(Object.keys(seq.stateDict())).toEqual(['0.weight', '0.bias', '2.weight', '2.bias']);
    tidy(() => {
      const x = randn([4, 3], { dtype: 'float64' });
      const base = memory().liveTensors;
      const y = seq.forward(x);
      expect(memory().liveTensors).toBe(base + 1); // only the output survives
      const l0 = seq.at(0) as nn.Linear;
      const l2 = seq.at(-1) as nn.Linear;
      expect(maxDiff(y, l2.forward(l0.forward(x).relu()))).toBeLessThan(1e-12);
    });
    seq.dispose();
  });
});
