// A character-level tokenizer for from-scratch tasks (the demo's arithmetic, tests), written in the
// standard tokenizer.json format (WordLevel model, one token per character, Fuse decoder), so it loads
// with loadTokenizer here and with transformers' PreTrainedTokenizerFast in Python.
import { Tokenizer } from './tokenizer.js';

export interface CharTokenizerOptions {
  /** Special tokens, in id order from 0. Default ['<pad>', '<bos>', '<eos>', '<unk>']. */
  specialTokens?: string[];
  /** Optional chat template stored in tokenizer_config.json. */
  chatTemplate?: string;
}

/**
 * Builds a character-level tokenizer over `alphabet` (each distinct character one token).
 * @example const tok = createCharTokenizer('0123456789+= '); tok.encode('12+3=') // [4, 5, 14, 7, 15]
 */
export function createCharTokenizer(alphabet: string, opts: CharTokenizerOptions = {}): Tokenizer {
  const specials = opts.specialTokens ?? ['<pad>', '<bos>', '<eos>', '<unk>'];
  const chars = [...new Set([...alphabet])];
  if (chars.length === 0) throw new RangeError('createCharTokenizer: \'alphabet\' must contain at least one character');
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => { vocab[s] = i; });
  for (const c of chars) {
    if (c in vocab) throw new RangeError(`createCharTokenizer: character ${JSON.stringify(c)} collides with a special token`);
    vocab[c] = Object.keys(vocab).length;
  }
  const unk = specials.includes('<unk>') ? '<unk>' : specials[specials.length - 1];
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s, i) => ({ id: i, content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    // Every character is its own pre-token ("(?s)." would be Oniguruma; [\s\S] means the same everywhere).
    pre_tokenizer: { type: 'Split', pattern: { Regex: '[\\s\\S]' }, behavior: 'Isolated', invert: false },
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: { type: 'WordLevel', vocab, unk_token: unk },
  };
  const config: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000,
    padding_side: 'right',
  };
  if (specials.includes('<pad>')) config.pad_token = '<pad>';
  if (specials.includes('<bos>')) config.bos_token = '<bos>';
  if (specials.includes('<eos>')) config.eos_token = '<eos>';
  if (specials.includes('<unk>')) config.unk_token = '<unk>';
  if (opts.chatTemplate) config.chat_template = opts.chatTemplate;
  return new Tokenizer(json, config);
}

