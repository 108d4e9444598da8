// Benchmarks for the §3 advantage ops (ALGORITHMS.md): gae, maskedWhiten, groupAdvantages, each against
// the same math composed from plain llmrl tensor ops (the first variant, the baseline).
//   gae: a reverse loop over T of per-column tensor ops (what one writes without a fused scan)
//   maskedWhiten: where/sum/square composition (TRL's masked_mean/masked_var/masked_whiten), fwd and fwd+bwd
//   groupAdvantages: TRL's view(-1, G).mean/std composition
import type { BenchCase } from '../ops.js';
import * as ops from '../../ops/index.js';
import { rand, randn, stack, where, zerosLike, type Tensor } from '../../tensor/index.js';

function composedGae(r: Tensor, v: Tensor, m: Tensor, gamma: number, lambda: number): { advantages: Tensor; returns: Tensor } {
  const T = r.shape[1];
  let nextV = zerosLike(r.select(1, 0));
  let nextA = nextV;
  const cols: Tensor[] = new Array(T);
  for (let t = T - 1; t >= 0; t--) {
    const mt = m.select(1, t);
    const vt = v.select(1, t);
    const a = r.select(1, t).add(nextV.mul(gamma)).sub(vt).add(nextA.mul(gamma * lambda));
    cols[t] = where(mt, a, 0);
    nextV = where(mt, vt, nextV); // masked gaps carry the next valid value and advantage
    nextA = where(mt, a, nextA);
  }
  const advantages = stack(cols, 1);
  return { advantages, returns: where(m, advantages.add(v), 0) };
}

function composedWhiten(x: Tensor, m: Tensor): Tensor {
  const zero = zerosLike(x);
  const n = m.sum().to(x.dtype);
  const mean = where(m, x, zero).sum().div(n);
  const variance = where(m, x.sub(mean), zero).square().sum().div(n.sub(1));
  return where(m, x.sub(mean).mul(variance.add(1e-8).rsqrt()), zero);
}

function composedGroup(r: Tensor, G: number): Tensor {
  const grouped = r.view(-1, G);
  return grouped.sub(grouped.mean(1, { keepdim: true })).div(grouped.std(1, { keepdim: true }).add(1e-4)).reshape(-1);
}

export function cases(quick: boolean): BenchCase[] {
  const [B, T] = quick ? [4, 32] : [256, 2048];
  const [nG, G] = quick ? [8, 4] : [1024, 16];
  let r: Tensor, v: Tensor, m: Tensor, x: Tensor, xg: Tensor, rewards: Tensor;
  const inputs = () => {
    r = randn([B, T]);
    v = randn([B, T]);
    m = rand([B, T]).gt(0.1);
    return () => { r.dispose(); v.dispose(); m.dispose(); };
  };
  return [
    {
      name: `gae fwd [${B}, ${T}] float32`,
      setup: inputs,
      repeats: quick ? 5 : 3,
      variants: [
        { variant: 'composed (reverse loop over T)', fn: () => { composedGae(r, v, m, 1, 0.95); } },
        { variant: 'fused', fn: () => { ops.gae(r, v, m, { gamma: 1, lambda: 0.95 }); } },
      ],
    },
    {
      name: `maskedWhiten fwd [${B}, ${T}] float32`,
      setup: () => {
        const done = inputs();
        x = randn([B, T]);
        return () => { done(); x.dispose(); };
      },
      variants: [
        { variant: 'composed', fn: () => { composedWhiten(x, m); } },
        { variant: 'fused', fn: () => { ops.maskedWhiten(x, m); } },
      ],
    },
    {
      name: `maskedWhiten fwd+bwd [${B}, ${T}] float32`,
      setup: () => {
        const done = inputs();
        xg = randn([B, T]).requiresGrad_();
        return () => { done(); xg.dispose(); };
      },
      variants: [
        { variant: 'composed', fn: () => { composedWhiten(xg, m).mul(v).sum().backward(); xg.grad = null; } },
        { variant: 'fused', fn: () => { ops.maskedWhiten(xg, m).mul(v).sum().backward(); xg.grad = null; } },
      ],
    },
    {
      name: `groupAdvantages [${nG * G}] G=${G} float32`,
      setup: () => {
        rewards = randn([nG * G]);
        return () => rewards.dispose();
      },
      variants: [
        { variant: 'composed (view/mean/std)', fn: () => { composedGroup(rewards, G); } },
        { variant: 'fused', fn: () => { ops.groupAdvantages(rewards, { groupSize: G }); } },
      ],
    },
  ];
}
