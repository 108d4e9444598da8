import { describe, expect, test } from 'vitest';
import { AdaptiveKLController, describePPOConfig, PPOTrainer } from '../../src/trainers/ppo.js';
import { noGrad, tensor, tidy, type Tensor } from '../../src/index.js';
import { grads, rng, tinyLM, tinyRM, tmpDir, tok, zeroGrads } from './tiny.js';

// The verifiable task of the GRPO tests: say as many 'b's as possible.
const prompts = Array.from({ length: 16 }, (_, i) => ({ prompt: `${'abcdefgh'[i % 8]}${'abcdefgh'[(i * 3) % 8]}:` }));
const countB = (completions: string[]) => completions.map((c) => (c.length ? [...c].filter((ch) => ch === 'b').length / c.length : 0));

const base = { promptsPerStep: 16, maxCompletionLength: 6, maxPromptLength: 8, temperature: 1.0, loggingSteps: 0, seed: 1 };

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

describe('PPOTrainer', () => {
  test('raises the mean reward of a verifiable task (rule-based reward, per-token KL, GAE, critic)', async () => {
    const model = tinyLM(3);
    const trainer = new PPOTrainer({
      model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts,
      config: { ...base, maxSteps: 30, learningRate: 3e-3, ppoEpochs: 2, numMiniBatches: 2, vfCoef: 0.5, klCoef: 0.02, lrScheduler: 'constant' },
    });
    const { metrics } = await trainer.train();
    const first = mean(metrics.slice(0, 5).map((m) => m['reward/mean']));
    const last = mean(metrics.slice(-5).map((m) => m['reward/mean']));
    console.log(`PPO reward ${first.toFixed(3)} → ${last.toFixed(3)}; kl/mean ${metrics.at(-1)!['kl/mean'].toFixed(4)}; value/loss ${metrics[0]['value/loss'].toFixed(4)} → ${metrics.at(-1)!['value/loss'].toFixed(4)}`);
    expect(last).toBeGreaterThan(first + 0.15);
    for (const k of ['loss', 'policy/loss', 'policy/clipFrac', 'policy/approxKl', 'policy/entropy', 'value/loss', 'value/clipFrac', 'kl/mean', 'kl/coef',
      'reward/mean', 'reward/std', 'reward/countB', 'completions/meanLength', 'gradNorm', 'lr', 'perf/tokensPerSec']) {
      expect(metrics[0], k).toHaveProperty(k);
      expect(Number.isFinite(metrics.at(-1)![k]), k).toBe(true);
    }
  }, 120_000);

  test('with a reward model (critic defaults to a copy of it): runs, metrics finite, reward model untouched', async () => {
    const rm = tinyRM(7);
    const before = noGrad(() => rm.parameters().map((p) => p.toTypedArray() as Float32Array));
    const trainer = new PPOTrainer({
      model: tinyLM(2), tokenizer: tok, rewardModel: rm, trainDataset: prompts,
      config: { ...base, promptsPerStep: 8, maxSteps: 3, learningRate: 1e-3, entCoef: 0.01, rewardClip: 5, microBatchSize: 3 },
    });
    expect(trainer.valueModel).not.toBe(rm);
    const { metrics } = await trainer.train();
    expect(metrics).toHaveLength(3);
    for (const m of metrics) {
      for (const [k, v] of Object.entries(m)) expect(Number.isFinite(v), k).toBe(true);
      expect(m).toHaveProperty('reward/model');
    }
    const after = noGrad(() => rm.parameters().map((p) => p.toTypedArray() as Float32Array));
    after.forEach((a, i) => expect(a).toEqual(before[i]));
  }, 60_000);

  test('value loss falls over the first steps on a fixed reward', async () => {
    const trainer = new PPOTrainer({
      model: tinyLM(4), tokenizer: tok, rewardFuncs: (c: string[]) => c.map(() => 1), trainDataset: prompts,
      config: { ...base, promptsPerStep: 8, maxSteps: 8, learningRate: 3e-3, klCoef: 0, vfCoef: 1, lrScheduler: 'constant' },
    });
    expect(trainer.refModel).toBeNull();
    const { metrics } = await trainer.train();
    const v = metrics.map((m) => m['value/loss']);
    console.log(`PPO value/loss ${v.map((x) => x.toFixed(4)).join(' ')}`);
    expect(mean(v.slice(-3))).toBeLessThan(0.5 * v[0]);
  }, 60_000);

  test('adaptive KL: the coefficient grows when KL > target and shrinks when KL < target', async () => {
    const c = new AdaptiveKLController(0.1, 6, 100);
    expect(c.update(12, 10)).toBeCloseTo(0.1 * (1 + 0.2 * 0.1), 12); // error clipped at +0.2
    expect(new AdaptiveKLController(0.1, 6, 100).update(3, 10)).toBeCloseTo(0.1 * (1 - 0.2 * 0.1), 12); // 3/6 − 1 = −0.5 → −0.2
    expect(new AdaptiveKLController(0.1, 6, 100).update(6.6, 10)).toBeCloseTo(0.1 * (1 + 0.1 * 0.1), 12);
    const run = async (target: number) => {
      // A reference with other weights: the KL to it is large from the first step.
      const t = new PPOTrainer({
        model: tinyLM(5), refModel: tinyLM(6), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts,
        config: { ...base, promptsPerStep: 4, maxSteps: 2, ppoEpochs: 1, klCoef: 0.1, adaptiveKl: { target, horizon: 20 } },
      });
      const { metrics } = await t.train();
      expect(metrics[0]['kl/coef']).toBe(0.1);
      return { kl: metrics[0]['kl/seqSum'], coefs: [metrics[0]['kl/coef'], metrics[1]['kl/coef'], t.klCoef] };
    };
    const hi = await run(1e-3);
    expect(hi.kl).toBeGreaterThan(1e-3);
    expect(hi.coefs[1]).toBeGreaterThan(hi.coefs[0]);
    expect(hi.coefs[2]).toBeGreaterThan(hi.coefs[1]);
    const lo = await run(1e6);
    expect(lo.coefs[1]).toBeLessThan(lo.coefs[0]);
    expect(lo.coefs[2]).toBeLessThan(lo.coefs[1]);
    expect(lo.coefs[1]).toBeCloseTo(0.1 * (1 - 0.2 * 4 / 20), 10);
  }, 60_000);
});

describe('PPOTrainer.computeLoss', () => {
  const r = rng(11);
  function batch(B: number, P: number, L: number) {
    return tidy(() => {
      const rand = (n: number, lo: number, hi: number) => Array.from({ length: n }, () => lo + r() * (hi - lo));
      return {
        promptIds: tensor(Array.from({ length: B * P }, () => 4 + Math.floor(r() * 8)), { shape: [B, P], dtype: 'int64' }),
        promptMask: tensor(Array.from({ length: B * P }, () => 1), { shape: [B, P], dtype: 'int64' }),
        completionIds: tensor(Array.from({ length: B * L }, () => 4 + Math.floor(r() * 8)), { shape: [B, L], dtype: 'int64' }),
        completionMask: tensor(Array.from({ length: B * L }, (_, i) => (i % L < 1 + ((i / L) | 0) % L ? 1 : 0)), { shape: [B, L], dtype: 'int64' }),
        advantages: tensor(rand(B * L, -1, 1), { shape: [B, L] }),
        oldLogprobs: tensor(rand(B * L, -3, -1), { shape: [B, L] }),
        oldValues: tensor(rand(B * L, -0.5, 0.5), { shape: [B, L] }),
        returns: tensor(rand(B * L, -1, 1), { shape: [B, L] }),
      };
    });
  }

  test("micro-batches give the full mini-batch's gradient (policy + critic + entropy)", () => {
    const model = tinyLM(8);
    const trainer = new PPOTrainer({ model, tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, maxSteps: 1, entCoef: 0.05 } });
    const b = batch(5, 3, 4);
    const params = [...model.parameters(), ...trainer.valueModel.parameters()];
    const normalizer = noGrad(() => b.completionMask.sum().item());
    tidy(() => trainer.computeLoss(b).loss.backward());
    const full = grads(params);
    zeroGrads(params);
    for (const [s, e] of [[0, 2], [2, 3], [3, 5]]) {
      tidy(() => {
        const sl = (t: Tensor) => t.narrow(0, s, e - s);
        const part = Object.fromEntries(Object.entries(b).map(([k, t]) => [k, sl(t)])) as typeof b;
        trainer.computeLoss(part, { normalizer }).loss.backward();
      });
    }
    const split = grads(params);
    let diff = 0;
    let scale = 0;
    full.forEach((g, i) => g!.forEach((v, j) => { diff = Math.max(diff, Math.abs(v - split[i]![j])); scale = Math.max(scale, Math.abs(v)); }));
    expect(scale).toBeGreaterThan(0);
    expect(diff).toBeLessThan(1e-5 * Math.max(1, scale));
  });
});

describe('PPOTrainer.computeAdvantages (§3b → §3a → §3c)', () => {
  const t2 = (rows: number[][]) => tensor(rows);
  const mk = (config: Record<string, unknown>) => new PPOTrainer({ model: tinyLM(0), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...base, ...config } });

  test('score at the last valid token, λ = 0 closed form (ALGORITHMS.md §3a check), masked gap after the end', () => {
    const t = mk({ klCoef: 0, lam: 0, whitenAdvantages: false });
    const mask = tensor([[1, 1, 1, 0], [1, 1, 0, 0]], { dtype: 'int64' });
    const out = t.computeAdvantages({ oldLogprobs: t2([[-1, -1, -1, 0], [-1, -1, 0, 0]]), refLogprobs: null, values: t2([[1, 2, 3, 9], [0.5, 0.5, 9, 9]]), scores: tensor([5, 2]), completionMask: mask }, 0);
    expect(out.rewards.toArray()).toEqual([[0, 0, 5, 0], [0, 2, 0, 0]]);
    expect(out.advantages.toArray()).toEqual([[1, 1, 2, 0], [0, 1.5, 0, 0]]);
    expect(out.returns.toArray()).toEqual([[2, 3, 5, 0], [0.5, 2, 0, 0]]);
    expect(out.kl).toBeNull();
  });

  test('per-token −klCoef·k1 reward, reward clip, γ/λ GAE, whitening', () => {
    const t = mk({ klCoef: 0.5, gamma: 0.9, lam: 0.8, rewardClip: 1, whitenAdvantages: false });
    const mask = tensor([[1, 1, 1]], { dtype: 'int64' });
    const old = t2([[-1, -2, -0.5]]);
    const ref = t2([[-1.5, -1, -0.5]]);
    const V = t2([[0.1, 0.2, 0.3]]);
    const out = t.computeAdvantages({ oldLogprobs: old, refLogprobs: ref, values: V, scores: tensor([3]), completionMask: mask }, 0.5);
    // k1 = ℓ_old − ℓ_ref = [0.5, −1, 0]; r = −0.5·k1 + [0, 0, clip(3, ±1)] = [−0.25, 0.5, 1]
    const r = [-0.25, 0.5, 1];
    const v = [0.1, 0.2, 0.3];
    const d = r.map((x, i) => x + 0.9 * (v[i + 1] ?? 0) - v[i]);
    const A = [0, 0, 0];
    for (let i = 2; i >= 0; i--) A[i] = d[i] + 0.9 * 0.8 * (A[i + 1] ?? 0);
    (out.rewards.toArray() as number[][])[0].forEach((x, i) => expect(x).toBeCloseTo(r[i], 6));
    (out.advantages.toArray() as number[][])[0].forEach((x, i) => expect(x).toBeCloseTo(A[i], 6));
    (out.returns.toArray() as number[][])[0].forEach((x, i) => expect(x).toBeCloseTo(A[i] + v[i], 6));
    const w = mk({ klCoef: 0.5, gamma: 0.9, lam: 0.8, rewardClip: 1 }).computeAdvantages({ oldLogprobs: old, refLogprobs: ref, values: V, scores: tensor([3]), completionMask: mask }, 0.5);
    const a = (w.advantages.toArray() as number[][])[0];
    expect(a.reduce((x, y) => x + y, 0)).toBeCloseTo(0, 5);
    expect(a.reduce((x, y) => x + y * y, 0) / 2).toBeCloseTo(1, 4); // Bessel-corrected unit variance
  });
});

describe('PPOTrainer bad input and resume', () => {
  test('completions no reward function scored are dropped from the loss and counted, never a NaN loss', async () => {
    const partial = (c: string[]) => c.map((_, i) => (i % 2 ? null : 0.5));
    const t = new PPOTrainer({ model: tinyLM(2), tokenizer: tok, rewardFuncs: partial, trainDataset: prompts, config: { ...base, promptsPerStep: 8, maxSteps: 2, ppoEpochs: 1 } });
    const { metrics } = await t.train();
    expect(metrics[0]['reward/nanFrac']).toBeCloseTo(0.5, 6);
    for (const m of metrics) expect(Number.isFinite(m.loss)).toBe(true);
  });

  test('no completion scored at all: loss 0, parameters unchanged', async () => {
    const model = tinyLM(3);
    const before = noGrad(() => model.parameters().map((p) => p.toTypedArray() as Float32Array));
    const t = new PPOTrainer({ model, tokenizer: tok, rewardFuncs: (c: string[]) => c.map(() => null), trainDataset: prompts, config: { ...base, promptsPerStep: 4, maxSteps: 1, ppoEpochs: 1 } });
    const { metrics } = await t.train();
    expect(metrics[0]['reward/nanFrac']).toBe(1);
    expect(metrics[0].loss).toBe(0);
    const after = noGrad(() => model.parameters().map((p) => p.toTypedArray() as Float32Array));
    after.forEach((a, i) => expect(a).toEqual(before[i]));
  });

  test('resume from a checkpoint gives the metrics of an uninterrupted run (policy, critic, optimiser, adaptive klCoef)', async () => {
    const cfg = { ...base, promptsPerStep: 4, ppoEpochs: 2, learningRate: 1e-3, klCoef: 0.1, adaptiveKl: { target: 0.01, horizon: 10 }, maxSteps: 4 };
    const mkT = (config: Record<string, unknown>) => new PPOTrainer({ model: tinyLM(9), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config: { ...cfg, ...config } });
    const full = (await mkT({}).train()).metrics;
    const dir = tmpDir('ppo-resume');
    // Interrupted after step 2 (an AbortSignal stops cleanly with a checkpoint), same maxSteps so the LR schedule matches.
    const ac = new AbortController();
    const first = mkT({ outputDir: dir });
    first.on('step', ({ step }) => { if (step === 2) ac.abort(); });
    expect((await first.train({ signal: ac.signal })).stoppedEarly).toBe(true);
    const rest = (await mkT({ outputDir: dir, resumeFrom: true }).train()).metrics;
    expect(rest).toHaveLength(2);
    for (const k of ['loss', 'reward/mean', 'kl/coef', 'value/loss', 'policy/loss']) {
      for (let i = 0; i < 2; i++) expect(rest[i][k], `${k} step ${i + 3}`).toBeCloseTo(full[i + 2][k], 5);
    }
  }, 60_000);
});

describe('PPOTrainer config errors', () => {
  const mk = (config: Record<string, unknown>, extra: Record<string, unknown> = {}) => () =>
    new PPOTrainer({ model: tinyLM(0), tokenizer: tok, rewardFuncs: countB, trainDataset: prompts, config, ...extra });

  test('defaults follow TRL', () => {
    const c = mk({})().config;
    expect([c.klCoef, c.cliprange, c.cliprangeValue, c.vfCoef, c.gamma, c.lam, c.ppoEpochs, c.whitenRewards, c.klEstimator, c.numMiniBatches])
      .toEqual([0.05, 0.2, 0.2, 0.1, 1.0, 0.95, 4, false, 'k1', 1]);
    expect(describePPOConfig()).toMatch(/klCoef \(default 0.05; TRL: kl_coef\)/);
  });

  test('bad options name the option and how to fix it', () => {
    expect(mk({ kl_coef: 0.1 })).toThrow(/PPOConfig: unknown option 'kl_coef' — did you mean 'klCoef'/);
    expect(mk({ gamma: 1.5 })).toThrow(/option 'gamma' must be in \[0, 1\], got 1.5/);
    expect(mk({ numMiniBatches: 8, promptsPerStep: 4 })).toThrow(/option 'numMiniBatches' must be ≤ promptsPerStep \(4\)/);
    expect(mk({ adaptiveKl: { target: 0, horizon: 10 } })).toThrow(/option 'adaptiveKl' must be null or \{ target/);
    expect(mk({ klEstimator: 'k4' })).toThrow(/option 'klEstimator' must be one of 'k1', 'k2', 'k3', 'abs'/);
    expect(mk({ dualClip: 0.5 })).toThrow(/option 'dualClip' must be a number > 1 or null/);
    expect(mk({ ppoEpochs: 0 })).toThrow(/option 'ppoEpochs' must be a positive integer/);
    expect(mk({}, { rewardFuncs: null })).toThrow(/give a 'rewardModel' or 'rewardFuncs'/);
    const rm = tinyRM(1);
    expect(mk({}, { rewardModel: rm, valueModel: rm })).toThrow(/'valueModel' is the reward model itself/);
  });
});
