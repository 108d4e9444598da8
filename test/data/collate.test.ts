// Tokenisation and collators: chat-template rendering (as TRL), truncation rules, padding sides,
// masks, EOS appended, SFT labels, overlong rows (error naming file:line, or counted skip).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import {
  collatePreference, collatePromptCompletion, collatePrompts, collateSFT, createCharTokenizer, loadDataset,
  loadTokenizer, renderCompletion, renderPrompt, tidy, type Tensor,
} from '../../src/index.js';

const FIX = path.join(__dirname, '..', 'fixtures', 'tokenizers');
const bl = loadTokenizer(path.join(FIX, 'bytelevel')); // ChatML template, eos <|im_end|>, pad <|endoftext|>
const ms = loadTokenizer(path.join(FIX, 'metaspace')); // Llama-2 template, BOS <s> added, no pad (pads with EOS)
const ch = createCharTokenizer('abcdefghijklmnopqrstuvwxyz ?=0123456789+:\n', {
  chatTemplate: "{% for m in messages %}{{ m['role'][0] + ':' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'a:' }}{% endif %}",
});
const PAD = 0;
const EOS = 2;
const enc = (s: string): number[] => ch.encode(s, { addSpecialTokens: false });
const arr = (t: Tensor): number[][] => t.toArray() as number[][];
const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });
const SYS = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-collate-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('chat-template rendering (TRL)', () => {
  test('prompt with the generation prompt; completion is the suffix of prompt+completion', () => {
    const prompt = [user('What is 2+2?')];
    const p = renderPrompt(bl, prompt);
    expect(p).toBe(`${SYS}<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n`);
    expect(renderCompletion(bl, prompt, [assistant('4')], p, 'completion')).toBe('4<|im_end|>\n');
    const mp = renderPrompt(ms, prompt);
    expect(mp).toBe('<s>[INST] What is 2+2? [/INST]');
    expect(renderCompletion(ms, prompt, [assistant('4')], mp, 'completion')).toBe(' 4 </s>');
    expect(renderPrompt(bl, 'plain')).toBe('plain');
  });

  test('a prompt ending with an assistant turn is continued (continue_final_message)', () => {
    expect(renderPrompt(bl, [user('Q'), assistant('The answer is ')])).toBe(`${SYS}<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nThe answer is `);
    expect(renderPrompt(ms, [user('Q'), assistant('Sure, ')])).toBe('<s>[INST] Q [/INST] Sure, ');
    expect(renderPrompt(ms, [user('Q'), assistant('  Sure')])).toBe('<s>[INST] Q [/INST] Sure');
    expect(renderPrompt(ms, [user('Q'), assistant(' Sure, ')])).toBe('<s>[INST] Q [/INST] Sure,');
  });

  test('a conversational dataset from a JSONL file collates with the template', async () => {
    const file = path.join(dir, 'conv.jsonl');
    fs.writeFileSync(file, [
      { prompt: [user('What is 2+2?')], answer: '4' },
      { messages: [user('Hi'), assistant('Hello')] },
    ].map((r) => JSON.stringify(r)).join('\n'));
    const rows = await (await loadDataset(file, { format: 'prompt', skipMalformed: true })).toArray();
    expect(rows.length).toBe(1);
    const b = collatePrompts(bl, rows);
    expect(b.prompts[0]).toBe(`${SYS}<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n`);
    expect(arr(b.promptIds)[0]).toEqual(bl.encode(b.prompts[0], { addSpecialTokens: false }));
    expect(b.rows[0].answer).toBe('4');
    // messages rows: the prompt is the conversation before the final assistant turn.
    const m = collatePrompts(bl, [{ messages: [user('Hi'), assistant('Hello')] }]);
    expect(m.prompts[0]).toBe(`${SYS}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`);
  });
});

describe('collatePrompts', () => {
  const rows = [{ prompt: 'ab', answer: '1' }, { prompt: 'abcde' }, { prompt: 'c' }];

  test('left-padded [B, P] int64 prompts, masks, rows passed through', () => {
    const b = collatePrompts(ch, rows);
    expect(b.promptIds.shape).toEqual([3, 5]);
    expect(b.promptIds.dtype).toBe('int64');
    expect(b.promptMask.dtype).toBe('int64');
    expect(arr(b.promptIds)).toEqual([[PAD, PAD, PAD, ...enc('ab')], enc('abcde'), [PAD, PAD, PAD, PAD, ...enc('c')]]);
    expect(arr(b.promptMask)).toEqual([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]);
    expect(b.promptLengths).toEqual([2, 5, 1]);
    expect(b.rows).toEqual(rows);
    expect(b.rows[0]).toBe(rows[0]);
    expect(b.skipped).toEqual([]);
  });

  test('maxPromptLength keeps the end of the prompt; special tokens only on request', () => {
    const b = collatePrompts(ch, rows, { maxPromptLength: 3 });
    expect(arr(b.promptIds)[1]).toEqual(enc('cde'));
    const m = collatePrompts(ms, [{ prompt: 'hello' }], { addSpecialTokens: true, maxPromptLength: 100 });
    expect(arr(m.promptIds)[0][0]).toBe(ms.bosTokenId);
    expect(arr(collatePrompts(ms, [{ prompt: 'hello' }]).promptIds)[0]).toEqual(ms.encode('hello', { addSpecialTokens: false }));
  });

  test('a prompt longer than the context: error naming file:line, or skipped and counted', async () => {
    const file = path.join(dir, 'long.jsonl');
    fs.writeFileSync(file, ['{"prompt": "ab"}', '{"prompt": "abcdefghij"}', '{"prompt": "abc"}'].join('\n'));
    const ds = await loadDataset(file);
    const got = await ds.toArray();
    expect(() => collatePrompts(ch, got, { contextLength: 8, maxCompletionLength: 4 }))
      .toThrow(`collatePrompts: ${file}:2: the prompt is 10 tokens, which with 4 completion tokens exceeds the context of 8; set maxPromptLength ≤ 4 to keep its end (or pass overlong: 'skip' to drop such rows)`);
    const b = collatePrompts(ch, got, { contextLength: 8, maxCompletionLength: 4, overlong: 'skip' });
    expect(b.promptIds.shape).toEqual([2, 3]);
    expect(b.rows.map((r) => r.prompt)).toEqual(['ab', 'abc']);
    expect(b.skipped).toEqual([{ index: 1, where: `${file}:2`, reason: expect.stringContaining('the prompt is 10 tokens') }]);
    // Left truncation makes it fit.
    expect(collatePrompts(ch, got, { contextLength: 8, maxCompletionLength: 4, maxPromptLength: 4 }).promptIds.shape).toEqual([3, 4]);
    // The tokenizer's model_max_length is the default context.
    expect(() => collatePrompts(bl, [{ prompt: 'a '.repeat(33000) }])).toThrow(/exceeds the context of 32768/);
  });

  test('bad rows and options are clear errors', () => {
    expect(() => collatePrompts(ch, [{ prompt: '' }])).toThrow(/rows\[0\]: the prompt encodes to 0 tokens/);
    expect(() => collatePrompts(ch, [{ text: 'x' }])).toThrow(/rows\[0\]: text rows have no prompt/);
    expect(() => collatePrompts(ch, [{ prompt: 'a' }, { prompt: 3 }])).toThrow("collatePrompts: rows[1]: field 'prompt' must be a string or a list of {role, content} messages, got number");
    expect(() => collatePrompts(ch, [])).toThrow(/non-empty array/);
    expect(() => collatePrompts(ch, [{ prompt: 'a' }], { maxLength: 3 } as object)).toThrow(/unknown option 'maxLength'/);
    expect(() => collatePrompts(ch, [{ prompt: 'a' }], { maxPromptLength: 0 })).toThrow(/'maxPromptLength' must be an integer ≥ 1/);
  });
});

describe('collatePromptCompletion', () => {
  test('left-padded prompts, right-padded completions with EOS, masks', () => {
    const b = collatePromptCompletion(ch, [{ prompt: 'ab', completion: 'xyz' }, { prompt: 'abc', completion: 'q' }]);
    expect(arr(b.promptIds)).toEqual([[PAD, ...enc('ab')], enc('abc')]);
    expect(arr(b.promptMask)).toEqual([[0, 1, 1], [1, 1, 1]]);
    expect(arr(b.completionIds)).toEqual([[...enc('xyz'), EOS], [...enc('q'), EOS, PAD, PAD]]);
    expect(arr(b.completionMask)).toEqual([[1, 1, 1, 1], [1, 1, 0, 0]]);
    expect(b.completionLengths).toEqual([4, 2]);
    const t = collatePromptCompletion(ch, [{ prompt: 'ab', completion: 'xyz' }], { maxCompletionLength: 2, appendEos: true });
    expect(arr(t.completionIds)).toEqual([enc('xy')]);
    const n = collatePromptCompletion(ch, [{ prompt: 'ab', completion: 'xyz' }], { appendEos: false });
    expect(arr(n.completionIds)).toEqual([enc('xyz')]);
  });

  test('conversational: completion rendered as the template suffix, plus EOS (TRL)', () => {
    const b = collatePromptCompletion(bl, [{ prompt: [user('Hi')], completion: [assistant('Hello')] }, { messages: [user('Q'), assistant('A')] }]);
    const ids = arr(b.completionIds);
    const mask = arr(b.completionMask);
    const first = ids[0].filter((_, t) => mask[0][t] === 1);
    expect(bl.decode(first)).toBe('Hello<|im_end|>\n<|im_end|>');
    expect(bl.decode(ids[1].filter((_, t) => mask[1][t] === 1))).toBe('A<|im_end|>\n<|im_end|>');
    expect(() => collatePromptCompletion(bl, [{ messages: [user('Q')] }])).toThrow(/missing field 'completion'/);
  });
});

describe('collatePreference', () => {
  const row = { prompt: 'ab', chosen: 'xyz', rejected: 'q', margin: 1.5 };

  test('full sequences, shared length, attention and completion masks, EOS appended', () => {
    const b = collatePreference(ch, [row, { prompt: 'abcd', chosen: 'x', rejected: 'qq', margin: -1 }]);
    expect(b.chosenIds.shape).toEqual([2, 7]);
    expect(b.rejectedIds.shape).toEqual([2, 7]);
    expect(arr(b.chosenIds)).toEqual([[...enc('abxyz'), EOS, PAD], [...enc('abcdx'), EOS, PAD]]);
    expect(arr(b.chosenMask)).toEqual([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0]]);
    expect(arr(b.chosenCompletionMask)).toEqual([[0, 0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 0]]);
    expect(arr(b.rejectedIds)).toEqual([[...enc('abq'), EOS, PAD, PAD, PAD], [...enc('abcdqq'), EOS]]);
    expect(arr(b.rejectedMask)).toEqual([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]);
    expect(arr(b.rejectedCompletionMask)).toEqual([[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]]);
    expect(b.margin!.toArray()).toEqual([1.5, -1]);
    expect(b.margin!.dtype).toBe('float32');
    expect(b.promptLengths).toEqual([2, 4]);
    expect(b.chosenLengths).toEqual([4, 2]);
    expect(b.rejectedLengths).toEqual([2, 3]);
  });

  test('truncation: prompt end kept, completion start kept, maxLength keep_end / keep_start', () => {
    const long = { prompt: 'abcdef', chosen: 'xyz', rejected: 'qr' };
    const b = collatePreference(ch, [long], { maxPromptLength: 2, maxCompletionLength: 2 });
    expect(arr(b.chosenIds)).toEqual([enc('efxy')]);
    expect(arr(b.rejectedIds)).toEqual([enc('efqr')]);
    const end = collatePreference(ch, [long], { maxLength: 5 });
    expect(arr(end.chosenIds)).toEqual([[...enc('fxyz'), EOS]]);
    expect(arr(end.chosenCompletionMask)).toEqual([[0, 1, 1, 1, 1]]);
    const start = collatePreference(ch, [long], { maxLength: 8, truncationMode: 'keep_start' });
    expect(arr(start.chosenIds)).toEqual([enc('abcdefxy')]);
    expect(arr(start.chosenCompletionMask)).toEqual([[0, 0, 0, 0, 0, 0, 1, 1]]);
    expect(() => collatePreference(ch, [long], { maxLength: 4, truncationMode: 'keep_start' })).toThrow(/rows\[0\]: no chosen token is left after truncation/);
    const skipped = collatePreference(ch, [long, row], { maxLength: 4, truncationMode: 'keep_start', overlong: 'skip' });
    expect(skipped.skipped.map((s) => s.index)).toEqual([0]);
    expect(skipped.chosenIds.shape[0]).toBe(1);
    expect(() => collatePreference(ch, [long], { contextLength: 6 })).toThrow(/prompt \+ chosen is 10 tokens, longer than the context of 6/);
  });

  test('implicit prompts, conversational pairs, missing fields', () => {
    const b = collatePreference(ch, [{ chosen: 'the sky is blue', rejected: 'the sky is red' }]);
    expect(b.promptLengths).toEqual([enc('the sky is').length]);
    expect(b.margin).toBeUndefined();
    const c = collatePreference(bl, [{ prompt: [user('2+2?')], chosen: [assistant('4')], rejected: [assistant('5')] }]);
    const ids = arr(c.chosenIds)[0];
    const m = arr(c.chosenCompletionMask)[0];
    expect(bl.decode(ids.filter((_, t) => m[t] === 1))).toBe('4<|im_end|>\n<|im_end|>');
    expect(bl.decode(ids.filter((_, t) => m[t] === 0 && arr(c.chosenMask)[0][t] === 1))).toBe(`${SYS}<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n`);
    expect(() => collatePreference(ch, [{ prompt: 'a', rejected: 'b' }])).toThrow("collatePreference: rows[0]: missing field 'chosen' (preference rows need prompt, chosen, rejected)");
    expect(() => collatePreference(ch, [row, { prompt: 'a', chosen: 'b', rejected: 'c' }])).toThrow(/1 of 2 rows have a 'margin'/);
    expect(() => collatePreference(ch, [{ prompt: 'a', completion: 'b' }])).toThrow("collatePreference: rows[0]: missing field 'chosen'");
  });
});

describe('collateSFT', () => {
  test('prompt+completion: loss on completion tokens only (TRL default), EOS appended, labels -100', () => {
    const b = collateSFT(ch, [{ prompt: 'ab', completion: 'cd' }, { prompt: 'a', completion: 'b' }]);
    expect(arr(b.inputIds)).toEqual([[...enc('abcd'), EOS], [...enc('ab'), EOS, PAD, PAD]]);
    expect(arr(b.attentionMask)).toEqual([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
    expect(arr(b.lossMask)).toEqual([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]);
    expect(arr(b.labels)).toEqual([[-100, -100, ...enc('cd'), EOS], [-100, ...enc('b'), EOS, -100, -100]]);
    expect(b.lengths).toEqual([5, 3]);
    const all = collateSFT(ch, [{ prompt: 'ab', completion: 'cd' }], { completionOnlyLoss: false });
    expect(arr(all.lossMask)).toEqual([[1, 1, 1, 1, 1]]);
    // BOS from the tokenizer's post-processor, as TRL's SFT (add_special_tokens=True).
    const m = collateSFT(ms, [{ prompt: 'hello', completion: ' world' }]);
    expect(arr(m.inputIds)[0][0]).toBe(ms.bosTokenId);
    expect(arr(m.inputIds)[0].at(-1)).toBe(ms.eosTokenId);
  });

  test('text rows: every token; messages: every token, or the assistant turns', () => {
    const t = collateSFT(ch, [{ text: 'abc' }, { text: `ab${'<eos>'}` }]);
    expect(arr(t.inputIds)).toEqual([[...enc('abc'), EOS], [...enc('ab'), EOS, PAD]]);
    expect(arr(t.lossMask)).toEqual([[1, 1, 1, 1], [1, 1, 1, 0]]);
    const conv = [user('Hi'), assistant('Hello'), user('2+2?'), assistant('4')];
    const full = collateSFT(bl, [{ messages: conv }]);
    expect(arr(full.inputIds)[0]).toEqual(bl.applyChatTemplate(conv, { tokenize: true }));
    expect(arr(full.lossMask)[0].every((v) => v === 1)).toBe(true);
    const only = collateSFT(bl, [{ messages: conv }], { assistantOnlyLoss: true });
    const ids = arr(only.inputIds)[0];
    const mask = arr(only.lossMask)[0];
    expect(bl.decode(ids.filter((_, i) => mask[i] === 1))).toBe('Hello<|im_end|>\n4<|im_end|>\n');
    // Conversational prompt+completion: mask after the rendered prompt.
    const pc = collateSFT(bl, [{ prompt: [user('2+2?')], completion: [assistant('4')] }]);
    const pm = arr(pc.lossMask)[0];
    expect(bl.decode(arr(pc.inputIds)[0].filter((_, i) => pm[i] === 1))).toBe('4<|im_end|>\n');
  });

  test('maxLength keeps the start; a row with no target left is an error or a counted skip', () => {
    const b = collateSFT(ch, [{ prompt: 'ab', completion: 'cdef' }], { maxLength: 4 });
    expect(arr(b.inputIds)).toEqual([enc('abcd')]);
    expect(arr(b.lossMask)).toEqual([[0, 0, 1, 1]]);
    expect(() => collateSFT(ch, [{ prompt: 'abcd', completion: 'e' }], { maxLength: 4 })).toThrow(/no completion token is left after truncation to maxLength 4/);
    const s = collateSFT(ch, [{ prompt: 'abcd', completion: 'e' }, { prompt: 'a', completion: 'b' }], { maxLength: 4, overlong: 'skip' });
    expect(s.skipped.length).toBe(1);
    expect(s.inputIds.shape).toEqual([1, 3]);
    expect(() => collateSFT(ch, [{ text: 'abcdef' }], { contextLength: 4 })).toThrow(/the sequence is 7 tokens, longer than the context of 4; set maxLength ≤ 4/);
    expect(() => collateSFT(ch, [{ prompt: 'a' }])).toThrow(/SFT needs text, prompt\+completion or messages rows, got prompt rows/);
  });

  test('collators work inside tidy: returned tensors survive, nothing else leaks', () => {
    const b = tidy(() => collateSFT(ch, [{ text: 'abc' }]));
    expect(b.inputIds.isDisposed).toBe(false);
    expect(arr(b.inputIds)).toEqual([[...enc('abc'), EOS]]);
    for (const t of [b.inputIds, b.attentionMask, b.lossMask, b.labels]) t.dispose();
  });
});
