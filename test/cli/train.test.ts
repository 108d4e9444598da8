import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, test, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { runTrain, applySets } from '../../src/cli/train.js';
import { accuracyReward, formatReward, lastNumber, lengthReward } from '../../src/cli/rewards.js';
import { svgChart } from '../../src/cli/report.js';
import { runGenerate } from '../../src/cli/generate.js';
import { createCharTokenizer, loadTokenizer } from '../../src/tokenizer/index.js';

const EXAMPLE = path.resolve('examples/grpo-tiny.json');

afterEach(() => vi.restoreAllMocks());

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `llmrl-cli-${prefix}-`));
}

function quiet(): { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { out.push(a.join(' ')); });
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => { err.push(a.join(' ')); });
  return { out, err };
}

test('llmrl train grpo --config examples/grpo-tiny.json runs, writes metrics.jsonl, report.html and a checkpoint', async () => {
  const dir = tmp('grpo');
  const { out } = quiet();
  const code = await main(['train', 'grpo', '--config', EXAMPLE, '--set', `trainer.outputDir=${dir}`, '--set', 'trainer.maxSteps=2']);
  expect(code).toBe(0);
  const metrics = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  expect(metrics.map((m) => m.step)).toEqual([1, 2]);
  expect(metrics[0]).toHaveProperty('reward/mean');
  expect(metrics[0]).toHaveProperty('reward/accuracy');
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  expect(html).toMatch(/<svg[^>]*>/);
  expect(html).toContain('Reward');
  expect(html).toContain('Clip fraction');
  expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
  expect(fs.existsSync(path.join(dir, 'checkpoint-2', 'model', 'config.json'))).toBe(true);
  expect(out.some((l) => /^step 1\/2 /.test(l))).toBe(true);
  // The checkpoint's model folder is complete (weights, config, tokenizer): generate/eval take it as it is.
  const model = path.join(dir, 'checkpoint-2', 'model');
  const gen = await runGenerate({ model, prompt: ['12+30='], maxNewTokens: 4, log: () => {}, info: () => {} });
  expect(gen.results).toHaveLength(1);
  expect(loadTokenizer(model).encode('12+30=')).toEqual(createCharTokenizer(JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')).tokenizer.char).encode('12+30='));
  expect(out.join('\n')).toMatch(/metric\s+first\s+last\s+mean/);
}, 120_000);

test('--json lines, and an aborted run resumes with --resume to maxSteps', async () => {
  const dir = tmp('resume');
  const ac = new AbortController();
  const lines: string[] = [];
  const sets = [`trainer.outputDir=${dir}`, 'trainer.maxSteps=3'];
  const first = await runTrain('gspo', { config: EXAMPLE, set: [...sets, 'trainer.beta=0'], json: true, signal: ac.signal, log: (l) => { lines.push(l); if (l.includes('"step":1')) ac.abort(); } });
  expect(first.stoppedEarly).toBe(true);
  expect(first.steps).toBe(1);
  expect(JSON.parse(lines[0])).toMatchObject({ step: 1 });
  expect(fs.existsSync(path.join(dir, 'checkpoint-1'))).toBe(true);
  const second = await runTrain('gspo', { config: EXAMPLE, set: [...sets, 'trainer.beta=0'], resume: true, log: () => {} });
  expect(second.stoppedEarly).toBe(false);
  expect(second.steps).toBe(3);
  const steps = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
  expect(steps).toEqual([1, 2, 3]);
}, 120_000);

test('a bad trainer key is rejected naming the key and the valid options', async () => {
  const { err } = quiet();
  const code = await main(['train', 'grpo', '--config', EXAMPLE, '--set', 'trainer.num_generations=4']);
  expect(code).toBe(1);
  const msg = err.join('\n');
  expect(msg).toMatch(/GRPOConfig: unknown option 'num_generations' — did you mean 'numGenerations'\?/);
  expect(msg).toMatch(/Valid options: .*learningRate.*numGenerations.*importanceSampling/);
  await expect(runTrain('grpo', { config: EXAMPLE, set: ['trainer.learningRate="fast"'] })).rejects.toThrow(/option 'learningRate' must be a number/);
  await expect(runTrain('grpo', { config: EXAMPLE, set: ['modle.x=1'] })).rejects.toThrow(/unknown section 'modle'. Valid sections: model, tokenizer/);
  await expect(runTrain('grpox', { config: EXAMPLE })).rejects.toThrow(/unknown algorithm 'grpox'. Valid: sft, reward, ppo, dpo, grpo, gspo/);
  await expect(runTrain('grpo', { config: EXAMPLE, set: ['rewards=["acc"]'] })).rejects.toThrow(/unknown reward 'acc'. Built-in rewards: accuracy, format, length/);
});

test('built-in rewards and --set parsing', () => {
  expect(lastNumber('so 12 + 3 = 1,234.5 ')).toBe(1234.5);
  const ctx = { prompts: [], completionIds: [], step: 0, rows: [{ answer: '#### 42' }, { answer: 42 }, { answer: '7' }, {}] };
  expect(accuracyReward()(['it is 42', '41', 'x7', 'no'], ctx)).toEqual([1, 0, 1, null]);
  expect(formatReward({ pattern: '^\\d+$' })(['12', '1a'], ctx)).toEqual([1, 0]);
  expect(lengthReward({ target: 4 })(['abcd', 'ab'], ctx)).toEqual([-0, -0.5]);
  const cfg: Record<string, unknown> = { trainer: { a: 1 } };
  applySets(cfg, ['trainer.learningRate=1e-5', 'trainer.outputDir=runs/x', 'model.create.hidden_size=64']);
  expect(cfg).toEqual({ trainer: { a: 1, learningRate: 1e-5, outputDir: 'runs/x' }, model: { create: { hidden_size: 64 } } });
  expect(svgChart('Loss', ['loss'], [{ label: 'a', rows: [{ step: 1, loss: 2 }, { step: 2, loss: 1 }] }])).toMatch(/^<svg.*<path d="M[^"]+L[^"]+"/);
  expect(svgChart('Loss', ['loss'], [{ label: 'a', rows: [{ step: 1, x: 2 }] }])).toBeNull();
});

for (const algo of ['sft', 'reward', 'dpo', 'ppo'] as const) {
  test(`llmrl train ${algo} --config examples/${algo}-tiny.json runs 2 steps`, async () => {
    const dir = tmp(algo);
    const { err } = quiet();
    const code = await main(['train', algo, '--config', path.resolve(`examples/${algo}-tiny.json`), '--set', `trainer.outputDir=${dir}`, '--set', 'trainer.maxSteps=2']);
    expect(err.join('\n')).toBe('');
    expect(code).toBe(0);
    const steps = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(steps).toHaveLength(2);
    expect(Number.isFinite(steps[1].loss)).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'report.html'), 'utf8')).toContain('<svg');
    expect(fs.existsSync(path.join(dir, 'checkpoint-2'))).toBe(true);
  }, 120_000);
}

test('YAML configs work like JSON ones (examples/grpo-tiny.yaml)', async () => {
  const dir = tmp('grpo-yaml');
  quiet();
  const code = await main(['train', 'grpo', '--config', path.resolve('examples/grpo-tiny.yaml'), '--set', `trainer.outputDir=${dir}`, '--set', 'trainer.maxSteps=1']);
  expect(code).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
});
