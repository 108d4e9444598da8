// `llmrl train <algo> --config run.json [--set key=value …] [--resume] [--json]`: builds the model,
// tokenizer, dataset and rewards a run config names, runs the trainer with per-step progress (a bar on a
// terminal, log lines otherwise, JSON lines with --json; progress.ts), stops
// cleanly on Ctrl-C (checkpoint, resumable with --resume), and ends with a summary table, metrics.jsonl
// (written by the trainer) and a self-contained report.html next to the checkpoints.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadDataset, type Dataset, type Row } from '../data/index.js';
import { createCausalLM, createRewardModel, loadCausalLM, loadRewardModel, type CausalLM, type RewardModel } from '../models/index.js';
import { createCharTokenizer, loadTokenizer, type Tokenizer } from '../tokenizer/index.js';
import {
  ConfigError, describeSchema, DPO_SCHEMA, DPOTrainer, GRPO_SCHEMA, GRPOTrainer, GSPO_DEFAULTS, GSPOTrainer, PPO_SCHEMA, PPOTrainer,
  readMetrics, resolveConfig, REWARD_SCHEMA, RewardTrainer, SFT_SCHEMA, SFTTrainer, type Metrics, type Schema, type TrainerBase, type CommonConfig,
} from '../trainers/index.js';
import { textTable } from './format.js';
import { createProgress, isInteractive, LINE_KEYS, noteAboveProgress } from './progress.js';
import { reportHtml, writeFileAtomic, type MetricRow } from './report.js';
import { resolveRewards, type RewardSpec } from './rewards.js';

export const ALGORITHMS = ['sft', 'reward', 'ppo', 'dpo', 'grpo', 'gspo'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

const SCHEMAS: Record<Algorithm, { name: string; schema: Schema<unknown>; defaults?: Record<string, unknown> }> = {
  sft: { name: 'SFTConfig', schema: SFT_SCHEMA as Schema<unknown> },
  reward: { name: 'RewardConfig', schema: REWARD_SCHEMA as Schema<unknown> },
  ppo: { name: 'PPOConfig', schema: PPO_SCHEMA as Schema<unknown> },
  dpo: { name: 'DPOConfig', schema: DPO_SCHEMA as Schema<unknown> },
  grpo: { name: 'GRPOConfig', schema: GRPO_SCHEMA as Schema<unknown> },
  gspo: { name: 'GSPOConfig', schema: GRPO_SCHEMA as Schema<unknown>, defaults: GSPO_DEFAULTS as Record<string, unknown> },
};

/** Sections a run config may have. */
export const RUN_SECTIONS = ['model', 'tokenizer', 'dataset', 'rewards', 'rewardModel', 'trainer'] as const;

type ModelSpec = string | { path: string } | { create: Record<string, unknown>; seed?: number };
type TokenizerSpec = string | { path: string } | { char: string };
export interface RunConfig {
  model: ModelSpec;
  tokenizer?: TokenizerSpec;
  dataset: string | { path: string; split?: string } | Row[];
  rewards?: RewardSpec[];
  rewardModel?: ModelSpec;
  trainer?: Record<string, unknown>;
}

export interface TrainOptions {
  config: string;
  set?: string[];
  resume?: boolean;
  json?: boolean;
  /** false (--no-progress): plain step lines even on a terminal. The bar is drawn only when stdout is a
   * TTY, CI is unset and no `log` is given. */
  progress?: boolean;
  /** Stops the run after the current step (the CLI wires Ctrl-C to it). */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface TrainSummary {
  algorithm: Algorithm;
  outputDir: string | null;
  steps: number;
  stoppedEarly: boolean;
  checkpoint: string | null;
  report: string | null;
  metrics: Metrics[];
  seconds: number;
}

/** Parses a `--set` value: JSON when it parses (numbers, booleans, null, arrays, objects), else the string. */
export function parseSetValue(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** Applies `a.b.c=value` overrides to a config object (in place). */
export function applySets(cfg: Record<string, unknown>, sets: string[]): void {
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set ${s}: expected key=value, e.g. --set trainer.learningRate=1e-5`);
    const keys = s.slice(0, eq).split('.');
    if (!(RUN_SECTIONS as readonly string[]).includes(keys[0])) {
      throw new ConfigError(`--set ${s}: unknown section '${keys[0]}'. Valid sections: ${RUN_SECTIONS.join(', ')}`);
    }
    let o = cfg;
    for (const k of keys.slice(0, -1)) {
      if (typeof o[k] !== 'object' || o[k] === null || Array.isArray(o[k])) o[k] = {};
      o = o[k] as Record<string, unknown>;
    }
    o[keys[keys.length - 1]] = parseSetValue(s.slice(eq + 1));
  }
}

/** Reads a run config (JSON, or YAML for .yaml/.yml files) and validates its sections. */
export async function readRunConfig(file: string, sets: string[] = []): Promise<RunConfig> {
  if (!fs.existsSync(file)) throw new Error(`--config ${file}: file not found`);
  const text = fs.readFileSync(file, 'utf8');
  let cfg: unknown;
  if (/\.ya?ml$/i.test(file)) {
    try {
      cfg = parseYaml(text);
    } catch (e) {
      throw new Error(`--config ${file}: invalid YAML: ${(e as Error).message}`);
    }
  } else {
    try {
      cfg = JSON.parse(text);
    } catch (e) {
      throw new Error(`--config ${file}: invalid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new ConfigError(`--config ${file}: expected an object with sections ${RUN_SECTIONS.join(', ')}`);
  const c = cfg as Record<string, unknown>;
  applySets(c, sets);
  for (const k of Object.keys(c)) {
    if (!(RUN_SECTIONS as readonly string[]).includes(k)) throw new ConfigError(`${file}: unknown section '${k}'. Valid sections: ${RUN_SECTIONS.join(', ')}`);
  }
  if (c.model === undefined) throw new ConfigError(`${file}: missing section 'model' (a Hugging Face folder, or { "create": { ...config.json } })`);
  if (c.dataset === undefined) throw new ConfigError(`${file}: missing section 'dataset' (a JSONL path)`);
  return c as unknown as RunConfig;
}

/** Resolves and validates the trainer section with the trainer's own schema (unknown keys → the valid list). */
export function resolveTrainerConfig(algo: Algorithm, trainer: Record<string, unknown> = {}): Record<string, unknown> {
  const s = SCHEMAS[algo];
  return resolveConfig(s.name, s.schema, { ...(s.defaults ?? {}), ...trainer }) as Record<string, unknown>;
}

/** The documented options of an algorithm's trainer section. */
export function describeTrainer(algo: Algorithm): string {
  return describeSchema(SCHEMAS[algo].schema);
}

function loadTok(spec: TokenizerSpec | undefined, modelSpec: ModelSpec, base: string): Tokenizer {
  if (spec === undefined) {
    const dir = typeof modelSpec === 'string' ? modelSpec : 'path' in modelSpec ? modelSpec.path : null;
    if (!dir) throw new ConfigError(`section 'tokenizer' is required with model.create: a folder, or { "char": "alphabet" }`);
    return loadTokenizer(path.resolve(base, dir));
  }
  if (typeof spec === 'string') return loadTokenizer(path.resolve(base, spec));
  if ('char' in spec && typeof spec.char === 'string') return createCharTokenizer(spec.char);
  if ('path' in spec && typeof spec.path === 'string') return loadTokenizer(path.resolve(base, spec.path));
  throw new ConfigError(`section 'tokenizer': expected a folder path, { "path": folder } or { "char": "alphabet" }, got ${JSON.stringify(spec)}`);
}

function withTokenizerIds(cfg: Record<string, unknown>, tok: Tokenizer): Record<string, unknown> {
  const out = { ...cfg };
  out.vocab_size ??= tok.vocabSize;
  out.pad_token_id ??= tok.padTokenId;
  out.eos_token_id ??= tok.eosTokenId;
  out.bos_token_id ??= tok.bosTokenId;
  return out;
}

function buildModel(section: string, spec: ModelSpec, tok: Tokenizer, base: string, kind: 'causal' | 'reward'): CausalLM | RewardModel {
  if (typeof spec === 'object' && spec !== null && 'create' in spec) {
    const cfg = withTokenizerIds(spec.create, tok);
    return kind === 'causal' ? createCausalLM(cfg, { seed: spec.seed ?? 0 }) : createRewardModel(cfg, { seed: spec.seed ?? 0 });
  }
  const dir = typeof spec === 'string' ? spec : spec && typeof spec === 'object' && 'path' in spec ? spec.path : null;
  if (typeof dir !== 'string') throw new ConfigError(`section '${section}': expected a Hugging Face folder path or { "create": { ...config.json } }, got ${JSON.stringify(spec)}`);
  const abs = path.resolve(base, dir);
  return kind === 'causal' ? loadCausalLM(abs) : loadRewardModel(abs, { initScoreHead: true });
}

async function buildDataset(spec: RunConfig['dataset'], base: string): Promise<Dataset | Row[]> {
  if (Array.isArray(spec)) return spec;
  if (typeof spec === 'string') return loadDataset(path.resolve(base, spec));
  if (spec && typeof spec === 'object' && typeof spec.path === 'string') return loadDataset(path.resolve(base, spec.path), { split: spec.split });
  throw new ConfigError(`section 'dataset': expected a JSONL path, { "path": ..., "split": ... } or a list of rows, got ${JSON.stringify(spec)}`);
}

function summaryRows(rows: MetricRow[]): (string | number)[][] {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => k !== 'step' && (LINE_KEYS.includes(k) || k.startsWith('reward/') || k === 'kl/mean' || k === 'gradNorm'));
  return keys.sort().map((k) => {
    const v = rows.map((r) => r[k]).filter((x) => Number.isFinite(x));
    return [k, v[0] ?? NaN, v[v.length - 1] ?? NaN, v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN];
  });
}

/** Runs `llmrl train <algo>`; resolves with the run's summary (throws on a bad config). */
export async function runTrain(algo: string, opts: TrainOptions): Promise<TrainSummary> {
  const log = opts.log ?? ((s: string) => console.log(s));
  if (!(ALGORITHMS as readonly string[]).includes(algo)) throw new ConfigError(`train: unknown algorithm '${algo}'. Valid: ${ALGORITHMS.join(', ')}`);
  const a = algo as Algorithm;
  const cfgFile = path.resolve(opts.config);
  const base = path.dirname(cfgFile);
  const run = await readRunConfig(cfgFile, opts.set ?? []);
  const userTrainer: Record<string, unknown> = { ...(run.trainer ?? {}) };
  if (typeof userTrainer.outputDir === 'string') userTrainer.outputDir = path.resolve(userTrainer.outputDir);
  if (opts.resume) userTrainer.resumeFrom = true;
  // The CLI prints its own step lines; the trainer's console line is off unless asked for.
  if (!('loggingSteps' in userTrainer)) userTrainer.loggingSteps = 0;
  // Validate before loading anything heavy: unknown keys are rejected with the valid list.
  const resolved = resolveTrainerConfig(a, userTrainer);
  if (opts.resume && !resolved.outputDir) throw new ConfigError('--resume needs trainer.outputDir (the folder with the checkpoints)');

  const tok = loadTok(run.tokenizer, run.model, base);
  const data = await buildDataset(run.dataset, base);
  const needsRewards = a === 'grpo' || a === 'gspo';
  const rewards = run.rewards ? await resolveRewards(run.rewards, base) : [];
  if (needsRewards && rewards.length === 0) throw new ConfigError(`${a}: section 'rewards' is required (e.g. ["accuracy"]); built-in: accuracy, format, length, or "./module.mjs#export"`);
  if (a === 'ppo' && rewards.length === 0 && !run.rewardModel) throw new ConfigError(`ppo: give 'rewardModel' (a reward model folder) and/or 'rewards'`);
  const config = userTrainer;
  let trainer: TrainerBase<CommonConfig>;
  if (a === 'reward') {
    trainer = new RewardTrainer({ model: buildModel('model', run.model, tok, base, 'reward') as RewardModel, tokenizer: tok, trainDataset: data, config }) as unknown as TrainerBase<CommonConfig>;
  } else {
    const model = buildModel('model', run.model, tok, base, 'causal') as CausalLM;
    if (a === 'sft') trainer = new SFTTrainer({ model, tokenizer: tok, trainDataset: data, config }) as unknown as TrainerBase<CommonConfig>;
    else if (a === 'dpo') trainer = new DPOTrainer({ model, tokenizer: tok, trainDataset: data, config }) as unknown as TrainerBase<CommonConfig>;
    else if (a === 'ppo') {
      const rewardModel = run.rewardModel ? buildModel('rewardModel', run.rewardModel, tok, base, 'reward') as RewardModel : null;
      trainer = new PPOTrainer({ model, tokenizer: tok, trainDataset: data, rewardModel, rewardFuncs: rewards.length ? rewards : null, config }) as unknown as TrainerBase<CommonConfig>;
    } else {
      const T = a === 'gspo' ? GSPOTrainer : GRPOTrainer;
      trainer = new T({ model, tokenizer: tok, trainDataset: data, rewardFuncs: rewards, config }) as unknown as TrainerBase<CommonConfig>;
    }
  }
  const outDir = trainer.config.outputDir;
  const t0 = performance.now();
  const max = trainer.config.maxSteps;
  if (!opts.json) log(`llmrl train ${a}: ${max} steps${outDir ? `, output ${outDir}` : ''}${opts.resume ? ' (resuming from the newest checkpoint)' : ''}`);
  // A bar on a terminal (only when the lines would go to stdout anyway), plain lines otherwise, or JSON lines.
  // (Not with trainer.loggingSteps > 0: the trainer's own console lines would break into the bar's line.)
  const tty = opts.progress !== false && !opts.log && !(Number(resolved.loggingSteps) > 0) && isInteractive(process.stdout);
  const progress = createProgress({ total: max, json: opts.json, tty, log });
  trainer.on('step', ({ step, metrics }) => progress.update(step, metrics));
  let res: Awaited<ReturnType<typeof trainer.train>>;
  try {
    res = await trainer.train({ signal: opts.signal });
  } finally {
    progress.stop(); // ends the bar's line: the summary (or an error) starts on a fresh line
  }
  const seconds = (performance.now() - t0) / 1000;
  let rows: MetricRow[] = res.metrics.map((m, i) => ({ step: res.steps - res.metrics.length + i + 1, ...m }));
  let report: string | null = null;
  if (outDir) {
    const mfile = path.join(outDir, 'metrics.jsonl');
    if (fs.existsSync(mfile)) rows = readMetrics(mfile) as MetricRow[];
    const table = { header: ['metric', 'first', 'last', 'mean'], rows: summaryRows(rows) };
    report = path.join(outDir, 'report.html');
    writeFileAtomic(report, reportHtml(`llmrl train ${a}`, [{ label: a, rows }], table));
  }
  const summary: TrainSummary = { algorithm: a, outputDir: outDir, steps: res.steps, stoppedEarly: res.stoppedEarly, checkpoint: res.checkpoint, report, metrics: res.metrics, seconds };
  if (opts.json) {
    log(JSON.stringify({ done: true, algorithm: a, steps: res.steps, stoppedEarly: res.stoppedEarly, checkpoint: res.checkpoint, report, seconds }));
  } else {
    log('');
    log(textTable(['metric', 'first', 'last', 'mean'], summaryRows(rows)));
    log('');
    log(`${res.stoppedEarly ? `stopped at step ${res.steps}/${max} (resume with --resume)` : `finished ${res.steps} steps`} in ${seconds.toFixed(1)} s`);
    if (res.checkpoint) log(`checkpoint: ${res.checkpoint}`);
    if (outDir) log(`metrics:    ${path.join(outDir, 'metrics.jsonl')}`);
    if (report) log(`report:     ${report}`);
  }
  return summary;
}

/** The CLI action: wires Ctrl-C to an AbortController (a second Ctrl-C exits at once). */
export async function trainCommand(algo: string, opts: Omit<TrainOptions, 'signal' | 'log'> & { describe?: boolean }): Promise<void> {
  if (opts.describe) {
    if (!(ALGORITHMS as readonly string[]).includes(algo)) throw new ConfigError(`train: unknown algorithm '${algo}'. Valid: ${ALGORITHMS.join(', ')}`);
    console.log(describeTrainer(algo as Algorithm));
    return;
  }
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130);
    const msg = 'llmrl: stopping after the current step and writing a checkpoint (Ctrl-C again to quit now)';
    if (!noteAboveProgress(msg)) console.error(`\n${msg}`); // above the bar when one is drawn
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    await runTrain(algo, { ...opts, signal: ac.signal });
  } finally {
    process.off('SIGINT', onSigint);
  }
}
