// `llmrl demo`: the article's comparison made runnable. A verifiable task (2-digit addition, char
// tokenizer), a tiny Llama trained from scratch with SFT to a modest accuracy, then from that same SFT
// checkpoint and with the same budget of RL steps: the RLHF pipeline (preference collection from the
// SFT model's samples → reward model → PPO), DPO (with an NLL term on the chosen side, RPO) on the same
// self-generated pairs, GRPO and GSPO with the exact-answer reward. Prints a table (held-out accuracy
// before/after, mean sampled reward, KL to the SFT model, wall time, tokens/s) and writes report.html
// with every method's curves.
//
// SFT stops at a modest accuracy: when greedy accuracy on a dev split (held out from SFT and from the test
// prompts) reaches `sftTarget` — where that happens depends on the seed (the model learns addition
// abruptly), so a fixed step count would start some seeds near 0% and others near 100%.
// The reward model starts from a stronger backbone than the policy: the same SFT run continued until the
// dev accuracy reaches `rmBackboneTarget` (RLHF reward models are usually at least as capable as the policy).
// Measured: started from the policy's own checkpoint, this tiny RM judged held-out sums at 53–80% (true
// answer vs the SFT model's wrong sample) and PPO over-optimised it, held-out accuracy FELL (14.0% →
// 10.5%); from a 91%-accurate backbone the RM reached 80% and PPO still fell (20.5% → 18.0%); from a 97–99%
// backbone, 86–96%, and PPO lifts accuracy like the others. Reward centering (TRL's
// center_rewards_coefficient) keeps per-prompt score offsets from swamping PPO's advantages, and klCoef 0.3
// keeps the policy where the reward model is accurate (with the 80% RM: klCoef 0.1 → 18.0%, 0.3 → 24.5%).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collatePreference, collatePrompts, type Row } from '../data/index.js';
import { createCausalLM, loadCausalLM, loadRewardModel, type CausalLM } from '../models/index.js';
import { klPenalty } from '../ops/klPenalty.js';
import { noGrad, setNumThreads, tidy, type Tensor } from '../tensor/index.js';
import { createCharTokenizer, type Tokenizer } from '../tokenizer/index.js';
import { DPOTrainer, GRPOTrainer, GSPOTrainer, PPOTrainer, RewardTrainer, SFTTrainer, type Metrics } from '../trainers/index.js';
import { completionLogprobs } from '../trainers/logprobs.js';
import { createProgress, isInteractive, type StepMetrics } from './progress.js';
import { reportHtml, writeFileAtomic, type ChartSpec, type MetricRow, type Series } from './report.js';
import { accuracyReward } from './rewards.js';
import { textTable } from './format.js';

export interface RLDemoOptions {
  /** A few steps of everything (for tests): seconds, not minutes. */
  quick?: boolean;
  seed?: number;
  /** Where report.html, metrics and checkpoints go (default: a temporary folder). */
  outputDir?: string;
  /** Intra-op threads (default 1: fastest for a model this small). */
  threads?: number;
  log?: (line: string) => void;
  /** Run only these methods (names as in the table, case-insensitive prefix: 'ppo', 'dpo', 'grpo', 'gspo'). */
  only?: string[];
  /** Overrides of the step budget and the RL learning rate (tuning). */
  budget?: Partial<Budget>;
}

export interface Budget {
  heldOut: number;
  /** Dev prompts (from the training split, not trained on by SFT) that decide when SFT stops. */
  devPrompts: number;
  /** SFT stops when greedy dev accuracy reaches this, or after `sftMaxSteps`. */
  sftTarget: number;
  sftMaxSteps: number;
  rlSteps: number;
  /** The reward model's backbone: SFT continued until greedy dev accuracy reaches this (a stronger model than the policy), or … */
  rmBackboneTarget: number;
  /** … after this many more steps. */
  rmBackboneMaxSteps: number;
  rmSteps: number;
  prefPrompts: number;
  /** Learning rate of each method (tuned per method; the same steps and prompts for all). */
  lr: { ppo: number; dpo: number; grpo: number; gspo: number; rm: number };
}

export interface MethodResult {
  method: string;
  accuracyBefore: number;
  accuracyAfter: number;
  meanReward: number;
  klToSft: number;
  seconds: number;
  tokensPerSec: number;
  metrics: Metrics[];
}

export interface RLDemoResult {
  sftAccuracy: number;
  /** Accuracy of sampled (temperature 1) held-out completions of the SFT model: the RL methods' starting reward. */
  sftSampledReward: number;
  sftSeconds: number;
  methods: MethodResult[];
  report: string;
  outputDir: string;
}

const ALPHABET = '0123456789+=';

/** The demo report's charts: one meaning per chart, so the methods' curves compare like with like. */
const DEMO_CHARTS: ChartSpec[] = [
  // PPO tracks the exact-answer reward with weight 0 (it trains on the reward model's score only).
  { title: 'Accuracy of the sampled completions', keys: ['reward/accuracy'] },
  { title: 'Reward-model score (PPO)', keys: ['reward/model'] },
  { title: 'KL to the SFT model', keys: ['kl/mean'] },
  { title: 'Loss', keys: ['loss'] },
  { title: 'Entropy', keys: ['policy/entropy'] },
  { title: 'Clip fraction', keys: ['policy/clipFrac'] },
  { title: 'DPO: preference accuracy', keys: ['rewards/accuracies'] },
  { title: 'DPO: implicit reward margin', keys: ['rewards/margins'] },
];
const LR = { ppo: 1e-4, dpo: 1e-5, grpo: 2e-4, gspo: 1e-4, rm: 1e-3 };

function rngOf(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** All 2-digit a+b problems, shuffled and split into train / held-out prompts. */
export function additionTask(seed: number, heldOut: number): { train: Row[]; test: Row[] } {
  const all: Row[] = [];
  for (let a = 10; a < 100; a++) for (let b = 10; b < 100; b++) all.push({ prompt: `${a}+${b}=`, answer: String(a + b) });
  const r = rngOf(seed);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return { test: all.slice(0, heldOut), train: all.slice(heldOut) };
}

function modelConfig(tok: Tokenizer): Record<string, unknown> {
  return {
    model_type: 'llama', vocab_size: tok.vocabSize, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32,
    pad_token_id: tok.padTokenId, eos_token_id: tok.eosTokenId, bos_token_id: tok.bosTokenId,
  };
}

/** Completions of `rows` (greedy, or sampled at temperature 1); with `withKlTo`, each row's KL to that model (k3 summed over tokens, ≥ 0). */
function complete(model: CausalLM, tok: Tokenizer, rows: Row[], sample: boolean, seed: number, withKlTo?: CausalLM): { texts: string[]; tokens: number; kl: number[] } {
  return noGrad(() => tidy(() => {
    const p = collatePrompts(tok, rows, { maxCompletionLength: 5 });
    const gen = model.generate(p.promptIds, {
      attentionMask: p.promptMask, maxNewTokens: 5, doSample: sample, temperature: 1, seed: sample ? seed : null,
      eosTokenId: tok.eosTokenId, padTokenId: tok.padTokenId,
    });
    const ids = gen.completionIds.toArray() as number[][];
    const mask = gen.completionMask.toArray() as number[][];
    const kept = ids.map((r, b) => r.filter((_, t) => mask[b][t] === 1));
    let kl: number[] = [];
    if (withKlTo) {
      const ref = completionLogprobs(withKlTo, { promptIds: p.promptIds, promptMask: p.promptMask, completionIds: gen.completionIds, completionMask: gen.completionMask }).logprobs;
      // k3 = e^d − d − 1 with d = ℓ_ref − ℓ (ALGORITHMS.md §2): unbiased like k1, but never negative.
      kl = klPenalty(gen.logprobs as Tensor, ref, { estimator: 'k3', mask: gen.completionMask }).sum(1).toArray() as number[];
    }
    return { texts: kept.map((r) => tok.decode(r, { skipSpecialTokens: true })), tokens: kept.reduce((a, r) => a + r.length, 0), kl };
  }));
}

function accuracy(texts: string[], rows: Row[]): number {
  return texts.filter((t, i) => t.trim() === rows[i].answer).length / rows.length;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** Runs the demo; resolves with the numbers of the table. */
export async function rlDemo(opts: RLDemoOptions = {}): Promise<RLDemoResult> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const quick = opts.quick ?? false;
  const seed = opts.seed ?? 0;
  setNumThreads(opts.threads ?? 1);
  const out = path.resolve(opts.outputDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-demo-')));
  fs.mkdirSync(out, { recursive: true });
  const tok = createCharTokenizer(ALPHABET);
  // Live progress of each training stage: a bar on a terminal, a log line every `every` steps otherwise.
  const tty = !opts.log && isInteractive(process.stdout);
  type Trainer<R> = { on(e: 'step', f: (x: { step: number; metrics: StepMetrics }) => void): unknown; train(o?: { signal?: AbortSignal }): Promise<R> };
  const tracked = async <R>(t: Trainer<R>, label: string, total: number, every: number, signal?: AbortSignal): Promise<R> => {
    const p = createProgress({ total, tty, log, label: `  ${label}`, every });
    t.on('step', ({ step, metrics }) => p.update(step, metrics));
    try {
      return await t.train({ signal });
    } finally {
      p.stop();
    }
  };
  const budget: Budget = {
    ...(quick
      ? { heldOut: 32, devPrompts: 16, sftTarget: 0.2, sftMaxSteps: 8, rlSteps: 2, rmBackboneTarget: 0.9, rmBackboneMaxSteps: 2, rmSteps: 2, prefPrompts: 16, lr: LR }
      : { heldOut: 200, devPrompts: 200, sftTarget: 0.2, sftMaxSteps: 1500, rlSteps: 600, rmBackboneTarget: 0.97, rmBackboneMaxSteps: 2000, rmSteps: 1500, prefPrompts: 1024, lr: LR }),
    ...(opts.budget ?? {}),
  };
  const lr = budget.lr;
  const { train, test } = additionTask(seed, budget.heldOut);
  log(`llmrl demo: 2-digit addition (${train.length} train / ${test.length} held-out prompts), a ${quick ? 'quick ' : ''}tiny Llama from scratch; output ${out}`);

  // ---- SFT from scratch ----
  const t0 = performance.now();
  const model = createCausalLM(modelConfig(tok), { seed });
  const dev = train.slice(train.length - budget.devPrompts);
  const sftRows = train.slice(0, train.length - budget.devPrompts).map((r) => ({ prompt: r.prompt, completion: r.answer }));
  /** SFT of `m` until its greedy dev accuracy reaches `target` (checked every 25 steps) or `maxSteps`. */
  const sftUntil = async (m: CausalLM, label: string, target: number, maxSteps: number, s: number, outputDir?: string) => {
    const stop = new AbortController();
    let devAccuracy = NaN;
    const t = new SFTTrainer({ model: m, tokenizer: tok, trainDataset: sftRows, config: { maxSteps, batchSize: 32, learningRate: 3e-3, warmupSteps: Math.min(20, maxSteps), loggingSteps: 0, seed: s, outputDir } });
    t.on('step', ({ step }) => {
      if (step % 25 !== 0 && step !== maxSteps) return;
      devAccuracy = accuracy(complete(m, tok, dev, false, s).texts, dev);
      if (devAccuracy >= target) stop.abort();
    });
    const res = await tracked(t, label, maxSteps, 100, stop.signal);
    return { metrics: res.metrics, steps: res.steps, devAccuracy };
  };
  const sftRun = await sftUntil(model, 'SFT', budget.sftTarget, budget.sftMaxSteps, seed, path.join(out, 'sft'));
  const sftMetrics = sftRun.metrics;
  const sftDir = path.join(out, 'sft-model');
  model.save(sftDir);
  const sftSeconds = (performance.now() - t0) / 1000;
  const sftAcc = accuracy(complete(model, tok, test, false, seed).texts, test);
  const sftSampled = accuracy(complete(model, tok, test, true, seed + 7).texts, test);
  log(`SFT: held-out accuracy ${(100 * sftAcc).toFixed(1)}% (greedy), ${sftSampled.toFixed(3)} sampled, after ${sftRun.steps} steps (dev ${(100 * sftRun.devAccuracy).toFixed(1)}%, target ${(100 * budget.sftTarget).toFixed(0)}%; ${sftSeconds.toFixed(1)} s)`);
  const sftRef = loadCausalLM(sftDir);

  // ---- preference collection from the SFT model's own samples (DPO pairs and the reward model's data) ----
  const prefPrompts = train.slice(0, budget.prefPrompts);
  const pairs: Row[] = [];
  const wrong: { prompt: string; answer: unknown; text: string }[] = [];
  for (let k = 0; k < 4 && pairs.length < prefPrompts.length; k++) {
    const a = complete(model, tok, prefPrompts, true, seed + 100 + 2 * k).texts;
    const b = complete(model, tok, prefPrompts, true, seed + 101 + 2 * k).texts;
    prefPrompts.forEach((row, i) => {
      const okA = a[i].trim() === row.answer;
      const okB = b[i].trim() === row.answer;
      if (!okA) wrong.push({ prompt: String(row.prompt), answer: row.answer, text: a[i] });
      if (okA !== okB) pairs.push({ prompt: row.prompt, chosen: okA ? a[i] : b[i], rejected: okA ? b[i] : a[i] });
    });
  }
  // Too few disagreements (a model that is always right or always wrong): the true answer is the chosen side.
  if (pairs.length < 8) {
    const s = complete(model, tok, prefPrompts, true, seed + 200).texts;
    prefPrompts.forEach((row, i) => { if (s[i].trim() !== row.answer) pairs.push({ prompt: row.prompt, chosen: String(row.answer), rejected: s[i] }); });
  }
  log(`preference pairs from SFT samples (correct vs incorrect): ${pairs.length}`);

  /** Reward modelling (the RLHF pipeline's second stage): a stronger backbone (see the header), then Bradley–Terry on the labelled pairs. */
  const trainRewardModel = async (dir: string) => {
    const backbone = loadCausalLM(sftDir);
    const more = await sftUntil(backbone, 'reward-model backbone (SFT)', budget.rmBackboneTarget, budget.rmBackboneMaxSteps, seed + 1);
    log(`  reward-model backbone: SFT continued ${more.steps} steps, dev accuracy ${(100 * more.devAccuracy).toFixed(1)}%`);
    const backboneDir = path.join(dir, 'reward-backbone');
    backbone.save(backboneDir);
    backbone.dispose();
    const rm = loadRewardModel(backboneDir, { initScoreHead: true });
    // The labeller knows the right answer: it also prefers it over the SFT model's wrong samples.
    const rmPairs = pairs.concat(wrong.map((w) => ({ prompt: w.prompt, chosen: String(w.answer), rejected: w.text })));
    const rt = new RewardTrainer({ model: rm, tokenizer: tok, trainDataset: rmPairs, config: { maxSteps: budget.rmSteps, batchSize: 32, learningRate: lr.rm, centerRewardsCoefficient: 0.05, loggingSteps: 0, seed, outputDir: path.join(dir, 'reward-model') } });
    await tracked(rt, 'reward model', budget.rmSteps, 250);
    // Held-out check of the reward model: the true answer vs the SFT model's wrong sample, on unseen prompts.
    const s = complete(model, tok, test, true, seed + 300).texts;
    const heldPairs = test.flatMap((r, i) => (s[i].trim() === r.answer ? [] : [{ prompt: r.prompt, chosen: String(r.answer), rejected: s[i] }]));
    const rmAcc = heldPairs.length === 0 ? NaN : noGrad(() => tidy(() => {
      const b = collatePreference(tok, heldPairs, {});
      return rm.score(b.chosenIds, { attentionMask: b.chosenMask }).gt(rm.score(b.rejectedIds, { attentionMask: b.rejectedMask })).float().mean().item();
    }));
    log(`  reward model: ${rmPairs.length} labelled pairs, held-out pair accuracy ${(100 * rmAcc).toFixed(1)}% (true answer vs SFT's wrong sample)`);
    return rm;
  };

  const reward = accuracyReward();
  const common = { maxSteps: budget.rlSteps, loggingSteps: 0, seed };
  const rollout = { promptsPerStep: 8, maxPromptLength: 8, maxCompletionLength: 5 };
  type Method = { name: string; run: (policy: CausalLM, dir: string) => Promise<Metrics[]> };
  const methods: Method[] = [
    {
      name: 'PPO (RM)',
      run: async (policy, dir) => {
        const rm = await trainRewardModel(dir);
        const monitor = { name: 'accuracy', fn: reward, weight: 0 }; // logged as reward/accuracy, adds 0 to the score
        const t = new PPOTrainer({ model: policy, tokenizer: tok, trainDataset: train, rewardModel: rm, rewardFuncs: monitor, refModel: sftRef, config: { ...common, ...rollout, promptsPerStep: 32, learningRate: lr.ppo, ppoEpochs: 2, temperature: 1, klCoef: 0.3, outputDir: dir } });
        const metrics = (await tracked(t, 'PPO', budget.rlSteps, 100)).metrics;
        rm.dispose();
        return metrics;
      },
    },
    {
      name: 'DPO',
      run: async (policy, dir) => {
        const t = new DPOTrainer({ model: policy, refModel: sftRef, tokenizer: tok, trainDataset: pairs, config: { ...common, batchSize: 16, learningRate: lr.dpo, beta: 0.1, sftWeight: 1, outputDir: dir } });
        return (await tracked(t, 'DPO', budget.rlSteps, 100)).metrics;
      },
    },
    {
      name: 'GRPO',
      run: async (policy, dir) => {
        const t = new GRPOTrainer({ model: policy, tokenizer: tok, trainDataset: train, rewardFuncs: { name: 'accuracy', fn: reward }, refModel: sftRef, config: { ...common, ...rollout, numGenerations: 4, learningRate: lr.grpo, beta: 0.02, outputDir: dir } });
        return (await tracked(t, 'GRPO', budget.rlSteps, 100)).metrics;
      },
    },
    {
      name: 'GSPO',
      run: async (policy, dir) => {
        const t = new GSPOTrainer({ model: policy, tokenizer: tok, trainDataset: train, rewardFuncs: { name: 'accuracy', fn: reward }, config: { ...common, ...rollout, numGenerations: 4, learningRate: lr.gspo, numIterations: 2, outputDir: dir } });
        return (await tracked(t, 'GSPO', budget.rlSteps, 100)).metrics;
      },
    },
  ];

  const results: MethodResult[] = [];
  const chosen = opts.only?.length ? methods.filter((m) => opts.only!.some((o) => m.name.toLowerCase().startsWith(o.toLowerCase()))) : methods;
  for (const m of chosen) {
    const dir = path.join(out, m.name.split(' ')[0].toLowerCase());
    const policy = loadCausalLM(sftDir);
    const t1 = performance.now();
    const metrics = await m.run(policy, dir);
    const seconds = (performance.now() - t1) / 1000;
    const after = accuracy(complete(policy, tok, test, false, seed).texts, test);
    const sampled = complete(policy, tok, test, true, seed + 7, sftRef);
    const r: MethodResult = {
      method: m.name, accuracyBefore: sftAcc, accuracyAfter: after, meanReward: accuracy(sampled.texts, test),
      klToSft: mean(sampled.kl), seconds, tokensPerSec: mean(metrics.map((x) => x['perf/tokensPerSec']).filter((x) => Number.isFinite(x))), metrics,
    };
    results.push(r);
    log(`${m.name}: held-out accuracy ${(100 * sftAcc).toFixed(1)}% → ${(100 * after).toFixed(1)}%, sampled reward ${r.meanReward.toFixed(3)}, KL to SFT ${r.klToSft.toFixed(4)}, ${seconds.toFixed(1)} s`);
  }

  const header = ['method', 'acc before', 'acc after', 'mean reward', 'KL to SFT', 'wall s', 'tokens/s'];
  const sftTps = mean(sftMetrics.map((x) => x['perf/tokensPerSec']).filter((x) => Number.isFinite(x)));
  const rows = [['SFT (start)', '-', `${(100 * sftAcc).toFixed(1)}%`, sftSampled.toFixed(3), '0', sftSeconds.toFixed(1), sftTps.toFixed(0)]].concat(results.map((r) => [r.method, `${(100 * r.accuracyBefore).toFixed(1)}%`, `${(100 * r.accuracyAfter).toFixed(1)}%`, r.meanReward.toFixed(3), r.klToSft.toFixed(4), r.seconds.toFixed(1), Number.isFinite(r.tokensPerSec) ? r.tokensPerSec.toFixed(0) : '-']));
  log('');
  log(textTable(header, rows));
  const series: Series[] = results.map((r) => ({ label: r.method, rows: r.metrics.map((m, i) => ({ step: i + 1, ...m }) as MetricRow) }));
  const report = path.join(out, 'report.html');
  writeFileAtomic(report, reportHtml(`llmrl demo: PPO, DPO, GRPO and GSPO from one SFT checkpoint (SFT held-out accuracy ${(100 * sftAcc).toFixed(1)}%)`, series, { header, rows }, DEMO_CHARTS));
  log('');
  log(`report: ${report}`);
  for (const m of [model, sftRef]) m.dispose();
  return { sftAccuracy: sftAcc, sftSampledReward: sftSampled, sftSeconds, methods: results, report, outputDir: out };
}
