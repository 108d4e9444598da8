// AdamW and SGD against hand-computed updates; state round trip; groups, lr access, validation.
import { describe, expect, test } from 'vitest';
import { Tensor, memory, optim, tensor, tidy } from '../../src/index.js';

const C = [0.5, 1, 2];
/** loss = Σ cᵢ·pᵢ², so the gradient is gᵢ = 2·cᵢ·pᵢ (recomputed from the current p each step). */
function backwardQuadratic(p: Tensor): void {
  tidy(() => p.square().mul(tensor(C, { dtype: 'float64' })).sum().backward());
}
const values = (t: Tensor): number[] => Array.from(t.toTypedArray() as Float64Array);
const expectClose = (a: number[], b: number[], tol = 1e-12): void => {
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(tol));
};

function adamwReference(p0: number[], steps: number, o: { lr: number; b1: number; b2: number; eps: number; wd: number; amsgrad?: boolean }): number[][] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const vmax = p.map(() => 0);
  const out: number[][] = [];
  for (let t = 1; t <= steps; t++) {
    const g = p.map((x, i) => 2 * C[i] * x);
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - o.lr * o.wd; // decoupled weight decay, before the Adam update
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      vmax[i] = Math.max(vmax[i], v[i]);
      const bc1 = 1 - o.b1 ** t;
      const bc2 = 1 - o.b2 ** t;
      const denom = Math.sqrt(o.amsgrad ? vmax[i] : v[i]) / Math.sqrt(bc2) + o.eps;
      p[i] -= (o.lr / bc1) * (m[i] / denom);
    }
    out.push([...p]);
  }
  return out;
}

function sgdReference(p0: number[], steps: number, o: { lr: number; mu: number; tau: number; wd: number; nesterov: boolean }): number[][] {
  const p = [...p0];
  let buf: number[] | null = null;
  const out: number[][] = [];
  for (let t = 0; t < steps; t++) {
    const d = p.map((x, i) => 2 * C[i] * x + o.wd * x);
    buf = buf === null ? [...d] : buf.map((b, i) => o.mu * b + (1 - o.tau) * d[i]);
    const upd = o.nesterov ? d.map((x, i) => x + o.mu * buf![i]) : buf;
    for (let i = 0; i < p.length; i++) p[i] -= o.lr * upd[i];
    out.push([...p]);
  }
  return out;
}

describe('AdamW', () => {
  test('PyTorch defaults', () => {
    const p = tensor([1, 2, 3], { dtype: 'float64', requiresGrad: true });
    const opt = new optim.AdamW([p]);
    expect(opt.options).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, amsgrad: false });
    expect(opt.lr).toBe(1e-3);
    opt.dispose();
    p.dispose();
  });

  for (const amsgrad of [false, true]) {
    test(`3 steps match the hand-computed update (bias correction, decoupled decay${amsgrad ? ', amsgrad' : ''})`, () => {
      const p0 = [1, -2, 3];
      const o = { lr: 0.1, b1: 0.8, b2: 0.95, eps: 1e-3, wd: 0.1, amsgrad };
      const p = tensor(p0, { dtype: 'float64', requiresGrad: true });
      const opt = new optim.AdamW([p], { lr: o.lr, betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd, amsgrad });
      const ref = adamwReference(p0, 3, o);
      for (let t = 0; t < 3; t++) {
        opt.zeroGrad();
        backwardQuadratic(p);
        opt.step();
        expectClose(values(p), ref[t]);
      }
      // The same 3 steps in PyTorch (torch.optim.AdamW, float64) end at these values.
      expectClose(values(p), [0.6761448236869294, -1.6448264995408621, 2.614702240607741]);
      opt.dispose();
      p.dispose();
    });
  }

  test('per-group lr and weight decay; lr getter/setter, groupLrs, baseLrs', () => {
    const a = tensor([1, -2, 3], { dtype: 'float64', requiresGrad: true });
    const b = tensor([1, -2, 3], { dtype: 'float64', requiresGrad: true });
    const opt = new optim.AdamW([{ params: [a] }, { params: [b], lr: 0.05, weightDecay: 0 }], { lr: 0.1, weightDecay: 0.1 });
    expect(opt.groupLrs).toEqual([0.1, 0.05]);
    expect(opt.baseLrs).toEqual([0.1, 0.05]);
    opt.zeroGrad();
    backwardQuadratic(a);
    backwardQuadratic(b);
    opt.step();
    const base = { b1: 0.9, b2: 0.999, eps: 1e-8 };
    expectClose(values(a), adamwReference([1, -2, 3], 1, { ...base, lr: 0.1, wd: 0.1 })[0]);
    expectClose(values(b), adamwReference([1, -2, 3], 1, { ...base, lr: 0.05, wd: 0 })[0]);
    opt.lr = 0.3;
    expect(opt.groupLrs).toEqual([0.3, 0.3]);
    opt.setGroupLrs([0.2, 0.02]);
    expect(opt.lr).toBe(0.2);
    expect(opt.groupLrs).toEqual([0.2, 0.02]);
    expect(opt.baseLrs).toEqual([0.1, 0.05]);
    expect(() => opt.setGroupLrs([0.1])).toThrow(/expected 2 learning rates \(one per group\), got 1/);
    expect(() => { opt.lr = -1; }).toThrow(/'lr' must be a finite number >= 0, got -1/);
    opt.dispose();
    expect(() => opt.step()).toThrow(/AdamW\.step: the optimizer was disposed/);
    a.dispose(); b.dispose();
  });

  test('stateDict / loadStateDict resumes identically', () => {
    const base = memory().liveTensors;
    const pa = tensor([1, -2, 3], { dtype: 'float64', requiresGrad: true });
    const a = new optim.AdamW([pa], { lr: 0.1, amsgrad: true });
    expect(a.stateDict().state).toEqual([null]); // no state before the first step
    for (let t = 0; t < 3; t++) { a.zeroGrad(); backwardQuadratic(pa); a.step(); }
    a.lr = 0.07;
    const sd = a.stateDict();
    const s0 = sd.state[0]!;
    expect(Object.keys(s0).sort()).toEqual(['expAvg', 'expAvgSq', 'maxExpAvgSq', 'step']);
    expect(s0.step).toBe(3);
    expect(sd.lrs).toEqual([0.07]);
    // A second optimizer over a copy of the parameter, restored from the state dict.
    const pb = tidy(() => pa.detach().clone().requiresGrad_());
    const b = new optim.AdamW([pb], { lr: 0.1, amsgrad: true });
    b.loadStateDict(sd);
    expect(b.lr).toBe(0.07);
    for (const v of Object.values(s0)) if (v instanceof Tensor) v.dispose(); // copies: the caller owns them
    for (let t = 0; t < 3; t++) {
      for (const [o, p] of [[a, pa], [b, pb]] as const) { o.zeroGrad(); backwardQuadratic(p); o.step(); }
      expect(values(pb)).toEqual(values(pa));
    }
    // Restoring state into a fresh optimizer differs from not restoring it (the test has teeth).
    const pc = tidy(() => pb.detach().clone().requiresGrad_());
    const c = new optim.AdamW([pc], { lr: 0.07, amsgrad: true });
    c.zeroGrad(); backwardQuadratic(pc); c.step();
    a.zeroGrad(); backwardQuadratic(pa); a.step();
    expect(values(pc)).not.toEqual(values(pa));
    for (const o of [a, b, c]) o.dispose();
    for (const p of [pa, pb, pc]) p.dispose();
    expect(memory().liveTensors).toBe(base);
  });

  test('loadStateDict rejects mismatched state with a clear error', () => {
    const p = tensor([1, 2, 3], { dtype: 'float64', requiresGrad: true });
    const opt = new optim.AdamW([p]);
    tidy(() => {
      expect(() => opt.loadStateDict({ state: [null, null], lrs: [0.1] })).toThrow(/the state has 2 entries but this optimizer has 1 parameters/);
      expect(() => opt.loadStateDict({ state: [{ momentumBuffer: tensor([0, 0, 0]) }], lrs: [0.1] })).toThrow(/state\[0\]\.expAvg must be a Tensor .*different optimizer type/);
      const z = tensor([0, 0]);
      expect(() => opt.loadStateDict({ state: [{ step: 1, expAvg: z, expAvgSq: z }], lrs: [0.1] })).toThrow(/state\[0\]\.expAvg has shape \[2\] but parameter 0 has shape \[3\]/);
    });
    opt.dispose();
    p.dispose();
  });

  test('option and parameter validation names the option, range and value', () => {
    const p = tensor([1, 2], { requiresGrad: true });
    expect(() => new optim.AdamW([p], { lr: -0.1 })).toThrow(/AdamW: 'lr' must be a finite number >= 0, got -0.1/);
    expect(() => new optim.AdamW([p], { betas: [0.9, 1] })).toThrow(/AdamW: 'betas\[1\]' must be a finite number in \[0, 1\), got 1/);
    expect(() => new optim.AdamW([p], { eps: NaN })).toThrow(/'eps' must be a finite number >= 0, got NaN/);
    expect(() => new optim.AdamW([p], { weightDecay: -1 })).toThrow(/'weightDecay' must be a finite number >= 0, got -1/);
    expect(() => new optim.AdamW([p], { weight_decay: 0.1 } as never)).toThrow(/unknown option 'weight_decay'; did you mean 'weightDecay'\?/);
    expect(() => new optim.AdamW([])).toThrow(/'params' must be a non-empty array/);
    expect(() => new optim.AdamW([p, p])).toThrow(/params\[1\] appears more than once/);
    tidy(() => {
      expect(() => new optim.AdamW([p.mul(2)])).toThrow(/params\[0\] is not a leaf tensor/);
      expect(() => new optim.AdamW([tensor([1], { dtype: 'int64' })])).toThrow(/params\[0\] has dtype int64; only floating-point/);
    });
    expect(() => new optim.AdamW([{ params: [p] }, { params: [3 as unknown as Tensor] }])).toThrow(/group 1 params\[0\] must be a Tensor, got number/);
    expect(() => new optim.AdamW([{ params: [p], lr: -1 }])).toThrow(/group 0: 'lr' must be a finite number >= 0, got -1/);
    p.dispose();
  });
});

describe('SGD', () => {
  for (const nesterov of [false, true]) {
    test(`momentum${nesterov ? ' (Nesterov)' : ''} and weight decay match the hand-computed update`, () => {
      const p0 = [1, -2, 3];
      const o = { lr: 0.05, mu: 0.9, tau: 0, wd: 0.1, nesterov };
      const p = tensor(p0, { dtype: 'float64', requiresGrad: true });
      const opt = new optim.SGD([p], { lr: o.lr, momentum: o.mu, weightDecay: o.wd, nesterov });
      const ref = sgdReference(p0, 3, o);
      for (let t = 0; t < 3; t++) {
        opt.zeroGrad();
        backwardQuadratic(p);
        opt.step();
        expectClose(values(p), ref[t]);
      }
      opt.dispose();
      p.dispose();
    });
  }

  test('dampening; plain SGD keeps no state', () => {
    const p0 = [1, -2, 3];
    const p = tensor(p0, { dtype: 'float64', requiresGrad: true });
    const opt = new optim.SGD([p], { lr: 0.05, momentum: 0.5, dampening: 0.3 });
    const ref = sgdReference(p0, 3, { lr: 0.05, mu: 0.5, tau: 0.3, wd: 0, nesterov: false });
    for (let t = 0; t < 3; t++) { opt.zeroGrad(); backwardQuadratic(p); opt.step(); expectClose(values(p), ref[t]); }
    const q = tensor(p0, { dtype: 'float64', requiresGrad: true });
    const plain = new optim.SGD([q], { lr: 0.1 });
    backwardQuadratic(q);
    plain.step();
    expectClose(values(q), p0.map((x, i) => x - 0.1 * 2 * C[i] * x));
    expect(plain.stateDict().state).toEqual([null]);
    for (const o of [opt, plain]) o.dispose();
    p.dispose(); q.dispose();
  });

  test('momentum state round trip resumes identically', () => {
    const pa = tensor([1, -2, 3], { dtype: 'float64', requiresGrad: true });
    const a = new optim.SGD([pa], { lr: 0.05, momentum: 0.9 });
    for (let t = 0; t < 2; t++) { a.zeroGrad(); backwardQuadratic(pa); a.step(); }
    const pb = tidy(() => pa.detach().clone().requiresGrad_());
    const b = new optim.SGD([pb], { lr: 0.05, momentum: 0.9 });
    tidy(() => b.loadStateDict(a.stateDict()));
    for (let t = 0; t < 3; t++) {
      for (const [o, p] of [[a, pa], [b, pb]] as const) { o.zeroGrad(); backwardQuadratic(p); o.step(); }
      expect(values(pb)).toEqual(values(pa));
    }
    a.dispose(); b.dispose(); pa.dispose(); pb.dispose();
  });

  test('lr is required; Nesterov needs momentum', () => {
    const p = tensor([1], { requiresGrad: true });
    expect(() => new optim.SGD([p], {} as never)).toThrow(/SGD: the 'lr' option is required/);
    expect(() => new optim.SGD([p], { lr: 0.1, nesterov: true })).toThrow(/Nesterov momentum needs momentum > 0 and dampening 0/);
    expect(() => new optim.SGD([p], { lr: 0.1, momentum: -0.5 })).toThrow(/SGD: 'momentum' must be a finite number >= 0, got -0.5/);
    p.dispose();
  });
});
