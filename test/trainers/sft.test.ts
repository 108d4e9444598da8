import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { collateSFT, ConfigError, memory, readMetrics, SFTTrainer, SFT_SCHEMA, tidy } from '../../src/index.js';
import { grads, maxDiff, tinyLM, tmpDir, tok, zeroGrads } from './tiny.js';

// A tiny completion task: "abc=" → "cba" (reverse the word).
const WORDS = ['abc', 'bad', 'cafe', 'dig', 'hgf', 'ace', 'bed', 'gab', 'head', 'fade', 'cab', 'egg'];
const rows = WORDS.map((w) => ({ prompt: `${w}=`, completion: [...w].reverse().join('') }));

describe('SFTTrainer', () => {
  test('the loss falls and token accuracy rises on a tiny copy task', async () => {
    const model = tinyLM(0);
    const trainer = new SFTTrainer({ model, tokenizer: tok, trainDataset: rows, config: { maxSteps: 40, batchSize: 6, microBatchSize: 4, learningRate: 3e-3, lrScheduler: 'constant', loggingSteps: 0 } });
    const live: number[] = [];
    trainer.on('step', () => { live.push(memory().liveTensors); });
    const res = await trainer.train();
    expect(live[39], 'no tensors leak across steps').toBeLessThanOrEqual(live[2]);
    const loss = res.metrics.map((m) => m.loss);
    const first = (loss[0] + loss[1]) / 2;
    const last = (loss[38] + loss[39]) / 2;
    console.log(`SFT loss ${loss[0].toFixed(3)} → ${loss[39].toFixed(3)}; tokenAccuracy ${res.metrics[0].tokenAccuracy.toFixed(3)} → ${res.metrics[39].tokenAccuracy.toFixed(3)}`);
    expect(last).toBeLessThan(first * 0.5);
    expect(res.metrics[39].tokenAccuracy).toBeGreaterThan(res.metrics[0].tokenAccuracy + 0.2);
    for (const k of ['loss', 'gradNorm', 'lr', 'perf/tokensPerSec', 'tokenAccuracy']) expect(Number.isFinite(res.metrics[0][k])).toBe(true);
    // Evaluation reports the same keys, prefixed.
    const ev = await trainer.evaluate(rows);
    expect(ev['eval/loss']).toBeLessThan(first * 0.5);
    expect(ev['eval/tokenAccuracy']).toBeGreaterThan(0);
  });

  test('computeLoss is the mean token NLL over the completion tokens', () => {
    const model = tinyLM(1);
    const trainer = new SFTTrainer({ model, tokenizer: tok, trainDataset: rows });
    tidy(() => {
      const b = collateSFT(tok, rows.slice(0, 3));
      const { loss } = trainer.computeLoss(b);
      // Reference: full logits → log-softmax → NLL of each target, averaged over targets.
      const { logits } = model.forward(b.inputIds, { attentionMask: b.attentionMask });
      const lp = logits.logSoftmax(-1).toArray() as number[][][];
      const ids = b.inputIds.toArray() as number[][];
      const mask = b.lossMask.toArray() as number[][];
      let s = 0;
      let n = 0;
      ids.forEach((r, i) => {
        for (let t = 1; t < r.length; t++) if (mask[i][t]) { s -= lp[i][t - 1][r[t]]; n++; }
      });
      expect(loss.item()).toBeCloseTo(s / n, 5);
    });
  });

  test('micro-batches with gradient accumulation give the full batch gradient', async () => {
    const model = tinyLM(2);
    const params = model.parameters();
    const trainer = new SFTTrainer({ model, tokenizer: tok, trainDataset: rows });
    const full = tidy(() => {
      const b = collateSFT(tok, rows.slice(0, 7));
      const { loss } = trainer.computeLoss({ inputIds: b.inputIds, attentionMask: b.attentionMask, lossMask: b.lossMask });
      loss.backward();
      return loss.item();
    });
    const g1 = grads(params);
    zeroGrads(params);
    let sum = 0;
    tidy(() => {
      const b = collateSFT(tok, rows.slice(0, 7));
      const normalizer = b.lossMask.narrow(1, 1, b.lossMask.shape[1] - 1).sum().item();
      for (const [s, e] of [[0, 2], [2, 5], [5, 7]]) {
        const sl = (t: typeof b.inputIds) => t.narrow(0, s, e - s);
        const { loss } = trainer.computeLoss({ inputIds: sl(b.inputIds), attentionMask: sl(b.attentionMask), lossMask: sl(b.lossMask) }, { normalizer });
        loss.backward();
        sum += loss.item();
      }
    });
    const g2 = grads(params);
    zeroGrads(params);
    const { diff, scale } = maxDiff(g1, g2);
    expect(sum).toBeCloseTo(full, 6);
    expect(scale).toBeGreaterThan(0);
    expect(diff).toBeLessThan(1e-6 * Math.max(1, scale));

    // The same through the trainer's step: microBatchSize 3 vs the whole batch, from identical models.
    const run = async (microBatchSize: number) => {
      const t = new SFTTrainer({ model: tinyLM(3), tokenizer: tok, trainDataset: rows, config: { maxSteps: 2, batchSize: 7, microBatchSize, loggingSteps: 0, learningRate: 1e-3 } });
      return (await t.train()).metrics;
    };
    const a = await run(0);
    const c = await run(3);
    for (let i = 0; i < 2; i++) {
      expect(c[i].loss).toBeCloseTo(a[i].loss, 6);
      expect(c[i].gradNorm).toBeCloseTo(a[i].gradNorm, 5);
      expect(c[i].tokenAccuracy).toBeCloseTo(a[i].tokenAccuracy, 6);
    }
  });

  test('resuming from a checkpoint continues exactly like the uninterrupted run', async () => {
    const cfg = { maxSteps: 6, batchSize: 5, learningRate: 2e-3, saveSteps: 3, loggingSteps: 0, warmupSteps: 2 };
    const dirA = tmpDir('sft-a');
    const a = await new SFTTrainer({ model: tinyLM(4), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: dirA } }).train();
    const dirB = tmpDir('sft-b');
    const b = await new SFTTrainer({ model: tinyLM(4), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: dirB, resumeFrom: path.join(dirA, 'checkpoint-3') } }).train();
    expect(b.steps).toBe(6);
    expect(b.metrics.length).toBe(3);
    for (let i = 0; i < 3; i++) {
      for (const k of ['loss', 'gradNorm', 'lr', 'tokenAccuracy']) expect(b.metrics[i][k], `step ${i + 4} ${k}`).toBe(a.metrics[i + 3][k]);
    }
    const logged = readMetrics(path.join(dirA, 'metrics.jsonl'));
    expect(logged.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test('config: defaults note TRL names; unknown keys and bad values are rejected with the fix', () => {
    expect(SFT_SCHEMA.learningRate.default).toBe(2e-5);
    expect(SFT_SCHEMA.maxLength.trl).toBe('max_length');
    const model = tinyLM(5);
    expect(() => new SFTTrainer({ model, tokenizer: tok, trainDataset: rows, config: { learning_rate: 1e-3 } as never }))
      .toThrow(/SFTConfig: unknown option 'learning_rate' — did you mean 'learningRate'\? Valid options: .*batchSize.*microBatchSize/);
    expect(() => new SFTTrainer({ model, tokenizer: tok, trainDataset: rows, config: { batchSize: 4, microBatchSize: 8 } })).toThrow(/microBatchSize' must be ≤ batchSize \(4\)/);
    expect(() => new SFTTrainer({ model, tokenizer: tok, trainDataset: rows, config: { maxLength: 0 } })).toThrow(ConfigError);
  });
});
