// Unfused oracles for ops.groupAdvantages (ALGORITHMS.md §3d). Test-only: never imported by src/.
// - groupAdvantagesRef: plain JS loops in float64 over one array, NaN rewards left out of μ/σ (A = 0).
// - trlGroupAdvantages: TRL GRPOTrainer's tensor composition (view(-1, G).mean/std, + 1e-4 on σ), no NaN.
import type { Tensor } from '../../src/index.js';

const isValid = (x: number) => !Number.isNaN(x);

function meanStd(xs: number[]): { mean: number; std: number; n: number } {
  const v = xs.filter(isValid);
  const mean = v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0;
  const std = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
  return { mean, std, n: v.length };
}

export function groupAdvantagesRef(rewards: number[], G: number, scale: 'group' | 'batch' | 'none' | 'rloo'): { advantages: number[]; groupStd: number[] } {
  const batchStd = meanStd(rewards).std;
  const advantages: number[] = [];
  const groupStd: number[] = [];
  for (let k = 0; k < rewards.length; k += G) {
    const g = rewards.slice(k, k + G);
    const { mean, std, n } = meanStd(g);
    groupStd.push(std);
    const sum = g.filter(isValid).reduce((a, b) => a + b, 0);
    for (const x of g) {
      if (!isValid(x)) advantages.push(0);
      else if (scale === 'group') advantages.push((x - mean) / (std + 1e-4));
      else if (scale === 'batch') advantages.push((x - mean) / (batchStd + 1e-4));
      else if (scale === 'none') advantages.push(x - mean);
      else advantages.push(n > 1 ? x - (sum - x) / (n - 1) : 0);
    }
  }
  return { advantages, groupStd };
}

/** TRL's composition: mean_grouped = view(-1, G).mean(1); std = view(-1, G).std(1) (or rewards.std() for 'batch'). */
export function trlGroupAdvantages(rewards: Tensor, G: number, scale: 'group' | 'batch' | 'none'): Tensor {
  const grouped = rewards.view(-1, G);
  const mean = grouped.mean(1, { keepdim: true });
  const adv = grouped.sub(mean);
  if (scale === 'none') return adv.reshape(-1);
  const std = scale === 'group' ? grouped.std(1, { keepdim: true }) : rewards.std();
  return adv.div(std.add(1e-4)).reshape(-1);
}
