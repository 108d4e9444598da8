// Reward functions for GRPO/GSPO/PPO (TRL's reward_funcs): plain TS functions, sync or async, that
// score a batch of completions, combined as R = Σ_k w_k·r_k (ALGORITHMS.md §3d, sum-then-normalise).
// A function may return null/undefined/NaN for a completion it cannot score: that value is excluded
// (NaN-aware sum), and a completion no function scored gets reward NaN → advantage 0, counted in the
// `reward/nanFrac` metric. A function that throws, or returns the wrong number of values, stops the run
// with an error naming it.
import type { Row } from '../data/index.js';

export interface RewardContext {
  /** The rendered prompt of each completion (repeated G times per prompt). */
  prompts: string[];
  /** Completion token ids (without padding). */
  completionIds: number[][];
  /** The dataset row of each completion: extra columns such as `answer` live here. */
  rows: Row[];
  /** Optimisation step (0-based). */
  step: number;
}

export type RewardValue = number | null | undefined;
export type RewardFunction = (completions: string[], ctx: RewardContext) => RewardValue[] | Promise<RewardValue[]>;
export interface NamedReward {
  name: string;
  fn: RewardFunction;
  /** Weight in the sum (default 1). */
  weight?: number;
}

export function normalizeRewards(funcs: RewardFunction | NamedReward | (RewardFunction | NamedReward)[], weights?: number[] | null): NamedReward[] {
  const list = Array.isArray(funcs) ? funcs : [funcs];
  if (list.length === 0) throw new TypeError('rewardFuncs: give at least one reward function');
  if (weights && weights.length !== list.length) {
    throw new RangeError(`rewardWeights: ${weights.length} weights for ${list.length} reward functions; give one weight per function`);
  }
  const seen = new Set<string>();
  return list.map((f, i) => {
    const r: NamedReward = typeof f === 'function' ? { name: f.name || `reward${i}`, fn: f } : { ...f };
    if (typeof r.fn !== 'function') throw new TypeError(`rewardFuncs[${i}]: expected a function or { name, fn }, got ${typeof r.fn}`);
    if (seen.has(r.name)) r.name = `${r.name}_${i}`;
    seen.add(r.name);
    r.weight = weights?.[i] ?? r.weight ?? 1;
    if (!Number.isFinite(r.weight)) throw new RangeError(`rewardWeights[${i}] must be a finite number, got ${r.weight}`);
    return r;
  });
}

export interface RewardResult {
  /** Combined reward per completion (NaN where no function gave a value). */
  total: number[];
  /** Per function: its values (NaN where missing). */
  perFunction: Record<string, number[]>;
}

/** Runs every reward function (concurrently when async) and combines them. */
export async function computeRewards(funcs: NamedReward[], completions: string[], ctx: RewardContext): Promise<RewardResult> {
  const results = await Promise.all(funcs.map(async (f) => {
    let out: RewardValue[];
    try {
      out = await f.fn(completions, ctx);
    } catch (e) {
      throw new Error(`reward function '${f.name}' threw at step ${ctx.step}: ${(e as Error).message}`, { cause: e });
    }
    if (!Array.isArray(out) || out.length !== completions.length) {
      throw new Error(`reward function '${f.name}' must return an array of ${completions.length} numbers (one per completion), got ${Array.isArray(out) ? `${out.length} values` : typeof out}`);
    }
    return out.map((v, i) => {
      if (v === null || v === undefined) return NaN;
      if (typeof v !== 'number') throw new Error(`reward function '${f.name}' returned ${typeof v} for completion ${i}; return a number, or null when it cannot score`);
      if (v === Infinity || v === -Infinity) throw new Error(`reward function '${f.name}' returned ${v} for completion ${i}; rewards must be finite`);
      return v;
    });
  }));
  const perFunction: Record<string, number[]> = {};
  funcs.forEach((f, k) => { perFunction[f.name] = results[k]; });
  const total = completions.map((_, i) => {
    let sum = 0;
    let any = false;
    funcs.forEach((f, k) => {
      const v = results[k][i];
      if (!Number.isNaN(v)) { sum += f.weight! * v; any = true; }
    });
    return any ? sum : NaN;
  });
  return { total, perFunction };
}

/** Mean and (population) std over the finite values; NaN when none. */
export function finiteStats(xs: number[]): { mean: number; std: number; nanFrac: number } {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return { mean: NaN, std: NaN, nanFrac: 1 };
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const std = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
  return { mean, std, nanFrac: 1 - v.length / xs.length };
}
