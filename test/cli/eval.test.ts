import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, expect, test, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { runGenerate } from '../../src/cli/generate.js';
import { runEval, type EvalRecord } from '../../src/cli/eval.js';
import { loadRewardModel, loadTokenizer, noGrad, tensor, tidy } from '../../src/index.js';
import { makeTinyModel, makeTinyRewardModel, tmpDir } from './tinyModel.js';

let model: string;
let work: string;
const quiet = { log: () => {}, info: () => {} };
const PROMPTS = ['12+3=', '7+8=', '100+250=', '5=', '1+1=', '2+2=', '3+4=', '9+9='];

/** The last number in a text (own implementation, independent of src/cli/rewards.ts). */
function lastNum(s: string): number | null {
  const all = s.match(/-?\d+(?:\.\d+)?/g);
  return all ? Number(all[all.length - 1]) : null;
}

function writeJsonl(name: string, rows: object[]): string {
  const f = path.join(work, name);
  fs.writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return f;
}

const readOut = (f: string): EvalRecord[] => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalRecord);

beforeAll(() => {
  model = makeTinyModel({ seed: 0 });
  work = tmpDir('eval');
});

afterEach(() => vi.restoreAllMocks());

test('greedy accuracy from runEval equals the fraction computed from runGenerate\'s completions; --out has one line per prompt', async () => {
  const gen = await runGenerate({ model, prompt: PROMPTS, maxNewTokens: 8, ...quiet });
  // Answers: the completion's own last number for even rows (correct), a number it does not end with for odd rows.
  const answers = gen.results.map((r, i) => {
    const n = lastNum(r.completion);
    return i % 2 === 0 && n !== null ? String(n) : '987654';
  });
  const expected = gen.results.filter((r, i) => lastNum(r.completion) === Number(answers[i])).length / PROMPTS.length;
  expect(expected).toBeGreaterThan(0); // a meaningful check: some right, some wrong
  expect(expected).toBeLessThan(1);
  const ds = writeJsonl('acc.jsonl', PROMPTS.map((prompt, i) => ({ prompt, answer: answers[i] })));
  const out = path.join(work, 'sub', 'results.jsonl');
  const s = await runEval({ model, dataset: ds, reward: ['accuracy', 'length'], maxNewTokens: 8, batchSize: 3, out, ...quiet });
  expect(s.prompts).toBe(PROMPTS.length);
  expect(s.completions).toBe(PROMPTS.length);
  expect(s.rewards.accuracy.mean).toBeCloseTo(expected, 12);
  expect(s.rewards.accuracy.binary).toBe(true);
  expect(s.rewards.accuracy.correct).toBeCloseTo(expected, 12);
  expect(s.rewards.accuracy.passAtK).toBeNull(); // K = 1
  expect(s.rewards.length.binary).toBe(false);
  expect(s.rewards.length.correct).toBeNull();
  const recs = readOut(out);
  expect(recs).toHaveLength(PROMPTS.length);
  recs.forEach((r, i) => {
    expect(r).toMatchObject({ index: i, sample: 0, prompt: PROMPTS[i], answer: answers[i], completion: gen.results[i].completion, tokens: gen.results[i].tokens, finishReason: gen.results[i].finishReason });
    expect(Object.keys(r.rewards).sort()).toEqual(['accuracy', 'length']);
    expect(r.rewards.length).toBeCloseTo(-Math.abs(gen.results[i].completion.length - 100) / 100, 12);
  });
  expect(s.rewards.accuracy.mean).toBeCloseTo(recs.filter((r) => r.rewards.accuracy === 1).length / recs.length, 12);
  const lens = gen.results.map((r) => r.tokens);
  expect(s.completionLength.mean).toBeCloseTo(lens.reduce((a, b) => a + b, 0) / lens.length, 12);
  expect(s.tokens).toBe(gen.tokens);
  expect(s.tokensPerSec).toBeGreaterThan(0);
  expect(fs.readdirSync(path.dirname(out))).toEqual(['results.jsonl']); // atomic write left no temp file
});

test('a reward from a user module gets completions and the trainers\' context; pass@K ≥ mean for 0/1 rewards with K samples', async () => {
  const mod = path.join(work, 'rewards.mjs');
  fs.writeFileSync(mod, [
    'export function promptLen(completions, ctx) { return completions.map((_, i) => ctx.prompts[i].length); }',
    'export function hasDigit(completions, ctx) { return completions.map((c, i) => (ctx.rows[i].skip ? null : /\\d/.test(c) ? 1 : 0)); }',
  ].join('\n'));
  const ds = writeJsonl('mod.jsonl', PROMPTS.map((prompt, i) => ({ prompt, answer: '1', skip: i === 0 })));
  const out = path.join(work, 'mod-results.jsonl');
  const K = 4;
  const s = await runEval({ model, dataset: ds, reward: [`${mod}#promptLen`, `${mod}#hasDigit`], numSamples: K, temperature: 1.5, seed: 3, maxNewTokens: 6, out, ...quiet });
  expect(s.completions).toBe(PROMPTS.length * K);
  // promptLen: every sample of a prompt sees that prompt.
  const meanPromptLen = PROMPTS.reduce((a, p) => a + p.length, 0) / PROMPTS.length;
  expect(s.rewards.promptLen.mean).toBeCloseTo(meanPromptLen, 12);
  expect(s.rewards.promptLen.binary).toBe(false);
  const recs = readOut(out);
  expect(recs).toHaveLength(PROMPTS.length * K);
  expect(recs.map((r) => [r.index, r.sample])).toEqual(PROMPTS.flatMap((_, i) => Array.from({ length: K }, (_, k) => [i, k])));
  // hasDigit: null for the first prompt's samples (not scored); pass@K and the mean match the lines.
  const hd = s.rewards.hasDigit;
  expect(hd.binary).toBe(true);
  expect(hd.scored).toBe((PROMPTS.length - 1) * K);
  expect(recs.filter((r) => r.index === 0).every((r) => r.rewards.hasDigit === null)).toBe(true);
  const scored = recs.filter((r) => r.index > 0);
  expect(hd.mean).toBeCloseTo(scored.filter((r) => r.rewards.hasDigit === 1).length / scored.length, 12);
  const passed = PROMPTS.slice(1).filter((_, j) => scored.some((r) => r.index === j + 1 && r.rewards.hasDigit === 1)).length;
  expect(hd.passAtK).toBeCloseTo(passed / (PROMPTS.length - 1), 12);
  expect(hd.passAtK!).toBeGreaterThanOrEqual(hd.mean);
  expect(hd.mean).toBeGreaterThan(0);
  expect(hd.mean).toBeLessThan(1); // sampled completions differ, so both values occur
  // The samples of one prompt are not all identical (sampling, not K copies of one completion).
  expect(new Set(recs.filter((r) => r.index === 1).map((r) => r.completion)).size).toBeGreaterThan(1);
});

test('--reward-model scores prompt + completion like the reward model on the unpadded sequence', async () => {
  const rmDir = makeTinyRewardModel(1);
  const ds = writeJsonl('rm.jsonl', PROMPTS.slice(0, 4).map((prompt) => ({ prompt })));
  const out = path.join(work, 'rm-results.jsonl');
  const s = await runEval({ model, dataset: ds, rewardModel: rmDir, maxNewTokens: 6, batchSize: 4, out, ...quiet });
  expect(Object.keys(s.rewards)).toEqual(['rewardModel']);
  const gen = await runGenerate({ model, prompt: PROMPTS.slice(0, 4), maxNewTokens: 6, ...quiet });
  const tok = loadTokenizer(model);
  const rm = loadRewardModel(rmDir);
  try {
    const want = gen.results.map((r) => noGrad(() => tidy(() => {
      const ids = [...tok.encode(r.renderedPrompt, { addSpecialTokens: false }), ...r.completionIds];
      return rm.score(tensor([ids], { dtype: 'int64' }), { attentionMask: tensor([ids.map(() => 1)], { dtype: 'int64' }) }).item();
    })));
    const got = readOut(out).map((r) => r.rewards.rewardModel!);
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 4));
    expect(s.rewards.rewardModel.mean).toBeCloseTo(want.reduce((a, b) => a + b, 0) / want.length, 4);
  } finally {
    rm.dispose();
  }
});

test('conversational rows are rendered with the chat template (as the trainers do)', async () => {
  const chatModel = makeTinyModel({ chat: true, seed: 0 });
  const ds = writeJsonl('chat.jsonl', [{ prompt: [{ role: 'user', content: '2+2=' }], answer: '4' }]);
  const s = await runEval({ model: chatModel, dataset: ds, reward: ['accuracy'], maxNewTokens: 4, out: path.join(work, 'chat-out.jsonl'), ...quiet });
  expect(s.prompts).toBe(1);
  const gen = await runGenerate({ model: chatModel, prompt: ['2+2='], chat: true, maxNewTokens: 4, ...quiet });
  expect(readOut(path.join(work, 'chat-out.jsonl'))[0].completion).toBe(gen.results[0].completion);
  await expect(runEval({ model, dataset: ds, reward: ['accuracy'], ...quiet })).rejects.toThrow(/--dataset: its rows are conversational.*no chat template/);
});

test('errors name the argument, what was expected and a fix', async () => {
  const ds = writeJsonl('err.jsonl', [{ prompt: '1+1=', answer: '2' }]);
  await expect(runEval({ model, dataset: ds, ...quiet })).rejects.toThrow(/give at least one --reward \(built-in: accuracy, format, length; or a module export like .*\) and\/or --reward-model DIR/);
  await expect(runEval({ model, dataset: ds, reward: ['acc'], ...quiet })).rejects.toThrow(/--reward acc: unknown reward 'acc'. Built-in rewards: accuracy, format, length/);
  await expect(runEval({ model, dataset: ds, reward: ['./nope.mjs#f'], ...quiet })).rejects.toThrow(/--reward \.\/nope\.mjs#f: cannot import/);
  await expect(runEval({ model, dataset: path.join(work, 'missing.jsonl'), reward: ['accuracy'], ...quiet })).rejects.toThrow(/--dataset .*missing\.jsonl: file not found .*expected a \.jsonl/);
  await expect(runEval({ model, dataset: ds, reward: ['accuracy'], numSamples: 0, ...quiet })).rejects.toThrow(/--num-samples: expected an integer ≥ 1, got 0/);
  await expect(runEval({ model, dataset: ds, reward: ['accuracy'], rewardModel: path.join(work, 'no-rm'), ...quiet })).rejects.toThrow(/--reward-model .*no-rm: .* does not exist/);
  // A causal LM is not a reward model: the loader's error, prefixed with the flag.
  await expect(runEval({ model, dataset: ds, rewardModel: model, ...quiet })).rejects.toThrow(/^--reward-model /);
  // JSON reward specs with options.
  const s = await runEval({ model, dataset: ds, reward: ['{"use":"format","pattern":"^","name":"always"}'], maxNewTokens: 2, ...quiet });
  expect(s.rewards.always.mean).toBe(1);
});

test('main([\'eval\', …]) wiring: exit code 0 with a table; bad options give a non-zero code', async () => {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { out.push(a.join(' ')); });
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => { err.push(a.join(' ')); });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const ds = writeJsonl('main.jsonl', PROMPTS.slice(0, 3).map((prompt) => ({ prompt, answer: '3' })));
  expect(await main(['eval', '--model', model, '--dataset', ds, '--reward', 'accuracy', '--reward', 'format', '--num-samples', '2', '--temperature', '1', '--seed', '0', '--max-new-tokens', '4', '--limit', '2'])).toBe(0);
  const text = out.join('\n');
  expect(text).toMatch(/reward\s+mean\s+std\s+min\s+max\s+correct\s+pass@2\s+scored/);
  expect(text).toMatch(/^accuracy\s/m);
  expect(text).toMatch(/^format\s/m);
  expect(text).toMatch(/2 prompts × 2 samples = 4 completions \(sampled at temperature 1\)/);
  expect(text).toMatch(/tokens\/s\)/);
  out.length = 0;
  expect(await main(['eval', '--model', model, '--dataset', ds, '--reward', 'accuracy', '--max-new-tokens', '2', '--json'])).toBe(0);
  expect(JSON.parse(out.join(''))).toMatchObject({ prompts: 3, numSamples: 1, completions: 3 });
  expect(await main(['eval', '--model', model, '--dataset', ds, '--reward', 'accuracy', '--num-samples', 'x'])).not.toBe(0);
  expect(await main(['eval', '--model', model, '--dataset', ds])).toBe(1);
  expect(err.join('\n')).toMatch(/llmrl: eval: nothing to score with/);
  expect(await main(['eval', '--model', model, '--reward', 'accuracy'])).not.toBe(0); // --dataset is required
});
