import { describe, expect, test } from 'vitest';
import { GRPOTrainer, GSPOTrainer, noGrad, tensor, tidy, type Tensor } from '../../src/index.js';
import { grads, rng, tinyLM, tmpDir, tok, zeroGrads } from './tiny.js';

// A verifiable task a tiny model can learn in a few dozen steps: say as many 'b's as possible.
const prompts = Array.from({ length: 16 }, (_, i) => ({ prompt: `${'abcdefgh'[i % 8]}${'abcdefgh'[(i * 3) % 8]}:` }));
const countB = (completions: string[]) => completions.map((c) => (c.length ? [...c].filter((ch) => ch === 'b').length / c.length : 0));

const base = { promptsPerStep: 4, numGenerations: 8, maxCompletionLength: 6, maxPromptLength: 8, learningRate: 3e-3, loggingSteps: 0, seed: 1 };

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

describe('GRPOTrainer', () => {
  test('raises the mean reward of a verifiable task (token-level, β = 0.02 with a reference)', async () => {
    const model = tinyLM(3);
    const trainer = new GRPOTrainer({ model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, maxSteps: 40, beta: 0.02, learningRate: 5e-3 } });
    const { metrics } = await trainer.train();
    const first = mean(metrics.slice(0, 5).map((m) => m['reward/mean']));
    const last = mean(metrics.slice(-5).map((m) => m['reward/mean']));
    console.log(`GRPO reward ${first.toFixed(3)} → ${last.toFixed(3)}; kl ${metrics.at(-1)!['kl/mean'].toFixed(4)}`);
    expect(last).toBeGreaterThan(first + 0.15);
    for (const k of ['loss', 'reward/std', 'reward/countB', 'kl/mean', 'policy/clipFrac', 'policy/entropy', 'groups/zeroStdFrac', 'completions/meanLength', 'gradNorm', 'lr', 'perf/tokensPerSec']) {
      expect(metrics[0], k).toHaveProperty(k);
    }
  }, 120_000);

  test('GSPO (sequence-level ratios, paper defaults) raises the mean reward too', async () => {
    const model = tinyLM(4);
    const trainer = new GSPOTrainer({ model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, maxSteps: 30, numIterations: 2 } });
    expect(trainer.config.importanceSampling).toBe('sequence');
    expect(trainer.config.epsilon).toBe(3e-4);
    const { metrics } = await trainer.train();
    const first = mean(metrics.slice(0, 5).map((m) => m['reward/mean']));
    const last = mean(metrics.slice(-5).map((m) => m['reward/mean']));
    console.log(`GSPO reward ${first.toFixed(3)} → ${last.toFixed(3)}; clipFrac ${metrics.at(-1)!['policy/clipFrac'].toFixed(3)}`);
    expect(last).toBeGreaterThan(first + 0.15);
  }, 120_000);
});

describe('GRPOTrainer.computeLoss invariants', () => {
  const r = rng(7);
  function batch(B: number, P: number, L: number, allMasked = false) {
    return tidy(() => ({
      promptIds: tensor(Array.from({ length: B * P }, () => 4 + Math.floor(r() * 8)), { shape: [B, P], dtype: 'int64' }),
      promptMask: tensor(Array.from({ length: B * P }, () => 1), { shape: [B, P], dtype: 'int64' }),
      completionIds: tensor(Array.from({ length: B * L }, () => 4 + Math.floor(r() * 8)), { shape: [B, L], dtype: 'int64' }),
      completionMask: tensor(Array.from({ length: B * L }, (_, i) => (allMasked ? 0 : i % L < 2 + ((i / L) | 0) % (L - 1) ? 1 : 0)), { shape: [B, L], dtype: 'int64' }),
      advantages: tensor(Array.from({ length: B }, () => r() * 2 - 1)),
    }));
  }

  test('every completion masked: loss 0, zero gradient, parameters unchanged by the step', () => {
    const model = tinyLM(5);
    const trainer = new GRPOTrainer({ model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, maxSteps: 1 } });
    const b = batch(4, 3, 5, true);
    const before = noGrad(() => model.parameters().map((p) => p.toTypedArray() as Float32Array));
    const loss = trainer.computeLoss(b).loss;
    expect(loss.item()).toBe(0);
    loss.backward();
    for (const g of grads(model.parameters())) if (g) expect(g.every((x) => x === 0)).toBe(true);
    (trainer as unknown as { optimizerStep(): void }).optimizerStep();
    const after = noGrad(() => model.parameters().map((p) => p.toTypedArray() as Float32Array));
    after.forEach((a, i) => expect(a).toEqual(before[i]));
  });

  for (const aggregation of ['token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm', 'seq_mean_token_sum'] as const) {
    test(`micro-batches give the full batch's gradient (${aggregation})`, () => {
      const model = tinyLM(6);
      const trainer = new GRPOTrainer({ model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, maxSteps: 1, aggregation, maxCompletionLength: 5 } });
      const b = batch(6, 3, 5);
      const params = model.parameters();
      const normalizer = noGrad(() => b.completionMask.sum().item());
      const numSequences = noGrad(() => b.completionMask.sum(1).gt(0).sum().item());
      tidy(() => trainer.computeLoss(b).loss.backward());
      const full = grads(params);
      zeroGrads(params);
      for (const [s, e] of [[0, 2], [2, 5], [5, 6]]) {
        tidy(() => {
          const sl = (t: Tensor) => t.narrow(0, s, e - s);
          trainer.computeLoss({ promptIds: sl(b.promptIds), promptMask: sl(b.promptMask), completionIds: sl(b.completionIds), completionMask: sl(b.completionMask), advantages: sl(b.advantages) }, { normalizer, numSequences }).loss.backward();
        });
      }
      const split = grads(params);
      let maxDiff = 0;
      let maxAbs = 0;
      full.forEach((g, i) => g!.forEach((v, j) => { maxDiff = Math.max(maxDiff, Math.abs(v - split[i]![j])); maxAbs = Math.max(maxAbs, Math.abs(v)); }));
      expect(maxAbs).toBeGreaterThan(0);
      expect(maxDiff).toBeLessThan(1e-5 * Math.max(1, maxAbs));
    });
  }
});

describe('GRPOTrainer resume', () => {
  test('resume from a checkpoint gives the metrics of an uninterrupted run (weights, optimiser, RNG, data position)', async () => {
    const cfg = { ...base, maxSteps: 4, beta: 0.02, numIterations: 2 };
    const mkT = (config: Record<string, unknown>) => new GRPOTrainer({ model: tinyLM(9), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...cfg, ...config } });
    const full = (await mkT({}).train()).metrics;
    const dir = tmpDir('grpo-resume');
    const ac = new AbortController();
    const first = mkT({ outputDir: dir });
    first.on('step', ({ step }) => { if (step === 2) ac.abort(); });
    expect((await first.train({ signal: ac.signal })).stoppedEarly).toBe(true);
    const rest = (await mkT({ outputDir: dir, resumeFrom: true }).train()).metrics;
    expect(rest).toHaveLength(2);
    for (const k of ['loss', 'reward/mean', 'kl/mean', 'policy/approxKl', 'completions/meanLength']) {
      for (let i = 0; i < 2; i++) expect(rest[i][k], `${k} step ${i + 3}`).toBeCloseTo(full[i + 2][k], 5);
    }
  }, 60_000);
});

describe('GRPOTrainer bad input', () => {
  test('a reward function that throws, or returns the wrong count, stops with an error naming it', async () => {
    const boom = function accuracy(): number[] { throw new Error('no answer column'); };
    const t1 = new GRPOTrainer({ model: tinyLM(1), tokenizer: tok, rewardFuncs: boom, trainDataset: prompts, config: { ...base, maxSteps: 1 } });
    await expect(t1.train()).rejects.toThrow(/reward function 'accuracy' threw at step 0: no answer column/);
    const short = function fmt(c: string[]) { return c.slice(1).map(() => 1); };
    const t2 = new GRPOTrainer({ model: tinyLM(1), tokenizer: tok, rewardFuncs: short, trainDataset: prompts, config: { ...base, maxSteps: 1 } });
    await expect(t2.train()).rejects.toThrow(/reward function 'fmt' must return an array of 32 numbers/);
  });

  test('NaN / null rewards are excluded, counted, and never give a NaN loss', async () => {
    const partial = (c: string[]) => c.map((_, i) => (i % 2 ? null : 1 - i / c.length));
    const t = new GRPOTrainer({ model: tinyLM(2), tokenizer: tok, rewardFuncs: [partial, (c: string[]) => c.map(() => NaN)], trainDataset: prompts, config: { ...base, maxSteps: 2 } });
    const { metrics } = await t.train();
    expect(metrics[0]['reward/nanFrac']).toBeCloseTo(0.5, 6);
    expect(Number.isFinite(metrics[0].loss)).toBe(true);
  });

  test('config errors name the option and how to fix it', () => {
    const mk = (config: Record<string, unknown>) => () => new GRPOTrainer({ model: tinyLM(0), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config });
    expect(mk({ numGenerations: 1 })).toThrow(/GRPOConfig: option 'numGenerations' must be ≥ 2, got 1/);
    expect(mk({ num_generations: 4 })).toThrow(/unknown option 'num_generations' — did you mean 'numGenerations'/);
    expect(mk({ importanceSampling: 'sequence', beta: 0.1 })).toThrow(/option 'beta' must be 0 with importanceSampling 'sequence'/);
  });
});
