// Tiny model folders for the generate/eval CLI tests: a char tokenizer (optionally with a chat
// template) and a randomly initialised 2-layer Llama (or reward model) saved as a Hugging Face folder.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCausalLM, createCharTokenizer, createRewardModel, type Tokenizer } from '../../src/index.js';

export const ALPHABET = '0123456789+= usa:;';
export const CHAT_TEMPLATE = "{% for m in messages %}{{ m.role[0] }}:{{ m.content }};{% endfor %}{% if add_generation_prompt %}a:{% endif %}";

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `llmrl-cli-${prefix}-`));
}

export function tinyConfig(tok: Tokenizer): Record<string, unknown> {
  return {
    model_type: 'llama', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 128, initializer_range: 0.5,
    vocab_size: tok.vocabSize, pad_token_id: null, // no zeroed pad embedding: padding must be masked to be harmless
    eos_token_id: tok.eosTokenId, bos_token_id: tok.bosTokenId,
  };
}

/** Writes a tiny causal LM + tokenizer folder; returns its path. */
export function makeTinyModel(opts: { chat?: boolean; seed?: number } = {}): string {
  const dir = tmpDir('model');
  const tok = createCharTokenizer(ALPHABET, opts.chat ? { chatTemplate: CHAT_TEMPLATE } : {});
  const model = createCausalLM(tinyConfig(tok), { seed: opts.seed ?? 0 });
  model.save(dir);
  model.dispose();
  tok.save(dir);
  return dir;
}

/** Writes a tiny reward model folder sharing the char tokenizer; returns its path. */
export function makeTinyRewardModel(seed = 1): string {
  const dir = tmpDir('rm');
  const tok = createCharTokenizer(ALPHABET);
  const rm = createRewardModel(tinyConfig(tok), { seed });
  rm.save(dir);
  rm.dispose();
  tok.save(dir);
  return dir;
}
