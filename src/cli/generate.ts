// `llmrl generate --model DIR --prompt TEXT [--prompt …] [--prompts-file F] [--chat] …`: loads a causal
// LM folder and its tokenizer, generates a completion for each prompt (greedy at --temperature 0, the
// default; sampled above it, with --top-k / --top-p / --seed), and prints each one (or one JSON line
// per prompt with --json) and a final throughput line. `runGenerate(opts)` is the in-process entry
// (tests call it); the batching helpers here (loadPolicy, generateRows) are shared with `llmrl eval`.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { collatePrompts, loadDataset, type Row, type TextOrMessages } from '../data/index.js';
import { loadCausalLM, type CausalLM } from '../models/index.js';
import { manualSeed, noGrad, setNumThreads, tidy, type Tensor } from '../tensor/index.js';
import { loadTokenizer, type ChatMessage, type Tokenizer } from '../tokenizer/index.js';
import { ConfigError } from '../trainers/index.js';

/** commander parser for integer options (`--max-new-tokens abc` → "… is invalid. expected an integer"). */
export function intArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`expected an integer, got '${v}'.`);
  return n;
}

/** commander parser for number options. */
export function numArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${v}'.`);
  return n;
}

/** commander collector for repeatable options (`--prompt a --prompt b`). */
export function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

/** Decoding options shared by generate and eval (CLI names in the error messages). */
export interface SamplingOptions {
  /** Tokens to generate per completion at most (default 64). */
  maxNewTokens?: number;
  /** 0 (default): greedy; > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Sample among the k most likely tokens (needs temperature > 0). */
  topK?: number;
  /** Nucleus sampling: the smallest set of tokens with mass > p (needs temperature > 0). */
  topP?: number;
  /** Seeds libtorch's generator once before the first batch: same seed, batch size and prompts → same samples. */
  seed?: number;
  /** Prompts per generation call (default 8). */
  batchSize?: number;
}

export interface Sampling {
  maxNewTokens: number;
  temperature: number;
  topK: number | null;
  topP: number | null;
  seed: number | null;
  batchSize: number;
}

/** Throws a ConfigError naming `flag` unless `v` is an integer ≥ `min`. */
export function checkIntFlag(flag: string, v: unknown, min: number, fix = ''): void {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new ConfigError(`${flag}: expected an integer ≥ ${min}, got ${String(v)}${fix}`);
}

/** Validates the decoding options; errors name the flag, what was expected, what was given, and a fix. */
export function resolveSampling(o: SamplingOptions, defaults: { batchSize?: number } = {}): Sampling {
  const maxNewTokens = o.maxNewTokens ?? 64;
  checkIntFlag('--max-new-tokens', maxNewTokens, 1);
  const temperature = o.temperature ?? 0;
  if (!(typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0)) {
    throw new ConfigError(`--temperature: expected a number ≥ 0 (0 = greedy), got ${String(temperature)}`);
  }
  const batchSize = o.batchSize ?? defaults.batchSize ?? 8;
  checkIntFlag('--batch-size', batchSize, 1);
  if (o.topK !== undefined) checkIntFlag('--top-k', o.topK, 0, ' (0 = off)');
  if (o.topP !== undefined && !(typeof o.topP === 'number' && o.topP > 0 && o.topP <= 1)) throw new ConfigError(`--top-p: expected a number in (0, 1], got ${String(o.topP)}`);
  if (o.seed !== undefined) checkIntFlag('--seed', o.seed, 0);
  const topK = o.topK !== undefined && o.topK > 0 ? o.topK : null;
  const topP = o.topP !== undefined && o.topP < 1 ? o.topP : null;
  if (temperature === 0 && (topK !== null || topP !== null)) {
    throw new ConfigError(`${topK !== null ? '--top-k' : '--top-p'} only applies when sampling, but --temperature is 0 (greedy); pass --temperature > 0 (e.g. 0.7) to sample`);
  }
  return { maxNewTokens, temperature, topK, topP, seed: o.seed ?? null, batchSize };
}

/** Applies --threads (a positive integer). */
export function applyThreads(threads: number | undefined): void {
  if (threads === undefined) return;
  if (!(Number.isInteger(threads) && threads > 0)) throw new ConfigError(`--threads: expected a positive integer, got ${String(threads)}`);
  setNumThreads(threads);
}

/** Loads the causal LM in `modelDir` and the tokenizer (from `tokenizerDir`, else the model folder), with CLI-worded errors. */
export function loadPolicy(modelDir: string | undefined, tokenizerDir?: string): { model: CausalLM; tokenizer: Tokenizer } {
  if (typeof modelDir !== 'string' || modelDir === '') throw new ConfigError('--model: required; give a Hugging Face model folder (config.json + model.safetensors), e.g. --model ./runs/grpo/checkpoint-100/model');
  const dir = path.resolve(modelDir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new ConfigError(`--model ${modelDir}: expected a model folder (config.json + model.safetensors), but ${dir} ${fs.existsSync(dir) ? 'is not a folder' : 'does not exist'}; check the path`);
  }
  const tokDir = tokenizerDir !== undefined ? path.resolve(tokenizerDir) : dir;
  let tokenizer: Tokenizer;
  if (!fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
    throw new ConfigError(tokenizerDir !== undefined
      ? `--tokenizer ${tokenizerDir}: expected a folder with tokenizer.json, but ${path.join(tokDir, 'tokenizer.json')} does not exist`
      : `--model ${modelDir}: the folder has no tokenizer.json; pass --tokenizer DIR (a folder with tokenizer.json, e.g. the base model's)`);
  }
  try {
    tokenizer = loadTokenizer(tokDir);
  } catch (e) {
    throw new ConfigError(`${tokenizerDir !== undefined ? '--tokenizer' : '--model'} ${tokenizerDir ?? modelDir}: ${(e as Error).message}`, { cause: e });
  }
  let model: CausalLM;
  try {
    model = loadCausalLM(dir);
  } catch (e) {
    throw new ConfigError(`--model ${modelDir}: ${(e as Error).message}`, { cause: e });
  }
  return { model, tokenizer };
}

/** EOS ids: the tokenizer's EOS plus the model config's (transformers stops at either). */
export function eosIds(model: CausalLM, tok: Tokenizer): number[] {
  const cfg = model.config.eosTokenId;
  const ids = new Set<number>([...(tok.eosTokenId !== null ? [tok.eosTokenId] : []), ...(cfg === null ? [] : Array.isArray(cfg) ? cfg : [cfg])]);
  return [...ids].filter((id) => id >= 0 && id < model.config.vocabSize);
}

/** One generated completion. */
export interface Completion {
  /** The prompt after the chat template (what the model saw). */
  renderedPrompt: string;
  /** Decoded completion (special tokens skipped). */
  completion: string;
  /** Generated token ids (EOS included when the model stopped). */
  completionIds: number[];
  tokens: number;
  finishReason: 'eos' | 'length';
}

/** The tensors of one generated batch, for scoring inside the same scope (e.g. a reward model). */
export interface BatchTensors { promptIds: Tensor; promptMask: Tensor; completionIds: Tensor; completionMask: Tensor }

/**
 * Generates one completion per row (prompt-only, prompt+answer or conversational rows; conversational
 * prompts rendered with the chat template, as the GRPO trainer does through collatePrompts), in one
 * call. Runs under noGrad + tidy: every tensor is freed. `score` sees the batch's tensors.
 */
export function generateRows(model: CausalLM, tok: Tokenizer, rows: Row[], s: Sampling, score?: (t: BatchTensors) => number[]): { completions: Completion[]; scores: number[] | null } {
  const eos = eosIds(model, tok);
  return noGrad(() => tidy(() => {
    const p = collatePrompts(tok, rows, { maxCompletionLength: s.maxNewTokens });
    const P = p.promptIds.shape[1];
    if (model.config.modelType === 'gpt2' && P + s.maxNewTokens > model.config.maxPositionEmbeddings) {
      throw new ConfigError(`--max-new-tokens ${s.maxNewTokens}: with the longest prompt of the batch (${P} tokens) this exceeds the model's ${model.config.maxPositionEmbeddings} positions (n_positions); lower --max-new-tokens to ≤ ${Math.max(1, model.config.maxPositionEmbeddings - P)} or shorten the prompts`);
    }
    const gen = model.generate(p.promptIds, {
      attentionMask: p.promptMask, maxNewTokens: s.maxNewTokens,
      doSample: s.temperature > 0, temperature: s.temperature > 0 ? s.temperature : 1, topK: s.topK, topP: s.topP,
      eosTokenId: eos, padTokenId: tok.padTokenId ?? model.config.padTokenId,
    });
    const ids = gen.completionIds.toArray() as number[][];
    const mask = gen.completionMask.toArray() as number[][];
    const eosSet = new Set(eos);
    const completions = ids.map((r, b): Completion => {
      const kept = r.filter((_, t) => mask[b][t] === 1);
      return {
        renderedPrompt: p.prompts[b],
        completion: tok.decode(kept, { skipSpecialTokens: true }),
        completionIds: kept,
        tokens: kept.length,
        finishReason: kept.length > 0 && eosSet.has(kept[kept.length - 1]) ? 'eos' : 'length',
      };
    });
    const scores = score ? score({ promptIds: p.promptIds, promptMask: p.promptMask, completionIds: gen.completionIds, completionMask: gen.completionMask }) : null;
    return { completions, scores };
  }));
}

/**
 * Generates for all rows in batches of `s.batchSize` (seeding once first when `s.seed` is set).
 * `seconds` is the generation time (time spent in `score` excluded).
 */
export function generateAll(model: CausalLM, tok: Tokenizer, rows: Row[], s: Sampling, score?: (t: BatchTensors) => number[]): { completions: Completion[]; scores: number[] | null; seconds: number } {
  if (s.seed !== null) manualSeed(s.seed);
  const completions: Completion[] = [];
  const scores: number[] = [];
  let scoreMs = 0;
  const timedScore = score && ((t: BatchTensors): number[] => {
    const t1 = performance.now();
    try {
      return score(t);
    } finally {
      scoreMs += performance.now() - t1;
    }
  });
  const t0 = performance.now();
  for (let i = 0; i < rows.length; i += s.batchSize) {
    const out = generateRows(model, tok, rows.slice(i, i + s.batchSize), s, timedScore);
    completions.push(...out.completions);
    if (out.scores) scores.push(...out.scores);
  }
  return { completions, scores: score ? scores : null, seconds: (performance.now() - t0 - scoreMs) / 1000 };
}

/** Throws a ConfigError naming `flag` when rows need a chat template the tokenizer lacks. */
export function requireChatTemplate(tok: Tokenizer, flag: string, why: string): void {
  if (!tok.chatTemplate) {
    throw new ConfigError(`${flag}: ${why}, but the tokenizer has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja); use a tokenizer with one (--tokenizer DIR)${flag === '--chat' ? ', or drop --chat to use the prompts as plain text' : ''}`);
  }
}

/** A short one-line view of a prompt for headers. */
export function promptPreview(p: TextOrMessages, max = 80): string {
  const text = typeof p === 'string' ? p : p[p.length - 1]?.content ?? '';
  const s = JSON.stringify(text);
  return s.length > max ? `${s.slice(0, max - 2)}…"` : s;
}

export interface GenerateOptions extends SamplingOptions {
  /** Causal LM folder (config.json + model.safetensors; tokenizer.json unless `tokenizer`). */
  model: string;
  /** Prompts (each one completion). */
  prompt?: string[];
  /** More prompts: a .jsonl/.json dataset of prompt-only or conversational rows, or a .txt file (one prompt a line). */
  promptsFile?: string;
  /** Wrap each plain prompt as a user message and render it with the chat template (generation prompt added). */
  chat?: boolean;
  /** A system message before each conversation (needs --chat). */
  system?: string;
  /** Tokenizer folder (default: the model folder). */
  tokenizer?: string;
  /** One JSON line per prompt instead of text. */
  json?: boolean;
  threads?: number;
  /** Output lines (default console.log). */
  log?: (line: string) => void;
  /** Status lines that are not results (default console.error). */
  info?: (line: string) => void;
}

export interface GenerateResult extends Completion {
  /** The prompt as given (text, or messages for conversational rows of --prompts-file). */
  prompt: TextOrMessages;
}

export interface GenerateSummary {
  results: GenerateResult[];
  /** Generated tokens, all completions. */
  tokens: number;
  seconds: number;
  tokensPerSec: number;
}

async function readPromptsFile(file: string): Promise<Row[]> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new ConfigError(`--prompts-file ${file}: file not found (${abs}); expected a .jsonl file of {"prompt": …} or {"messages": […]} rows, or a .txt file with one prompt per line`);
  if (/\.txt$/i.test(abs)) {
    return fs.readFileSync(abs, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '').map((prompt) => ({ prompt }));
  }
  try {
    return await (await loadDataset(abs)).toArray();
  } catch (e) {
    throw new ConfigError(`--prompts-file ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** The prompt of a row, as given (for output). */
function givenPrompt(row: Row): TextOrMessages {
  if (row.prompt !== undefined) return row.prompt as TextOrMessages;
  return (row.messages ?? '') as TextOrMessages;
}

/** Runs `llmrl generate`; resolves with every completion and the throughput. */
export async function runGenerate(opts: GenerateOptions): Promise<GenerateSummary> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const info = opts.info ?? ((s: string) => console.error(s));
  const s = resolveSampling(opts, { batchSize: 8 });
  applyThreads(opts.threads);
  if (opts.system !== undefined && !opts.chat) throw new ConfigError('--system: a system message needs a chat template; add --chat (or put it into the prompt text)');
  let rows: Row[] = (opts.prompt ?? []).map((prompt) => {
    if (typeof prompt !== 'string' || prompt === '') throw new ConfigError(`--prompt: expected non-empty text, got ${JSON.stringify(prompt)}`);
    return { prompt };
  });
  if (opts.promptsFile !== undefined) rows.push(...(await readPromptsFile(opts.promptsFile)));
  if (rows.length === 0) throw new ConfigError('generate: no prompts; give --prompt TEXT (repeatable) and/or --prompts-file FILE.jsonl');
  const { model, tokenizer } = loadPolicy(opts.model, opts.tokenizer);
  try {
    const given = rows.map(givenPrompt);
    if (opts.chat) {
      requireChatTemplate(tokenizer, '--chat', 'prompts are wrapped as user messages for the chat template');
      const sys: ChatMessage[] = opts.system !== undefined ? [{ role: 'system', content: opts.system }] : [];
      const withSys = (msgs: ChatMessage[]): ChatMessage[] => (sys.length && msgs[0]?.role !== 'system' ? [...sys, ...msgs] : msgs);
      rows = rows.map((r) => {
        if (Array.isArray(r.messages)) return { ...r, messages: withSys(r.messages as ChatMessage[]) };
        const p = r.prompt as TextOrMessages;
        return { ...r, prompt: withSys(typeof p === 'string' ? [{ role: 'user', content: p }] : p) };
      });
    } else if (given.some((p) => typeof p !== 'string')) {
      requireChatTemplate(tokenizer, '--prompts-file', 'it has conversational rows (message lists)');
    }
    const { completions, seconds } = generateAll(model, tokenizer, rows, s);
    const results: GenerateResult[] = completions.map((c, i) => ({ prompt: given[i], ...c }));
    results.forEach((r, i) => {
      if (opts.json) log(JSON.stringify({ prompt: r.prompt, completion: r.completion, tokens: r.tokens, finishReason: r.finishReason }));
      else {
        log(`### [${i + 1}/${results.length}] ${promptPreview(r.prompt)}  (${r.tokens} tokens, ${r.finishReason})`);
        log(r.completion);
      }
    });
    const tokens = results.reduce((a, r) => a + r.tokens, 0);
    const tokensPerSec = seconds > 0 ? tokens / seconds : 0;
    // In --json mode stdout holds only the JSON lines; the summary goes to stderr.
    (opts.json ? info : log)(`${results.length} completion${results.length === 1 ? '' : 's'}, ${tokens} tokens in ${seconds.toFixed(2)} s (${tokensPerSec.toFixed(1)} tokens/s)`);
    return { results, tokens, seconds, tokensPerSec };
  } finally {
    model.dispose();
  }
}
