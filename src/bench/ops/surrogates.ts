// Benchmarks for the §4–6 loss ops (ALGORITHMS.md): clippedSurrogate at token and sequence level and
// valueLoss, each against the same math composed from plain llmrl tensor ops (the first variant, the
// baseline — what TRL writes: ratio, two products, minimum, masked mean, plus the clip metrics), forward
// and forward+backward. The fused variants include the §4c metrics and the loss aggregation.
import type { BenchCase } from '../ops.js';
import * as ops from '../../ops/index.js';
import { rand, randn, where, type Tensor } from '../../tensor/index.js';

const EPS = 0.2;

function composedToken(lp: Tensor, old: Tensor, adv: Tensor, m: Tensor): Tensor {
  const A = adv.unsqueeze(1);
  const w = lp.sub(old).clamp(-20, 20).exp();
  const perToken = w.mul(A).minimum(w.clamp(1 - EPS, 1 + EPS).mul(A)).neg();
  const n = m.sum();
  const loss = where(m, perToken, 0).sum().div(n);
  // §4c metrics (no gradient), as a trainer logs them
  const wd = w.detach();
  wd.lt(1 - EPS).logicalAnd(A.lt(0)).logicalAnd(m).sum().div(n);
  wd.gt(1 + EPS).logicalAnd(A.gt(0)).logicalAnd(m).sum().div(n);
  where(m, lp.detach().sub(old).square(), 0).sum().mul(0.5).div(n);
  return loss;
}

function composedSequence(lp: Tensor, old: Tensor, adv: Tensor, m: Tensor, eps: number): Tensor {
  const n = m.sum(1).float();
  const s = where(m, lp.sub(old).clamp(-20, 20), 0).sum(1).div(n.clamp(1)).exp();
  const Lb = s.mul(adv).minimum(s.clamp(1 - eps, 1 + eps).mul(adv)).neg();
  const valid = n.gt(0);
  const loss = where(valid, Lb, 0).sum().div(valid.sum());
  const sd = s.detach();
  sd.lt(1 - eps).logicalAnd(adv.lt(0)).logicalAnd(valid).float().mean();
  sd.gt(1 + eps).logicalAnd(adv.gt(0)).logicalAnd(valid).float().mean();
  return loss;
}

function composedValue(v: Tensor, vOld: Tensor, R: Tensor, m: Tensor): Tensor {
  const vClip = vOld.add(v.sub(vOld).clamp(-EPS, EPS));
  const l1 = v.sub(R).square();
  const l2 = vClip.sub(R).square();
  const n = m.sum();
  l2.detach().gt(l1.detach()).logicalAnd(m).sum().div(n); // clip fraction
  return where(m, l1.maximum(l2), 0).sum().mul(0.5).div(n);
}

export function cases(quick: boolean): BenchCase[] {
  const [B, T] = quick ? [4, 32] : [64, 2048];
  let lp: Tensor, lpg: Tensor, old: Tensor, adv: Tensor, m: Tensor, v: Tensor, vg: Tensor, vOld: Tensor, R: Tensor;
  const setup = () => {
    lp = randn([B, T]).sub(2);
    lpg = lp.clone().requiresGrad_();
    old = lp.add(randn([B, T]).mul(0.3));
    adv = randn([B]);
    m = rand([B, T]).gt(0.1);
    v = randn([B, T]);
    vg = v.clone().requiresGrad_();
    vOld = v.add(randn([B, T]).mul(0.3));
    R = randn([B, T]);
    return () => { for (const t of [lp, lpg, old, adv, m, v, vg, vOld, R]) t.dispose(); };
  };
  const shape = `[${B}, ${T}] float32`;
  return [
    {
      name: `clippedSurrogate token fwd ${shape}`,
      setup,
      variants: [
        { variant: 'composed', fn: () => { composedToken(lp, old, adv, m); } },
        { variant: 'fused', fn: () => { ops.clippedSurrogate(lp, old, adv, m); } },
      ],
    },
    {
      name: `clippedSurrogate token fwd+bwd ${shape}`,
      setup,
      variants: [
        { variant: 'composed', fn: () => { composedToken(lpg, old, adv, m).backward(); lpg.grad = null; } },
        { variant: 'fused', fn: () => { ops.clippedSurrogate(lpg, old, adv, m).loss.backward(); lpg.grad = null; } },
      ],
    },
    {
      name: `clippedSurrogate sequence (GSPO) fwd+bwd ${shape}`,
      setup,
      variants: [
        { variant: 'composed', fn: () => { composedSequence(lpg, old, adv, m, 3e-4).backward(); lpg.grad = null; } },
        {
          variant: 'fused',
          fn: () => { ops.clippedSurrogate(lpg, old, adv, m, { level: 'sequence', epsLow: 3e-4 }).loss.backward(); lpg.grad = null; },
        },
      ],
    },
    {
      name: `valueLoss fwd+bwd ${shape}`,
      setup,
      variants: [
        { variant: 'composed', fn: () => { composedValue(vg, vOld, R, m).backward(); vg.grad = null; } },
        { variant: 'fused', fn: () => { ops.valueLoss(vg, vOld, R, m).loss.backward(); vg.grad = null; } },
      ],
    },
  ];
}
