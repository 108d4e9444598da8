// Module mechanics: dotted names, state dicts (round trip, strict errors), to(), modes, dispose.
import { describe, expect, test } from 'vitest';
import { Tensor, manualSeed, memory, nn, noGrad, ones, randn, tensor, tidy, zeros } from '../../src/index.js';

class Net extends nn.Module {
  readonly emb = this.registerModule('emb', new nn.Embedding(5, 3));
  readonly layers = this.registerModule('layers', new nn.ModuleList([new nn.Linear(3, 3), new nn.Linear(3, 3)]));
  readonly norm = this.registerModule('norm', new nn.RMSNorm(3));
  readonly drop = this.registerModule('drop', new nn.Dropout(0.5));
  constructor() {
    super();
    this.registerBuffer('positions', tensor([0, 1, 2], { dtype: 'int64' }));
    this.registerBuffer('cache', zeros([3]), { persistent: false });
  }
  forward(ids: Tensor): Tensor {
    return tidy(() => {
      let h = this.emb.forward(ids);
      for (const l of this.layers) h = (l as nn.Linear).forward(h).tanh();
      return this.drop.forward(this.norm.forward(h));
    });
  }
}

const maxDiff = (a: Tensor, b: Tensor): number => tidy(() => a.to('float64').sub(b.to('float64')).abs().max().item());

describe('Module', () => {
  test('dotted parameter names, buffers and children like PyTorch', () => {
    const net = new Net();
    expect(net.namedParameters().map(([n]) => n)).toEqual([
      'emb.weight', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias', 'norm.weight',
    ]);
    expect(net.parameters().every((p) => p.requiresGrad && p.isLeaf)).toBe(true);
    expect(net.namedBuffers().map(([n]) => n)).toEqual(['positions', 'cache']);
    expect(net.children().length).toBe(4);
    expect(net.namedModules().map(([n]) => n)).toEqual(['', 'emb', 'layers', 'layers.0', 'layers.1', 'norm', 'drop']);
    // stateDict: params + persistent buffers, the module's own tensors (references).
    const sd = net.stateDict();
    expect(Object.keys(sd)).toEqual([...net.namedParameters().map(([n]) => n), 'positions']);
    expect(sd['layers.0.weight']).toBe((net.layers.at(0) as nn.Linear).weight);
    expect(net.numParameters()).toBe(5 * 3 + 2 * (9 + 3) + 3);
    net.dispose();
  });

  test('registration errors name the problem', () => {
    class Bad extends nn.Module { forward(): void {} }
    const m = new Bad();
    expect(() => m.registerParameter('a.b', zeros([1]))).toThrow(/without dots/);
    m.registerBuffer('x', zeros([1]));
    expect(() => m.registerParameter('x', zeros([1]))).toThrow(/'x' is already a buffer/);
    expect(() => m.registerModule('y', {} as nn.Module)).toThrow(/expected a Module/);
    tidy(() => expect(() => m.registerParameter('z', ones([1], { requiresGrad: true }).mul(2))).toThrow(/registerParameter\('z'\): the tensor is not a leaf/));
    m.dispose();
  });

  test('stateDict → loadStateDict round trip copies values in place', () => {
    manualSeed(1);
    const a = new Net();
    manualSeed(2);
    const b = new Net();
    const bWeight = b.emb.weight;
    expect(maxDiff(a.emb.weight, b.emb.weight)).toBeGreaterThan(0.01);
    const res = b.loadStateDict(a.stateDict());
    expect(res).toEqual({ missingKeys: [], unexpectedKeys: [] });
    for (const [k, t] of Object.entries(a.stateDict())) expect(maxDiff(t, b.stateDict()[k])).toBe(0);
    expect(b.emb.weight).toBe(bWeight); // same Tensor object: references and optimizers stay valid
    expect(b.parameters().every((p) => p.requiresGrad && p.isLeaf)).toBe(true);
    a.eval(); b.eval();
    tidy(() => {
      const ids = tensor([[0, 4, 2]], { dtype: 'int64' });
      expect(maxDiff(a.forward(ids), b.forward(ids))).toBe(0);
    });
    a.dispose(); b.dispose();
  });

  test('loadStateDict converts dtype and names missing, unexpected and mis-shaped keys', () => {
    const net = new Net();
    const before = tidy(() => net.emb.weight.clone());
    const sd64 = tidy(() => Object.fromEntries(Object.entries(net.stateDict()).map(([k, t]) => [k, t.isFloatingPoint ? t.to('float64').add(1) : t.clone()])));
    net.loadStateDict(sd64);
    expect(net.emb.weight.dtype).toBe('float32');
    expect(maxDiff(net.emb.weight, before.add(1))).toBeLessThan(1e-6);

    const missing = { ...sd64 };
    delete missing['layers.1.bias'];
    expect(() => net.loadStateDict(missing)).toThrow(/missing keys: 'layers\.1\.bias'/);
    const extra = { ...sd64, 'head.weight': sd64['norm.weight'] };
    expect(() => net.loadStateDict(extra)).toThrow(/unexpected keys: 'head\.weight'.*strict: false/);
    expect(net.loadStateDict(extra, { strict: false }).unexpectedKeys).toEqual(['head.weight']);
    expect(net.loadStateDict(missing, { strict: false }).missingKeys).toEqual(['layers.1.bias']);

    const wrong = tidy(() => ({ ...sd64, 'emb.weight': zeros([4, 3]), 'norm.weight': zeros([3]) }));
    const snapshot = tidy(() => net.norm.weight!.clone());
    expect(() => net.loadStateDict(wrong)).toThrow(/size mismatch for 'emb\.weight': expected shape \[5, 3\].*got \[4, 3\]/);
    expect(maxDiff(net.norm.weight!, snapshot)).toBe(0); // nothing written when a check fails
    expect(() => net.loadStateDict({ ...sd64, 'norm.weight': 3 as unknown as Tensor })).toThrow(/'norm\.weight' must be a Tensor/);

    for (const t of [before, snapshot, wrong['emb.weight'], wrong['norm.weight'], ...Object.values(sd64)]) t.dispose();
    net.dispose();
  });

  test("to('float64') converts parameters in place, keeps requiresGrad, leaves integer buffers", () => {
    const net = new Net();
    const w = net.emb.weight;
    tidy(() => net.forward(tensor([[1, 2]], { dtype: 'int64' })).sum().backward());
    net.to('float64');
    expect(net.emb.weight).toBe(w);
    expect(w.dtype).toBe('float64');
    expect(net.parameters().every((p) => p.dtype === 'float64' && p.requiresGrad && p.isLeaf)).toBe(true);
    expect(net.stateDict().positions.dtype).toBe('int64');
    expect(net.namedBuffers()[1][1].dtype).toBe('float64');
    tidy(() => expect(w.grad!.dtype).toBe('float64')); // existing gradients follow
    net.zeroGrad();
    expect(net.parameters().every((p) => p.grad === null)).toBe(true);
    tidy(() => {
      net.forward(tensor([[1, 2]], { dtype: 'int64' })).sum().backward();
      expect(w.grad!.dtype).toBe('float64');
    });
    net.to({ dtype: 'float32', device: 'cpu' });
    expect(w.dtype).toBe('float32');
    expect(() => net.to(42 as unknown as 'cpu')).toThrow(/expected a dtype/);
    net.dispose();
  });

  test('train/eval propagate to children; requiresGrad_ freezes', () => {
    const net = new Net();
    expect(net.drop.training).toBe(true);
    net.eval();
    expect(net.modules().every((m) => !m.training)).toBe(true);
    tidy(() => {
      const ids = tensor([[0, 1, 2, 3]], { dtype: 'int64' });
      expect(maxDiff(net.forward(ids), net.forward(ids))).toBe(0); // dropout off
    });
    net.train();
    expect(net.drop.training).toBe(true);
    net.requiresGrad_(false);
    expect(net.parameters().some((p) => p.requiresGrad)).toBe(false);
    expect(net.numParameters({ trainableOnly: true })).toBe(0);
    net.dispose();
  });

  test('tied weights are listed once by parameters() and under both names by stateDict()', () => {
    class Tied extends nn.Module {
      readonly emb = this.registerModule('emb', new nn.Embedding(4, 2));
      readonly head = this.registerModule('head', new nn.Linear(2, 4, { bias: false }));
      constructor() {
        super();
        const untied = this.head.weight;
        this.head.registerParameter('weight', this.emb.weight);
        untied.dispose(); // replacing does not dispose the old tensor (it may be shared)
      }
      forward(ids: Tensor): Tensor { return this.head.forward(this.emb.forward(ids)); }
    }
    const base = memory().liveTensors;
    const m = new Tied();
    expect(m.head.weight).toBe(m.emb.weight);
    expect(m.parameters().length).toBe(1);
    expect(Object.keys(m.stateDict())).toEqual(['emb.weight', 'head.weight']);
    m.dispose();
    expect(memory().liveTensors).toBe(base);
  });

  test('dispose frees every parameter and buffer (memory returns to baseline)', () => {
    const base = memory();
    const net = new Net();
    const bigger = new nn.Sequential(new nn.Linear(64, 128), new nn.SiLU(), new nn.LayerNorm(128), new nn.Linear(128, 8));
    expect(memory().liveTensors).toBeGreaterThan(base.liveTensors);
    tidy(() => {
      bigger.forward(randn([4, 64])).sum().backward();
      net.forward(tensor([[1]], { dtype: 'int64' })).sum().backward();
    });
    net.dispose();
    bigger.dispose();
    expect(memory().liveTensors).toBe(base.liveTensors);
    expect(memory().bytes.cpu).toBe(base.bytes.cpu);
    expect(bigger.parameters().every((p) => p.isDisposed)).toBe(true);
    expect(() => bigger.forward(ones([1, 64]))).toThrow(/disposed/);
  });

  test('loading under noGrad inside tidy keeps parameters alive', () => {
    const lin = new nn.Linear(2, 2);
    tidy(() => noGrad(() => lin.loadStateDict({ weight: ones([2, 2]), bias: zeros([2]) })));
    expect(lin.weight.isDisposed).toBe(false);
    expect(lin.weight.toArray()).toEqual([[1, 1], [1, 1]]);
    lin.dispose();
  });
});
