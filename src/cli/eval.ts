// `llmrl eval --model DIR --dataset FILE --reward SPEC [--reward …] [--reward-model DIR] …`: generates
// K completions (--num-samples, greedy by default) for every prompt of a dataset (prompt-only,
// prompt+answer or conversational rows, rendered as the GRPO trainer renders them), scores each with
// the reward functions (built-in accuracy/format/length or `./rewards.mjs#export`, called as the
// trainers call them) and optionally a reward model, and prints per reward mean/std/min/max, the
// fraction correct and pass@K for 0/1 rewards, completion length and throughput. `--out` writes one
// JSON line per (prompt, sample), atomically. `runEval(opts)` is the in-process entry (tests).
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset, type Row, type TextOrMessages } from '../data/index.js';
import { loadRewardModel, type RewardModel } from '../models/index.js';
import { cat } from '../tensor/index.js';
import { ConfigError } from '../trainers/index.js';
import { computeRewards, finiteStats, normalizeRewards, type NamedReward } from '../trainers/rewards.js';
import { writeFileAtomic } from './report.js';
import { BUILTIN_REWARDS, resolveRewards, type RewardSpec } from './rewards.js';
import { applyThreads, checkIntFlag, generateAll, loadPolicy, requireChatTemplate, resolveSampling, type BatchTensors, type SamplingOptions } from './generate.js';
import { textTable } from './format.js';

export interface EvalOptions extends SamplingOptions {
  /** Causal LM folder. */
  model: string;
  /** Dataset: a .jsonl / .json file or a folder of split files, with prompt rows (extra columns such as `answer` go to the rewards). */
  dataset: string;
  /** Reward specs: a built-in name (accuracy, format, length), `./module.mjs#export`, or a JSON object { "use": …, options }. */
  reward?: string[];
  /** Reward model folder (a *ForSequenceClassification model sharing the policy's tokenizer): its score is reported as `rewardModel`. */
  rewardModel?: string;
  /** Tokenizer folder (default: the model folder). */
  tokenizer?: string;
  /** Dataset split (folders / JSON objects of splits; default 'train'). */
  split?: string;
  /** Evaluate the first N prompts only. */
  limit?: number;
  /** Completions per prompt, K (default 1); pass@K is reported for 0/1 rewards when K > 1. */
  numSamples?: number;
  /** Write one JSON line per (prompt, sample) here (atomically). */
  out?: string;
  /** Print the summary as one JSON object instead of a table. */
  json?: boolean;
  threads?: number;
  log?: (line: string) => void;
  /** Notes and warnings (default console.error). */
  info?: (line: string) => void;
}

export interface RewardStats {
  mean: number;
  std: number;
  min: number;
  max: number;
  /** Completions the reward gave a value (not null/NaN). */
  scored: number;
  /** Every value is 0 or 1 (accuracy-like). */
  binary: boolean;
  /** Fraction of scored completions with value 1 (binary rewards; else null). */
  correct: number | null;
  /** Fraction of prompts with at least one of their K samples at 1 (binary rewards, K > 1; else null). */
  passAtK: number | null;
}

export interface EvalSummary {
  prompts: number;
  numSamples: number;
  completions: number;
  rewards: Record<string, RewardStats>;
  completionLength: { mean: number; min: number; max: number };
  /** Fraction of completions that ended with EOS (the rest hit --max-new-tokens). */
  eosFrac: number;
  tokens: number;
  /** Generation time. */
  seconds: number;
  tokensPerSec: number;
  out: string | null;
}

/** One line of --out. */
export interface EvalRecord {
  index: number;
  sample: number;
  prompt: TextOrMessages;
  answer?: unknown;
  completion: string;
  tokens: number;
  finishReason: 'eos' | 'length';
  rewards: Record<string, number | null>;
}

const REWARD_HELP = `built-in: ${Object.keys(BUILTIN_REWARDS).join(', ')}; or a module export like ./rewards.mjs#myReward`;

/** Resolves --reward specs one by one so an error names the spec that failed. */
export async function resolveRewardArgs(specs: string[], baseDir = process.cwd()): Promise<NamedReward[]> {
  const out: NamedReward[] = [];
  for (const raw of specs) {
    if (typeof raw !== 'string' || raw.trim() === '') throw new ConfigError(`--reward: expected a reward name (${REWARD_HELP}), got ${JSON.stringify(raw)}`);
    let spec: RewardSpec = raw.trim();
    if (spec.startsWith('{')) {
      try {
        spec = JSON.parse(spec) as RewardSpec;
      } catch (e) {
        throw new ConfigError(`--reward ${raw}: invalid JSON (${(e as Error).message}); expected e.g. '{"use":"format","pattern":"^\\\\d+$"}'`);
      }
    }
    try {
      out.push(...(await resolveRewards([spec], baseDir)));
    } catch (e) {
      throw new ConfigError(`--reward ${raw}: ${(e as Error).message.replace(/^rewards\[0\]: /, '')}`, { cause: e });
    }
  }
  return out;
}

function rewardStats(values: number[], K: number): RewardStats {
  const finite = values.filter((v) => Number.isFinite(v));
  const { mean, std } = finiteStats(values);
  const binary = finite.length > 0 && finite.every((v) => v === 0 || v === 1);
  let passAtK: number | null = null;
  if (binary && K > 1) {
    let scoredPrompts = 0;
    let passed = 0;
    for (let i = 0; i < values.length; i += K) {
      const group = values.slice(i, i + K).filter((v) => Number.isFinite(v));
      if (group.length === 0) continue;
      scoredPrompts++;
      if (group.includes(1)) passed++;
    }
    passAtK = scoredPrompts ? passed / scoredPrompts : NaN;
  }
  return {
    mean, std,
    min: finite.length ? Math.min(...finite) : NaN,
    max: finite.length ? Math.max(...finite) : NaN,
    scored: finite.length,
    binary,
    correct: binary ? finite.filter((v) => v === 1).length / finite.length : null,
    passAtK,
  };
}

/** Runs `llmrl eval`; resolves with the summary numbers. */
export async function runEval(opts: EvalOptions): Promise<EvalSummary> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const info = opts.info ?? ((s: string) => console.error(s));
  // ---- validate everything cheap before loading models ----
  const s = resolveSampling(opts, { batchSize: 8 });
  applyThreads(opts.threads);
  const K = opts.numSamples ?? 1;
  checkIntFlag('--num-samples', K, 1);
  if (opts.limit !== undefined) checkIntFlag('--limit', opts.limit, 1);
  const specs = opts.reward ?? [];
  if (specs.length === 0 && !opts.rewardModel) {
    throw new ConfigError(`eval: nothing to score with; give at least one --reward (${REWARD_HELP}) and/or --reward-model DIR`);
  }
  const funcs = specs.length ? normalizeRewards(await resolveRewardArgs(specs)) : [];
  if (typeof opts.dataset !== 'string' || opts.dataset === '') throw new ConfigError('--dataset: required; give a .jsonl file of {"prompt": …, "answer": …} rows');
  const dsPath = path.resolve(opts.dataset);
  if (!fs.existsSync(dsPath)) {
    throw new ConfigError(`--dataset ${opts.dataset}: file not found (${dsPath}); expected a .jsonl / .json file (or a folder of split files) of prompt rows, e.g. {"prompt": "2+3=", "answer": "5"}`);
  }
  let rows: Row[];
  let conversational: boolean;
  try {
    let ds = await loadDataset(dsPath, { split: opts.split });
    if (opts.limit !== undefined) ds = ds.take(opts.limit);
    conversational = ds.conversational;
    rows = await ds.toArray();
  } catch (e) {
    throw new ConfigError(`--dataset ${opts.dataset}: ${(e as Error).message}`, { cause: e });
  }
  if (rows.length === 0) throw new ConfigError(`--dataset ${opts.dataset}: no rows${opts.split ? ` in split '${opts.split}'` : ''}; expected prompt rows, e.g. {"prompt": "2+3=", "answer": "5"}`);
  if (K > 1 && s.temperature === 0) info(`note: --num-samples ${K} with --temperature 0 (greedy) gives ${K} identical completions per prompt; pass --temperature > 0 (e.g. 0.7) to sample`);

  // ---- models ----
  const { model, tokenizer } = loadPolicy(opts.model, opts.tokenizer);
  let rm: RewardModel | null = null;
  try {
    if (conversational) requireChatTemplate(tokenizer, '--dataset', 'its rows are conversational (message lists, rendered with the chat template)');
    if (opts.rewardModel) {
      const rmDir = path.resolve(opts.rewardModel);
      if (!fs.existsSync(rmDir)) throw new ConfigError(`--reward-model ${opts.rewardModel}: expected a reward model folder (config.json + model.safetensors of a *ForSequenceClassification model), but ${rmDir} does not exist`);
      try {
        rm = loadRewardModel(rmDir);
      } catch (e) {
        throw new ConfigError(`--reward-model ${opts.rewardModel}: ${(e as Error).message}`, { cause: e });
      }
      if (rm.config.vocabSize < tokenizer.vocabSize) {
        throw new ConfigError(`--reward-model ${opts.rewardModel}: its vocabulary (${rm.config.vocabSize} tokens) is smaller than the tokenizer's (${tokenizer.vocabSize}); the reward model must use the policy's tokenizer`);
      }
    }

    // ---- generate (each prompt K times, in batches of --batch-size prompts) ----
    const expanded = rows.flatMap((r) => Array.from({ length: K }, () => r));
    const rmScore = rm
      ? (t: BatchTensors): number[] => rm!.score(cat([t.promptIds, t.completionIds], 1), { attentionMask: cat([t.promptMask, t.completionMask], 1) }).float().toArray() as number[]
      : undefined;
    const gen = generateAll(model, tokenizer, expanded, { ...s, batchSize: s.batchSize * K }, rmScore);
    const comps = gen.completions;

    // ---- score (the trainers' reward-function convention) ----
    const perFunction: Record<string, number[]> = funcs.length
      ? (await computeRewards(funcs, comps.map((c) => c.completion), {
        prompts: comps.map((c) => c.renderedPrompt), completionIds: comps.map((c) => c.completionIds), rows: expanded, step: 0,
      })).perFunction
      : {};
    if (gen.scores) {
      let name = 'rewardModel';
      for (let i = 1; name in perFunction; i++) name = `rewardModel_${i}`;
      perFunction[name] = gen.scores;
    }

    // ---- summary ----
    const rewards: Record<string, RewardStats> = {};
    for (const [name, values] of Object.entries(perFunction)) rewards[name] = rewardStats(values, K);
    const lengths = comps.map((c) => c.tokens);
    const tokens = lengths.reduce((a, b) => a + b, 0);
    const summary: EvalSummary = {
      prompts: rows.length,
      numSamples: K,
      completions: comps.length,
      rewards,
      completionLength: { mean: tokens / comps.length, min: Math.min(...lengths), max: Math.max(...lengths) },
      eosFrac: comps.filter((c) => c.finishReason === 'eos').length / comps.length,
      tokens,
      seconds: gen.seconds,
      tokensPerSec: gen.seconds > 0 ? tokens / gen.seconds : 0,
      out: opts.out ? path.resolve(opts.out) : null,
    };

    if (summary.out) {
      const lines = comps.map((c, i): string => {
        const row = expanded[i];
        const rec: EvalRecord = {
          index: Math.floor(i / K),
          sample: i % K,
          prompt: (row.prompt ?? row.messages) as TextOrMessages,
          ...(row.answer !== undefined ? { answer: row.answer } : {}),
          completion: c.completion,
          tokens: c.tokens,
          finishReason: c.finishReason,
          rewards: Object.fromEntries(Object.entries(perFunction).map(([k, v]) => [k, Number.isFinite(v[i]) ? v[i] : null])),
        };
        return JSON.stringify(rec);
      });
      writeFileAtomic(summary.out, lines.join('\n') + '\n');
    }

    if (opts.json) {
      log(JSON.stringify(summary));
    } else {
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      const header = ['reward', 'mean', 'std', 'min', 'max', 'correct', ...(K > 1 ? [`pass@${K}`] : []), 'scored'];
      const table = Object.entries(rewards).map(([name, r]) => [
        name, r.mean, r.std, r.min, r.max,
        r.correct !== null ? pct(r.correct) : '-',
        ...(K > 1 ? [r.passAtK !== null ? pct(r.passAtK) : '-'] : []),
        `${r.scored}/${comps.length}`,
      ]);
      log(textTable(header, table));
      log('');
      log(`${rows.length} prompt${rows.length === 1 ? '' : 's'} × ${K} sample${K === 1 ? '' : 's'} = ${comps.length} completions (${s.temperature > 0 ? `sampled at temperature ${s.temperature}` : 'greedy'})`);
      log(`completion length: mean ${summary.completionLength.mean.toFixed(1)} tokens (min ${summary.completionLength.min}, max ${summary.completionLength.max}); ended with EOS: ${pct(summary.eosFrac)}`);
      log(`generation: ${tokens} tokens in ${gen.seconds.toFixed(2)} s (${summary.tokensPerSec.toFixed(1)} tokens/s)`);
      if (summary.out) log(`wrote ${summary.out} (${comps.length} lines)`);
    }
    return summary;
  } finally {
    model.dispose();
    rm?.dispose();
  }
}
