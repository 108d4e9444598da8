// Built-in reward functions for `llmrl train` (and the demo), plus loading a user's reward from a
// module (`./rewards.mjs#accuracy`). Each returns a NamedReward for the trainers' rewardFuncs.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NamedReward, RewardFunction, RewardValue } from '../trainers/rewards.js';

/** The last number in a text (commas inside numbers ignored), or null. */
export function lastNumber(text: string): number | null {
  const m = text.replace(/(\d),(?=\d{3}\b)/g, '$1').match(/-?\d+(?:\.\d+)?/g);
  return m ? Number(m[m.length - 1]) : null;
}

/** GSM8K-style answers: '#### 42' or a plain number/string; the last number in it. */
function answerOf(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return null;
  const hash = v.split('####');
  return lastNumber(hash[hash.length - 1]);
}

/** Exact-answer match for math: 1 when the last number of the completion equals the row's `answer` (column configurable), else 0. */
export function accuracyReward(opts: { column?: string } = {}): RewardFunction {
  const column = opts.column ?? 'answer';
  return (completions, ctx) => completions.map((c, i): RewardValue => {
    const want = answerOf(ctx.rows[i]?.[column]);
    if (want === null) return null;
    const got = lastNumber(c);
    return got !== null && Math.abs(got - want) < 1e-9 ? 1 : 0;
  });
}

/** Format check: 1 when the completion matches the regex, else 0 (default: ends with a number). */
export function formatReward(opts: { pattern?: string; flags?: string } = {}): RewardFunction {
  const re = new RegExp(opts.pattern ?? '-?\\d+(?:\\.\\d+)?\\s*$', opts.flags ?? 's');
  return (completions) => completions.map((c) => (re.test(c) ? 1 : 0));
}

/** Length: −|chars − target| / target (0 at the target length; default target 100 characters). */
export function lengthReward(opts: { target?: number } = {}): RewardFunction {
  const target = opts.target ?? 100;
  if (!(target > 0)) throw new Error(`rewards: length 'target' must be a positive number, got ${JSON.stringify(opts.target)}`);
  return (completions) => completions.map((c) => -Math.abs(c.length - target) / target);
}

export const BUILTIN_REWARDS: Record<string, (opts: Record<string, unknown>) => RewardFunction> = {
  accuracy: (o) => accuracyReward(o as { column?: string }),
  format: (o) => formatReward(o as { pattern?: string; flags?: string }),
  length: (o) => lengthReward(o as { target?: number }),
};

/** A `rewards` entry of a run config: a built-in name, `./module.mjs#export`, or { use, weight, name, ...options }. */
export type RewardSpec = string | ({ use: string; weight?: number; name?: string } & Record<string, unknown>);

/** Resolves reward specs (module paths relative to `baseDir`). */
export async function resolveRewards(specs: RewardSpec[], baseDir: string): Promise<NamedReward[]> {
  if (!Array.isArray(specs)) throw new Error(`rewards: expected a list (e.g. ["accuracy", "./rewards.mjs#myReward"]), got ${JSON.stringify(specs)}`);
  const out: NamedReward[] = [];
  for (const [i, spec] of specs.entries()) {
    const s = typeof spec === 'string' ? { use: spec } : spec;
    if (!s || typeof s.use !== 'string') throw new Error(`rewards[${i}]: expected a name or { "use": name, ... }, got ${JSON.stringify(spec)}`);
    const { use, weight, name, ...options } = s;
    let fn: RewardFunction;
    let defName: string;
    if (use in BUILTIN_REWARDS) {
      fn = BUILTIN_REWARDS[use](options);
      defName = use;
    } else if (use.includes('#') || /\.[cm]?[jt]s$/.test(use)) {
      const [file, exp = 'default'] = use.split('#');
      const abs = path.resolve(baseDir, file);
      let mod: Record<string, unknown>;
      try {
        mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
      } catch (e) {
        throw new Error(`rewards[${i}]: cannot import ${abs}: ${(e as Error).message}`, { cause: e });
      }
      const f = mod[exp];
      if (typeof f !== 'function') {
        const fns = Object.keys(mod).filter((k) => typeof mod[k] === 'function');
        throw new Error(`rewards[${i}]: ${abs} has no function export '${exp}'; its function exports: ${fns.join(', ') || '(none)'}`);
      }
      fn = f as RewardFunction;
      defName = exp === 'default' ? path.basename(file).replace(/\.[^.]+$/, '') : exp;
    } else {
      throw new Error(`rewards[${i}]: unknown reward '${use}'. Built-in rewards: ${Object.keys(BUILTIN_REWARDS).join(', ')}; or a module export like "./rewards.mjs#myReward"`);
    }
    out.push({ name: name ?? defName, fn, weight: weight ?? 1 });
  }
  return out;
}
