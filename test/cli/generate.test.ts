import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, expect, test, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { runGenerate } from '../../src/cli/generate.js';
import { loadCausalLM, loadTokenizer, memory, noGrad, tensor, tidy } from '../../src/index.js';
import { CHAT_TEMPLATE, makeTinyModel, tmpDir } from './tinyModel.js';

let plain: string; // char tokenizer without a chat template
let chat: string; //  same kind of model, tokenizer with a chat template
const quiet = { log: () => {}, info: () => {} };

beforeAll(() => {
  plain = makeTinyModel({ seed: 0 });
  chat = makeTinyModel({ chat: true, seed: 0 });
});

afterEach(() => vi.restoreAllMocks());

/** The model's own greedy continuation of one unpadded prompt, decoded directly. */
function directGreedy(dir: string, prompt: string, maxNewTokens: number): string {
  const tok = loadTokenizer(dir);
  const model = loadCausalLM(dir);
  try {
    return noGrad(() => tidy(() => {
      const ids = tok.encode(prompt, { addSpecialTokens: false });
      const out = model.generate(tensor([ids], { dtype: 'int64' }), { maxNewTokens, eosTokenId: tok.eosTokenId, padTokenId: tok.padTokenId });
      const row = (out.completionIds.toArray() as number[][])[0];
      const mask = (out.completionMask.toArray() as number[][])[0];
      return tok.decode(row.filter((_, t) => mask[t] === 1), { skipSpecialTokens: true });
    }));
  } finally {
    model.dispose();
  }
}

test('greedy runGenerate (batched, left-padded) equals the model\'s own greedy generate per prompt, and frees its tensors', async () => {
  const prompts = ['12+3=', '7+8=', '100+250=', '5='];
  const before = memory().liveTensors;
  const r = await runGenerate({ model: plain, prompt: prompts, maxNewTokens: 8, batchSize: 3, ...quiet });
  expect(memory().liveTensors).toBe(before);
  expect(r.results.map((x) => x.prompt)).toEqual(prompts);
  const direct = prompts.map((p) => directGreedy(plain, p, 8));
  expect(r.results.map((x) => x.completion)).toEqual(direct);
  // A meaningful comparison: the completions are not all empty and not all the same.
  expect(new Set(direct).size).toBeGreaterThan(1);
  for (const x of r.results) {
    expect(x.tokens).toBe(x.completionIds.length);
    expect(x.finishReason === 'eos' ? x.tokens <= 8 : x.tokens === 8).toBe(true);
  }
  expect(r.tokens).toBe(r.results.reduce((a, x) => a + x.tokens, 0));
  expect(r.tokensPerSec).toBeGreaterThan(0);
});

test('sampling: the same seed reproduces, different seeds differ', async () => {
  const prompts = ['1+1=', '2+2=', '3+3=', '4+4='];
  const run = async (seed: number) => (await runGenerate({ model: plain, prompt: prompts, maxNewTokens: 10, temperature: 1.5, seed, ...quiet })).results.map((x) => x.completion);
  const a = await run(1);
  const b = await run(1);
  const c = await run(2);
  expect(b).toEqual(a);
  expect(c).not.toEqual(a);
  // Sampling is not greedy.
  const greedy = (await runGenerate({ model: plain, prompt: prompts, maxNewTokens: 10, ...quiet })).results.map((x) => x.completion);
  expect([a, c].some((s) => JSON.stringify(s) !== JSON.stringify(greedy))).toBe(true);
});

test('--chat renders prompts with the chat template (and --system); without a template it errors clearly', async () => {
  const r = await runGenerate({ model: chat, prompt: ['2+2='], chat: true, system: 's1', maxNewTokens: 4, ...quiet });
  const tok = loadTokenizer(chat);
  expect(tok.chatTemplate).toBe(CHAT_TEMPLATE);
  expect(r.results[0].renderedPrompt).toBe('s:s1;u:2+2=;a:');
  expect(r.results[0].prompt).toBe('2+2=');
  await expect(runGenerate({ model: plain, prompt: ['2+2='], chat: true, ...quiet })).rejects.toThrow(/--chat: .*the tokenizer has no chat template.*drop --chat/);
  await expect(runGenerate({ model: chat, prompt: ['2+2='], system: 'x', ...quiet })).rejects.toThrow(/--system: .*add --chat/);
});

test('--json prints one line per prompt {prompt, completion, tokens, finishReason}; --prompts-file adds prompts', async () => {
  const lines: string[] = [];
  const info: string[] = [];
  const file = path.join(tmpDir('prompts'), 'p.jsonl');
  fs.writeFileSync(file, `${JSON.stringify({ prompt: '9+9=' })}\n${JSON.stringify({ prompt: '3+4=', answer: '7' })}\n`);
  const r = await runGenerate({ model: plain, prompt: ['1+2='], promptsFile: file, maxNewTokens: 5, json: true, log: (l) => lines.push(l), info: (l) => info.push(l) });
  expect(lines).toHaveLength(3);
  const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  objs.forEach((o, i) => {
    expect(Object.keys(o).sort()).toEqual(['completion', 'finishReason', 'prompt', 'tokens']);
    expect(o.prompt).toBe(['1+2=', '9+9=', '3+4='][i]);
    expect(o.completion).toBe(r.results[i].completion);
    expect(typeof o.tokens).toBe('number');
    expect(['eos', 'length']).toContain(o.finishReason);
  });
  // The summary goes to stderr, so stdout stays JSON lines.
  expect(info.at(-1)).toMatch(/^3 completions, \d+ tokens in [\d.]+ s \([\d.]+ tokens\/s\)$/);
});

test('bad --model paths and bad options give clear errors', async () => {
  await expect(runGenerate({ model: '/nonexistent/model', prompt: ['1'], ...quiet })).rejects.toThrow(/--model \/nonexistent\/model: expected a model folder .* does not exist/);
  const empty = tmpDir('empty');
  await expect(runGenerate({ model: empty, prompt: ['1'], ...quiet })).rejects.toThrow(/--model .*: the folder has no tokenizer.json; pass --tokenizer DIR/);
  // A folder with a tokenizer but no weights: the loader's error, prefixed with the flag.
  const tokOnly = tmpDir('tokonly');
  loadTokenizer(plain).save(tokOnly);
  await expect(runGenerate({ model: tokOnly, prompt: ['1'], ...quiet })).rejects.toThrow(/^--model .*config\.json/);
  await expect(runGenerate({ model: plain, ...quiet })).rejects.toThrow(/no prompts; give --prompt/);
  await expect(runGenerate({ model: plain, prompt: ['1'], temperature: -1, ...quiet })).rejects.toThrow(/--temperature: expected a number ≥ 0/);
  await expect(runGenerate({ model: plain, prompt: ['1'], topK: 5, ...quiet })).rejects.toThrow(/--top-k only applies when sampling.*--temperature > 0/);
});

test('main([\'generate\', …]) wiring: exit code 0, human output; bad options give a non-zero code', async () => {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { out.push(a.join(' ')); });
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => { err.push(a.join(' ')); });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  expect(await main(['generate', '--model', plain, '--prompt', '1+2=', '--prompt', '3+4=', '--max-new-tokens', '4', '--threads', '1'])).toBe(0);
  expect(out.filter((l) => l.startsWith('### ['))).toHaveLength(2);
  expect(out.at(-1)).toMatch(/^2 completions, /);
  expect(await main(['generate', '--model', plain, '--prompt', '1', '--max-new-tokens', 'many'])).not.toBe(0);
  expect(await main(['generate', '--model', '/nonexistent', '--prompt', '1'])).toBe(1);
  expect(err.join('\n')).toMatch(/llmrl: --model \/nonexistent: /);
  expect(await main(['generate', '--prompt', '1'])).not.toBe(0); // --model is required
});
