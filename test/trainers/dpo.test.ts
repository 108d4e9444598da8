import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { collatePreference, DPO_SCHEMA, DPOTrainer, loadDataset, memory, noGrad, tensor, tidy, type DPOConfig } from '../../src/index.js';
import { grads, maxDiff, rng, tinyLM, tmpDir, tok, zeroGrads } from './tiny.js';

const LN2 = Math.log(2);

/** Prompts of random letters; chosen completions are 'a'-heavy, rejected ones 'b'-heavy. */
function prefs(n: number, seed: number) {
  const r = rng(seed);
  const pick = (s: string, k: number) => Array.from({ length: k }, () => s[Math.floor(r() * s.length)]).join('');
  return Array.from({ length: n }, () => ({
    prompt: `${pick('cdefgh', 2 + Math.floor(r() * 3))}>`,
    chosen: pick('aaac', 2 + Math.floor(r() * 3)),
    rejected: pick('bbbd', 2 + Math.floor(r() * 3)),
  }));
}

const logSigmoid = (x: number) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));

describe('DPOTrainer', () => {
  test('first-step loss is ln 2 when the policy equals the reference (cached and on-the-fly reference)', async () => {
    const rows = prefs(12, 1);
    for (const precomputeRefLogps of [true, false]) {
      const trainer = new DPOTrainer({ model: tinyLM(0), tokenizer: tok, trainDataset: rows, config: { maxSteps: 1, batchSize: 6, microBatchSize: 4, precomputeRefLogps, loggingSteps: 0 } });
      const m = (await trainer.train()).metrics[0];
      expect(m.loss).toBeCloseTo(LN2, 5);
      expect(Math.abs(m['rewards/chosen'])).toBeLessThan(1e-5);
      expect(Math.abs(m['rewards/margins'])).toBeLessThan(1e-5);
      expect(m['logps/chosen']).toBeLessThan(0);
      for (const k of ['rewards/rejected', 'rewards/accuracies', 'gradNorm', 'lr', 'perf/tokensPerSec']) expect(Number.isFinite(m[k]), k).toBe(true);
    }
    // computeLoss on a prepared batch without reference log-probs: the frozen copy computes them.
    const trainer = new DPOTrainer({ model: tinyLM(1), tokenizer: tok, trainDataset: rows });
    tidy(() => {
      const { loss, metrics } = trainer.computeLoss(collatePreference(tok, rows.slice(0, 5)));
      expect(loss.item()).toBeCloseTo(0.693147, 6);
      expect(metrics['rewards/accuracies']).toBe(0);
    });
  });

  test('preference accuracy rises (chosen "a"-heavy, rejected "b"-heavy)', async () => {
    const train = prefs(96, 2);
    const held = prefs(32, 3);
    const trainer = new DPOTrainer({ model: tinyLM(2), tokenizer: tok, trainDataset: train, config: { maxSteps: 30, batchSize: 12, microBatchSize: 5, learningRate: 2e-3, loggingSteps: 0 } });
    const before = await trainer.evaluate(held);
    const live: number[] = [];
    trainer.on('step', () => { live.push(memory().liveTensors); });
    const res = await trainer.train();
    expect(live[29], 'no tensors leak across steps').toBeLessThanOrEqual(live[2]);
    const after = await trainer.evaluate(held);
    const acc = res.metrics.map((m) => m['rewards/accuracies']);
    console.log(`DPO: loss ${res.metrics[0].loss.toFixed(4)} → ${res.metrics[29].loss.toFixed(4)}; train accuracy ${acc[0].toFixed(3)} → ${acc[29].toFixed(3)}; held-out accuracy ${before['eval/rewards/accuracies'].toFixed(3)} → ${after['eval/rewards/accuracies'].toFixed(3)}, margin ${after['eval/rewards/margins'].toFixed(3)}`);
    expect(before['eval/loss']).toBeCloseTo(LN2, 5);
    expect(after['eval/rewards/accuracies']).toBeGreaterThan(0.9);
    expect(acc.slice(-3).every((a) => a > 0.9)).toBe(true);
    expect(res.metrics[29].loss).toBeLessThan(LN2 - 0.1);
    expect(after['eval/rewards/margins']).toBeGreaterThan(0);
    expect(after['eval/rewards/chosen']).toBeGreaterThan(after['eval/rewards/rejected']);
  });

  test('micro-batches with gradient accumulation give the full batch gradient (with the RPO NLL term)', async () => {
    const rows = prefs(7, 4);
    const model = tinyLM(3);
    const params = model.parameters();
    const trainer = new DPOTrainer({ model, tokenizer: tok, trainDataset: rows, config: { sftWeight: 0.5 } });
    // Move the policy off the reference so the preference gradient is not the ln 2 point's.
    noGrad(() => { for (const p of params) p.add_(p.mul(0.05)); });
    const full = tidy(() => {
      const { loss } = trainer.computeLoss(collatePreference(tok, rows));
      loss.backward();
      return loss.item();
    });
    const g1 = grads(params);
    zeroGrads(params);
    let sum = 0;
    tidy(() => {
      const b = collatePreference(tok, rows);
      const T = b.chosenCompletionMask.shape[1];
      const chosenTokens = b.chosenCompletionMask.narrow(1, 1, T - 1).sum().item();
      for (const [s, e] of [[0, 2], [2, 3], [3, 7]]) {
        const sl = (t: typeof b.chosenIds) => t.narrow(0, s, e - s);
        const { loss } = trainer.computeLoss({
          chosenIds: sl(b.chosenIds), chosenMask: sl(b.chosenMask), chosenCompletionMask: sl(b.chosenCompletionMask),
          rejectedIds: sl(b.rejectedIds), rejectedMask: sl(b.rejectedMask), rejectedCompletionMask: sl(b.rejectedCompletionMask),
        }, { numPairs: 7, chosenTokens });
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

    // Through the trainer's step: microBatchSize 2 vs the whole batch, identical models.
    const run = async (microBatchSize: number) => (await new DPOTrainer({
      model: tinyLM(5), tokenizer: tok, trainDataset: prefs(14, 5),
      config: { maxSteps: 2, batchSize: 7, microBatchSize, sftWeight: 1, loggingSteps: 0, learningRate: 1e-2 },
    }).train()).metrics;
    const a = await run(0);
    const c = await run(2);
    for (let i = 0; i < 2; i++) {
      for (const k of ['loss', 'nll', 'rewards/accuracies', 'rewards/margins', 'logps/chosen']) expect(c[i][k], `step ${i + 1} ${k}`).toBeCloseTo(a[i][k], 5);
      expect(c[i].gradNorm / a[i].gradNorm).toBeCloseTo(1, 5);
    }
  });

  test('loss types, label smoothing and reference-free equal ALGORITHMS.md §7 on given reference log-probs', () => {
    const rows = prefs(5, 6);
    const beta = 0.3;
    const cases: [Partial<DPOConfig>, (dc: number, dr: number, lc: number, lr: number) => number][] = [
      [{ lossType: 'sigmoid' }, (dc, dr) => -logSigmoid(beta * (dc - dr))],
      [{ lossType: 'sigmoid', labelSmoothing: 0.2 }, (dc, dr) => -0.8 * logSigmoid(beta * (dc - dr)) - 0.2 * logSigmoid(-beta * (dc - dr))],
      [{ lossType: 'robust', labelSmoothing: 0.2 }, (dc, dr) => (-0.8 * logSigmoid(beta * (dc - dr)) + 0.2 * logSigmoid(-beta * (dc - dr))) / 0.6],
      [{ lossType: 'hinge' }, (dc, dr) => Math.max(0, 1 - beta * (dc - dr))],
      [{ lossType: 'ipo' }, (dc, dr, lc, lr) => (dc / lc - dr / lr - 1 / (2 * beta)) ** 2],
    ];
    const model = tinyLM(7);
    for (const [cfg, f] of cases) {
      const trainer = new DPOTrainer({ model, tokenizer: tok, trainDataset: rows, config: { beta, ...cfg } });
      tidy(() => {
        const b = collatePreference(tok, rows);
        const pol = noGrad(() => trainer.sequenceLogps(model, b));
        const pc = pol.chosen.toArray() as number[];
        const pr = pol.rejected.toArray() as number[];
        // Reference log-probs offset from the policy's by known amounts.
        const refChosenLogps = pol.chosen.sub(tensorOf([0.5, -1, 2, 0.1, -0.3]));
        const refRejectedLogps = pol.rejected.sub(tensorOf([-0.2, 0.7, 1, -2, 0.4]));
        const { loss, metrics } = trainer.computeLoss({ ...b, refChosenLogps, refRejectedLogps });
        const rc = refChosenLogps.toArray() as number[];
        const rr = refRejectedLogps.toArray() as number[];
        let want = 0;
        let acc = 0;
        pc.forEach((c, i) => {
          want += f(c - rc[i], pr[i] - rr[i], b.chosenLengths[i], b.rejectedLengths[i]);
          acc += c - rc[i] > pr[i] - rr[i] ? 1 : 0;
        });
        expect(loss.item(), JSON.stringify(cfg)).toBeCloseTo(want / pc.length, 5);
        if (cfg.lossType !== 'ipo') expect(metrics['rewards/accuracies']).toBeCloseTo(acc / pc.length, 6);
      });
    }
    // Reference-free: logπ_ref = 0, no reference model.
    const free = new DPOTrainer({ model, tokenizer: tok, trainDataset: rows, config: { beta, referenceFree: true } });
    expect(free.refModel).toBeNull();
    tidy(() => {
      const b = collatePreference(tok, rows);
      const pol = noGrad(() => free.sequenceLogps(model, b));
      const pc = pol.chosen.toArray() as number[];
      const pr = pol.rejected.toArray() as number[];
      const want = pc.reduce((s, c, i) => s - logSigmoid(beta * (c - pr[i])), 0) / pc.length;
      expect(free.computeLoss(b).loss.item()).toBeCloseTo(want, 5);
    });
  });

  test('resuming from a checkpoint continues exactly like the uninterrupted run', async () => {
    const rows = prefs(30, 8);
    const cfg = { maxSteps: 6, batchSize: 6, microBatchSize: 4, learningRate: 5e-3, saveSteps: 3, loggingSteps: 0, sftWeight: 0.1 };
    const dirA = tmpDir('dpo-a');
    const a = await new DPOTrainer({ model: tinyLM(9), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: dirA } }).train();
    // A fresh process would load the same base weights: the reference is the frozen copy of those.
    const b = await new DPOTrainer({ model: tinyLM(9), tokenizer: tok, trainDataset: rows, config: { ...cfg, outputDir: tmpDir('dpo-b'), resumeFrom: path.join(dirA, 'checkpoint-3') } }).train();
    expect(b.metrics.length).toBe(3);
    for (let i = 0; i < 3; i++) {
      for (const k of ['loss', 'nll', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'gradNorm', 'lr']) {
        expect(b.metrics[i][k], `step ${i + 4} ${k}`).toBe(a.metrics[i + 3][k]);
      }
    }
  });

  test('a dataset row missing `chosen` stops with the file and line', async () => {
    const dir = tmpDir('dpo-bad');
    const file = path.join(dir, 'prefs.jsonl');
    const good = prefs(3, 10).map((r) => JSON.stringify(r));
    fs.writeFileSync(file, [good[0], good[1], JSON.stringify({ prompt: 'ab>', rejected: 'bb' }), good[2]].join('\n') + '\n');
    const ds = await loadDataset(file);
    const trainer = new DPOTrainer({ model: tinyLM(10), tokenizer: tok, trainDataset: ds, config: { maxSteps: 2, batchSize: 2, loggingSteps: 0, shuffle: false } });
    await expect(trainer.train()).rejects.toThrow(/prefs\.jsonl:3: .*missing field 'chosen'/);
  });

  test('config: TRL defaults and validation (beta > 0, label smoothing per loss type, unknown keys)', () => {
    expect(DPO_SCHEMA.beta.default).toBe(0.1);
    expect(DPO_SCHEMA.learningRate.default).toBe(1e-6);
    expect(DPO_SCHEMA.lossType.default).toBe('sigmoid');
    expect(DPO_SCHEMA.sftWeight.trl).toBe('rpo_alpha');
    const model = tinyLM(11);
    const mk = (config: Record<string, unknown>) => () => new DPOTrainer({ model, tokenizer: tok, trainDataset: prefs(2, 1), config: config as Partial<DPOConfig> });
    expect(mk({ beta: 0 })).toThrow(/DPOConfig: option 'beta' must be a positive number, got 0/);
    expect(mk({ lossType: 'kto' })).toThrow(/lossType' must be one of 'sigmoid', 'ipo', 'hinge', 'robust'/);
    expect(mk({ lossType: 'hinge', labelSmoothing: 0.1 })).toThrow(/labelSmoothing' is used by lossType 'sigmoid' and 'robust' only/);
    expect(mk({ lossType: 'robust', labelSmoothing: 0.5 })).toThrow(/must be < 0.5/);
    expect(mk({ rpo_alpha: 1 })).toThrow(/unknown option 'rpo_alpha'.*Valid options: .*beta.*lossType.*sftWeight/);
    expect(() => new DPOTrainer({ model, refModel: tinyLM(12), tokenizer: tok, trainDataset: prefs(2, 1), config: { referenceFree: true } })).toThrow(/referenceFree/);
  });
});

function tensorOf(v: number[]) {
  return tensor(Float32Array.from(v));
}
