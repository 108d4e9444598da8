import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { collatePreference, memory, noGrad, REWARD_SCHEMA, RewardTrainer, tensor, tidy } from '../../src/index.js';
import { grads, maxDiff, rng, tinyRM, tmpDir, tok, zeroGrads } from './tiny.js';

/** Pairs of random 'a'/'b' strings; the chosen one has more 'a's. */
function pairs(n: number, seed: number, withMargin = false) {
  const r = rng(seed);
  const word = () => Array.from({ length: 4 + Math.floor(r() * 4) }, () => (r() < 0.5 ? 'a' : 'b')).join('');
  const count = (s: string) => [...s].filter((c) => c === 'a').length;
  const out: Record<string, unknown>[] = [];
  while (out.length < n) {
    const x = word();
    const y = word();
    if (count(x) === count(y)) continue;
    const [c, j] = count(x) > count(y) ? [x, y] : [y, x];
    out.push({ prompt: 'h:', chosen: c, rejected: j, ...(withMargin ? { margin: (count(c) - count(j)) / 4 } : {}) });
  }
  return out;
}

const logSigmoid = (x: number) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));

describe('RewardTrainer', () => {
  test('accuracy rises on synthetic preferences (more "a" is better)', async () => {
    const train = pairs(256, 1);
    const held = pairs(64, 2);
    const trainer = new RewardTrainer({ model: tinyRM(0), tokenizer: tok, trainDataset: train, config: { maxSteps: 40, batchSize: 16, learningRate: 3e-3, loggingSteps: 0 } });
    const before = await trainer.evaluate(held);
    const live: number[] = [];
    trainer.on('step', () => { live.push(memory().liveTensors); });
    const res = await trainer.train();
    const after = await trainer.evaluate(held);
    expect(live[39], 'no tensors leak across steps').toBeLessThanOrEqual(live[2]);
    const acc = res.metrics.map((m) => m.accuracy);
    const early = acc.slice(0, 5).reduce((a, b) => a + b) / 5;
    const late = acc.slice(-5).reduce((a, b) => a + b) / 5;
    console.log(`reward: held-out accuracy ${before['eval/accuracy'].toFixed(3)} → ${after['eval/accuracy'].toFixed(3)}, loss ${before['eval/loss'].toFixed(3)} → ${after['eval/loss'].toFixed(3)}; train accuracy ${early.toFixed(3)} → ${late.toFixed(3)}`);
    expect(after['eval/accuracy']).toBeGreaterThan(0.85);
    expect(after['eval/accuracy']).toBeGreaterThan(before['eval/accuracy'] + 0.2);
    expect(after['eval/loss']).toBeLessThan(before['eval/loss']);
    expect(late).toBeGreaterThan(early);
    expect(after['eval/margin']).toBeGreaterThan(0);
    for (const k of ['loss', 'accuracy', 'margin', 'gradNorm', 'lr', 'perf/tokensPerSec']) expect(Number.isFinite(res.metrics[0][k])).toBe(true);
  });

  test('computeLoss equals −mean logσ(r_c − r_r − margin) + c·mean((r_c + r_r)²) on the model\'s scores', () => {
    const model = tinyRM(1);
    const rows = pairs(6, 3, true);
    const trainer = new RewardTrainer({ model, tokenizer: tok, trainDataset: rows, config: { centerRewardsCoefficient: 0.05 } });
    tidy(() => {
      const b = collatePreference(tok, rows);
      const { loss, metrics } = trainer.computeLoss(b);
      const rc = noGrad(() => model.score(b.chosenIds, { attentionMask: b.chosenMask }).toArray() as number[]);
      const rr = noGrad(() => model.score(b.rejectedIds, { attentionMask: b.rejectedMask }).toArray() as number[]);
      const m = b.margin!.toArray() as number[];
      let l = 0;
      let acc = 0;
      let mg = 0;
      rc.forEach((c, i) => {
        l += -logSigmoid(c - rr[i] - m[i]) + 0.05 * (c + rr[i]) ** 2;
        acc += c > rr[i] ? 1 : 0;
        mg += c - rr[i];
      });
      expect(loss.item()).toBeCloseTo(l / rc.length, 5);
      expect(metrics.accuracy).toBeCloseTo(acc / rc.length, 6);
      expect(metrics.margin).toBeCloseTo(mg / rc.length, 5);
    });
  });

  test('micro-batches with gradient accumulation give the full batch gradient', async () => {
    const model = tinyRM(2);
    const params = model.parameters();
    const rows = pairs(7, 4);
    const trainer = new RewardTrainer({ model, tokenizer: tok, trainDataset: rows });
    tidy(() => trainer.computeLoss(collatePreference(tok, rows)).loss.backward());
    const g1 = grads(params);
    zeroGrads(params);
    tidy(() => {
      const b = collatePreference(tok, rows);
      for (const [s, e] of [[0, 3], [3, 4], [4, 7]]) {
        const sl = (t: typeof b.chosenIds) => t.narrow(0, s, e - s);
        trainer.computeLoss({ chosenIds: sl(b.chosenIds), chosenMask: sl(b.chosenMask), rejectedIds: sl(b.rejectedIds), rejectedMask: sl(b.rejectedMask) }, { numPairs: 7 }).loss.backward();
      }
    });
    const g2 = grads(params);
    zeroGrads(params);
    const { diff, scale } = maxDiff(g1, g2);
    expect(scale).toBeGreaterThan(0);
    expect(diff).toBeLessThan(1e-6 * Math.max(1, scale));
  });

  test('resuming from a checkpoint continues exactly like the uninterrupted run', async () => {
    const rows = pairs(40, 5);
    const cfg = { maxSteps: 4, batchSize: 8, microBatchSize: 3, learningRate: 1e-3, saveSteps: 2, loggingSteps: 0 };
    const dirA = tmpDir('rm-a');
    const a = await new RewardTrainer({ model: tinyRM(6), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: dirA } }).train();
    const b = await new RewardTrainer({ model: tinyRM(6), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: tmpDir('rm-b'), resumeFrom: path.join(dirA, 'checkpoint-2') } }).train();
    expect(b.metrics.length).toBe(2);
    for (let i = 0; i < 2; i++) for (const k of ['loss', 'accuracy', 'margin', 'gradNorm', 'lr']) expect(b.metrics[i][k], `step ${i + 3} ${k}`).toBe(a.metrics[i + 2][k]);
  });

  test('config: TRL defaults and validation', () => {
    expect(REWARD_SCHEMA.learningRate.default).toBe(1e-4);
    expect(REWARD_SCHEMA.centerRewardsCoefficient.trl).toMatch(/center_rewards_coefficient/);
    const model = tinyRM(7);
    expect(() => new RewardTrainer({ model, tokenizer: tok, trainDataset: pairs(4, 1), config: { centerRewardsCoefficient: -1 } })).toThrow(/centerRewardsCoefficient' must be ≥ 0/);
    expect(() => new RewardTrainer({ model, tokenizer: tok, trainDataset: pairs(4, 1), config: { center_rewards_coefficient: 0.01 } as never }))
      .toThrow(/unknown option 'center_rewards_coefficient' — did you mean 'centerRewardsCoefficient'\?.*Valid options:/);
    expect(() => new RewardTrainer({ model: tensor([1]) as never, tokenizer: tok, trainDataset: pairs(4, 1) })).toThrow(/must be a reward model/);
  });
});
