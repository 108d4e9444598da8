import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createCharTokenizer, loadTokenizer, tidy, type ChatMessage } from '../../src/index.js';

const FIX = path.join(__dirname, '..', 'fixtures', 'tokenizers');
interface Expected {
  encode: { text: string; ids: number[]; ids_no_special: number[]; decoded: string; decoded_skip: string }[];
  chat: { template: string; messages: ChatMessage[]; add_generation_prompt: boolean; text: string; ids: number[] }[];
}
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as Record<string, Expected>;

for (const name of ['bytelevel', 'metaspace']) {
  describe(`${name} tokenizer (fixture made by transformers)`, () => {
    const tok = loadTokenizer(path.join(FIX, name));
    const exp = expected[name];

    test('encodes and decodes exactly as transformers', () => {
      for (const e of exp.encode) {
        expect(tok.encode(e.text), JSON.stringify(e.text)).toEqual(e.ids);
        expect(tok.encode(e.text, { addSpecialTokens: false })).toEqual(e.ids_no_special);
        expect(tok.decode(e.ids)).toBe(e.decoded);
        expect(tok.decode(e.ids, { skipSpecialTokens: true })).toBe(e.decoded_skip);
      }
    });

    test('chat templates render exactly as apply_chat_template', () => {
      for (const c of exp.chat) {
        const opts = { addGenerationPrompt: c.add_generation_prompt, chatTemplate: c.template === 'default' ? undefined : c.template };
        expect(tok.applyChatTemplate(c.messages, opts)).toBe(c.text);
        expect(tok.applyChatTemplate(c.messages, { ...opts, tokenize: true })).toEqual(c.ids);
      }
    });
  });
}

describe('special tokens, padding, errors', () => {
  test('special tokens and padding side come from tokenizer_config.json', () => {
    const bl = loadTokenizer(path.join(FIX, 'bytelevel'));
    expect(bl.eosToken).toBe('<|im_end|>');
    expect(bl.padTokenId).toBe(bl.tokenToId('<|endoftext|>'));
    expect(bl.paddingSide).toBe('left');
    const ms = loadTokenizer(path.join(FIX, 'metaspace'));
    expect(ms.bosTokenId).toBe(ms.tokenToId('<s>'));
    expect(ms.padTokenId).toBe(ms.eosTokenId); // no pad token: falls back to EOS
  });

  test('encodeBatch pads left or right into int64 tensors with masks', () => tidy(() => {
    const tok = loadTokenizer(path.join(FIX, 'bytelevel'));
    const a = tok.encode('Hello world');
    const b = tok.encode('What is 12 + 35?');
    const { inputIds, attentionMask, lengths } = tok.encodeBatch(['Hello world', 'What is 12 + 35?']);
    const T = Math.max(a.length, b.length);
    expect(inputIds.shape).toEqual([2, T]);
    expect(inputIds.dtype).toBe('int64');
    expect(lengths).toEqual([a.length, b.length]);
    const ids = inputIds.toArray() as number[][];
    const mask = attentionMask.toArray() as number[][];
    const short = a.length < b.length ? 0 : 1;
    const shortIds = short === 0 ? a : b;
    expect(ids[short].slice(T - shortIds.length)).toEqual(shortIds); // left padding
    expect(mask[short].slice(0, T - shortIds.length).every((m) => m === 0)).toBe(true);
    const right = tok.encodeBatch(['Hello world', 'What is 12 + 35?'], { paddingSide: 'right', maxLength: 3, truncation: true });
    expect(right.inputIds.shape).toEqual([2, 3]);
    expect((right.inputIds.toArray() as number[][])[0]).toEqual(a.slice(0, 3));
  }));

  test('clear errors for a missing folder, a missing chat template, bad messages', () => {
    expect(() => loadTokenizer('/nonexistent/dir')).toThrow(/tokenizer\.json not found/);
    const ch = createCharTokenizer('ab');
    expect(() => ch.applyChatTemplate([{ role: 'user', content: 'a' }])).toThrow(/no chat_template/);
    const bl = loadTokenizer(path.join(FIX, 'bytelevel'));
    expect(() => bl.applyChatTemplate([{ content: 'x' } as unknown as ChatMessage])).toThrow(/messages\[0\] must have a string 'role'/);
    const ms = loadTokenizer(path.join(FIX, 'metaspace'));
    expect(() => ms.applyChatTemplate([{ role: 'assistant', content: 'x' }])).toThrow(/roles must alternate/);
  });
});

describe('character tokenizer', () => {
  test('one token per character, specials matched, round trips through tokenizer.json', () => {
    const tok = createCharTokenizer('0123456789+= \n');
    const ids = tok.encode('12+3=\n');
    expect(ids).toHaveLength(6);
    expect(tok.decode(ids)).toBe('12+3=\n');
    expect(tok.encode('<bos>1<eos>')).toEqual([tok.bosTokenId, tok.tokenToId('1'), tok.eosTokenId]);
    expect(tok.decode(tok.encode('<bos>1<eos>'), { skipSpecialTokens: true })).toBe('1');
    expect(tok.encode('x')).toEqual([tok.tokenToId('<unk>')]);
    expect(tok.vocabSize).toBe(4 + 14);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-tok-'));
    tok.save(dir);
    expect(loadTokenizer(dir).encode('12+3=\n')).toEqual(ids);
    fs.rmSync(dir, { recursive: true });
  });
});
