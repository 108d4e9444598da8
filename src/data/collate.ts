// Collators: rows → padded int64 tensors for the trainers (TRL's layouts). Prompts are LEFT-padded
// (generation continues from the last column), completions and whole sequences RIGHT-padded; every
// mask is int64 with 1 on real tokens. Completions get EOS appended as TRL does (DPO: always, even
// after a chat template's end-of-turn; SFT: when not already last), so the model learns to stop.
//
// Rows that do not fit (prompt + room for the completion longer than `contextLength`, or no
// completion token left after truncation) stop with an error naming the row (`file:line` for
// dataset rows), or with `overlong: 'skip'` are dropped from the batch and listed in `skipped`.
// Malformed rows always error. The returned tensors belong to the caller (dispose them, or collate
// inside tidy()).
import { tensor, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { DatasetError, RowProblem, checkRow, detectFormat, rowSource, type DatasetFormat, type FormatInfo, type Row, type TextOrMessages } from './format.js';
import {
  OverlongRow, checkLength, encodePrompt, promptAndCompletion, renderPrompt, tokenizePair, tokenizeSFT,
  type PairTokenOptions, type PromptTokenOptions, type SFTTokenOptions,
} from './tokenize.js';

export interface CollateCommonOptions {
  /** The model's context: longest sequence it takes. Default the tokenizer's model_max_length (none when unset). */
  contextLength?: number;
  /** A row that does not fit: 'error' (default), or 'skip' (dropped, listed in `skipped`). */
  overlong?: 'error' | 'skip';
}

/** A row dropped from a batch (overlong: 'skip'): its index in `rows`, where it came from, why. */
export interface SkippedRow { index: number; where: string; reason: string }

export interface PromptCollateOptions extends PromptTokenOptions, CollateCommonOptions {
  /** Tokens generation may add: the prompt must leave this much room in contextLength. Default 1. */
  maxCompletionLength?: number;
}

export interface PromptBatch<R extends Row = Row> {
  /** `[B, P]` int64, left-padded with the pad token. */
  promptIds: Tensor;
  /** `[B, P]` int64, 1 on prompt tokens. */
  promptMask: Tensor;
  promptLengths: number[];
  /** The rendered prompt texts (after the chat template, before truncation). */
  prompts: string[];
  /** The rows kept, as given (extra columns such as `answer` included, for reward functions). */
  rows: R[];
  skipped: SkippedRow[];
}

export interface PromptCompletionCollateOptions extends PairTokenOptions, CollateCommonOptions {}

export interface PromptCompletionBatch<R extends Row = Row> {
  /** `[B, P]` left-padded prompts and their mask. */
  promptIds: Tensor;
  promptMask: Tensor;
  /** `[B, C]` right-padded completions (EOS appended) and their mask (1 on completion tokens, EOS included). */
  completionIds: Tensor;
  completionMask: Tensor;
  promptLengths: number[];
  completionLengths: number[];
  rows: R[];
  skipped: SkippedRow[];
}

export interface PreferenceCollateOptions extends PairTokenOptions, CollateCommonOptions {
  /** Truncate each prompt+completion sequence to this many tokens (TRL's DPO max_length). Default none. */
  maxLength?: number;
  /** Which end of an over-long sequence to keep: 'keep_end' (default, TRL's DPO) or 'keep_start'. */
  truncationMode?: 'keep_end' | 'keep_start';
}

export interface PreferenceBatch<R extends Row = Row> {
  /** `[B, T]` prompt+chosen, right-padded; chosen and rejected share T (so they can be stacked into one forward). */
  chosenIds: Tensor;
  /** `[B, T]` attention mask, 1 on prompt and chosen tokens. */
  chosenMask: Tensor;
  /** `[B, T]` loss mask, 1 on chosen completion tokens only (EOS included). */
  chosenCompletionMask: Tensor;
  rejectedIds: Tensor;
  rejectedMask: Tensor;
  rejectedCompletionMask: Tensor;
  /** `[B]` float32 margins, when the rows have `margin` (reward models, §8). */
  margin?: Tensor;
  promptLengths: number[];
  chosenLengths: number[];
  rejectedLengths: number[];
  rows: R[];
  skipped: SkippedRow[];
}

export interface SFTCollateOptions extends SFTTokenOptions, CollateCommonOptions {
  /** Default 'right' (TRL's SFT). */
  paddingSide?: 'left' | 'right';
}

export interface SFTBatch<R extends Row = Row> {
  /** `[B, T]` token ids, right-padded. */
  inputIds: Tensor;
  /** `[B, T]` 1 on real tokens. */
  attentionMask: Tensor;
  /** `[B, T]` 1 on target tokens (completion only by default; all tokens of text/messages rows). Unshifted. */
  lossMask: Tensor;
  /** `[B, T]` input ids with -100 where lossMask is 0 (transformers' labels convention; unshifted). */
  labels: Tensor;
  lengths: number[];
  rows: R[];
  skipped: SkippedRow[];
}

const COMMON = ['contextLength', 'overlong', 'chatTemplate', 'chatTemplateKwargs', 'tools'];
const KNOWN: Record<string, string[]> = {
  collatePrompts: [...COMMON, 'maxPromptLength', 'addSpecialTokens', 'maxCompletionLength'],
  collatePromptCompletion: [...COMMON, 'maxPromptLength', 'addSpecialTokens', 'maxCompletionLength', 'appendEos'],
  collatePreference: [...COMMON, 'maxPromptLength', 'addSpecialTokens', 'maxCompletionLength', 'appendEos', 'maxLength', 'truncationMode'],
  collateSFT: [...COMMON, 'maxLength', 'completionOnlyLoss', 'assistantOnlyLoss', 'addSpecialTokens', 'appendEos', 'paddingSide'],
};

function checkArgs(fn: string, tok: Tokenizer, rows: unknown, opts: object): void {
  if (!tok || typeof (tok as Tokenizer).encode !== 'function') throw new TypeError(`${fn}: 'tokenizer' must be a Tokenizer (loadTokenizer / createCharTokenizer)`);
  if (!Array.isArray(rows) || rows.length === 0) throw new TypeError(`${fn}: 'rows' must be a non-empty array of dataset rows`);
  if (opts === null || typeof opts !== 'object') throw new TypeError(`${fn}: options must be an object`);
  for (const k of Object.keys(opts)) {
    if (!KNOWN[fn].includes(k)) throw new TypeError(`${fn}: unknown option '${k}' (known: ${KNOWN[fn].join(', ')})`);
  }
  const o = opts as Record<string, unknown>;
  for (const k of ['maxPromptLength', 'maxCompletionLength', 'maxLength']) checkLength(o[k] as number | undefined, k, fn);
  if (o.contextLength !== undefined && !(typeof o.contextLength === 'number' && o.contextLength >= 1)) {
    throw new RangeError(`${fn}: 'contextLength' must be a number ≥ 1, got ${String(o.contextLength)}`);
  }
  if (o.overlong !== undefined && o.overlong !== 'error' && o.overlong !== 'skip') {
    throw new TypeError(`${fn}: 'overlong' must be 'error' or 'skip', got ${JSON.stringify(o.overlong)}`);
  }
  if (o.truncationMode !== undefined && o.truncationMode !== 'keep_end' && o.truncationMode !== 'keep_start') {
    throw new TypeError(`${fn}: 'truncationMode' must be 'keep_end' or 'keep_start', got ${JSON.stringify(o.truncationMode)}`);
  }
}

/** Runs `body` on each row (validated), collecting results, overlong skips, and file:line errors. */
function eachRow<R extends Row, T>(fn: string, rows: R[], opts: CollateCommonOptions, body: (row: Row, info: FormatInfo) => T, format?: DatasetFormat): { kept: R[]; values: T[]; skipped: SkippedRow[] } {
  const kept: R[] = [];
  const values: T[] = [];
  const skipped: SkippedRow[] = [];
  rows.forEach((raw, index) => {
    const where = rowSource(raw) ?? `rows[${index}]`;
    try {
      const info = detectFormat(raw, format);
      const row = checkRow(raw, info);
      values.push(body(row, info));
      kept.push(raw);
    } catch (e) {
      if (e instanceof OverlongRow && opts.overlong === 'skip') {
        skipped.push({ index, where, reason: e.message });
        return;
      }
      if (e instanceof RowProblem) {
        const fix = e instanceof OverlongRow ? ' (or pass overlong: \'skip\' to drop such rows)' : '';
        const err = new DatasetError(where, e.kind, e.message + fix);
        err.message = `${fn}: ${err.message}`;
        throw err;
      }
      throw e;
    }
  });
  return { kept, values, skipped };
}

function contextOf(tok: Tokenizer, opts: CollateCommonOptions): number {
  return opts.contextLength ?? tok.modelMaxLength;
}

/** Packs rows of ids (or mask values) into a `[B, T]` int64 tensor, padding with `fill` on `side`. */
// (Built as a BigInt64Array, so no dtype conversion happens inside tensor(): that path currently
// returns a tensor whose handle an enclosing tidy() also disposes.)
function pack(seqs: number[][], T: number, side: 'left' | 'right', fill: number): Tensor {
  const out = new BigInt64Array(seqs.length * T).fill(BigInt(fill));
  seqs.forEach((s, b) => {
    const off = b * T + (side === 'left' ? T - s.length : 0);
    for (let t = 0; t < s.length; t++) out[off + t] = BigInt(s[t]);
  });
  return tensor(out, { shape: [seqs.length, T] });
}

function padId(tok: Tokenizer, seqs: number[][], T: number, fn: string): number {
  const id = tok.padTokenId;
  if (id !== null) return id;
  if (seqs.some((s) => s.length < T)) throw new Error(`${fn}: the tokenizer has neither a pad token nor an EOS token to pad with; set pad_token in tokenizer_config.json`);
  return 0;
}

const ones = (n: number): number[] => new Array<number>(n).fill(1);
const width = (seqs: number[][]): number => seqs.reduce((m, s) => Math.max(m, s.length), 0);

/**
 * Prompts for generation (GRPO, PPO): rendered (chat template for conversational rows; `messages`
 * rows lose a final assistant turn), encoded without special tokens by default (TRL's GRPO),
 * left-truncated to maxPromptLength, left-padded.
 */
export function collatePrompts<R extends Row>(tokenizer: Tokenizer, rows: R[], opts: PromptCollateOptions = {}): PromptBatch<R> {
  const fn = 'collatePrompts';
  checkArgs(fn, tokenizer, rows, opts);
  const ctx = contextOf(tokenizer, opts);
  const room = opts.maxCompletionLength ?? 1;
  const { kept, values, skipped } = eachRow(fn, rows, opts, (row, info) => {
    const text = renderPrompt(tokenizer, promptAndCompletion(row, info).prompt, opts);
    const ids = encodePrompt(tokenizer, text, opts);
    if (ids.length + room > ctx) {
      throw new OverlongRow(`the prompt is ${ids.length} tokens${opts.maxPromptLength ? ' after maxPromptLength truncation' : ''}, which with ${room} completion token${room === 1 ? '' : 's'} exceeds the context of ${ctx}; set maxPromptLength ≤ ${Math.max(1, ctx - room)} to keep its end`);
    }
    return { text, ids };
  });
  const seqs = values.map((v) => v.ids);
  const P = width(seqs);
  const pad = padId(tokenizer, seqs, P, fn);
  return {
    promptIds: pack(seqs, P, 'left', pad),
    promptMask: pack(seqs.map((s) => ones(s.length)), P, 'left', 0),
    promptLengths: seqs.map((s) => s.length),
    prompts: values.map((v) => v.text),
    rows: kept,
    skipped,
  };
}

/**
 * Prompt + completion pairs in the generation layout (GRPO/GSPO `computeLoss` batches): left-padded
 * prompts `[B, P]` and right-padded completions `[B, C]` with EOS appended; `cat([promptMask,
 * completionMask], 1)` is the attention mask of `cat([promptIds, completionIds], 1)`. Accepts
 * prompt+completion rows and `messages` rows ending with an assistant turn.
 */
export function collatePromptCompletion<R extends Row>(tokenizer: Tokenizer, rows: R[], opts: PromptCompletionCollateOptions = {}): PromptCompletionBatch<R> {
  const fn = 'collatePromptCompletion';
  checkArgs(fn, tokenizer, rows, opts);
  const ctx = contextOf(tokenizer, opts);
  const { kept, values, skipped } = eachRow(fn, rows, opts, (row, info) => {
    const { prompt, completion } = promptAndCompletion(row, info);
    if (completion === undefined) throw new RowProblem('missing field \'completion\'', 'missing field \'completion\' (prompt+completion rows need prompt, completion; messages rows need a final assistant turn)');
    const { promptIds, completionIds } = tokenizePair(tokenizer, prompt, [['completion', completion]], opts, false);
    const c = completionIds[0];
    if (c.length === 0) throw new OverlongRow('the completion encodes to 0 tokens');
    if (promptIds.length + c.length > ctx) {
      throw new OverlongRow(`prompt (${promptIds.length}) + completion (${c.length}) tokens exceed the context of ${ctx}; set maxPromptLength / maxCompletionLength`);
    }
    return { promptIds, c };
  });
  const ps = values.map((v) => v.promptIds);
  const cs = values.map((v) => v.c);
  const P = width(ps);
  const C = width(cs);
  const pad = padId(tokenizer, [...ps, ...cs], Math.max(P, C), fn);
  return {
    promptIds: pack(ps, P, 'left', pad),
    promptMask: pack(ps.map((s) => ones(s.length)), P, 'left', 0),
    completionIds: pack(cs, C, 'right', pad),
    completionMask: pack(cs.map((s) => ones(s.length)), C, 'right', 0),
    promptLengths: ps.map((s) => s.length),
    completionLengths: cs.map((s) => s.length),
    rows: kept,
    skipped,
  };
}

/** Truncates prompt+completion to maxLength; returns ids and the completion (loss) mask. */
function joinTruncate(p: number[], c: number[], maxLength: number | undefined, mode: 'keep_end' | 'keep_start'): { ids: number[]; loss: number[] } {
  let ids = [...p, ...c];
  let loss = [...new Array<number>(p.length).fill(0), ...ones(c.length)];
  if (maxLength !== undefined && ids.length > maxLength) {
    const from = mode === 'keep_end' ? ids.length - maxLength : 0;
    ids = ids.slice(from, from + maxLength);
    loss = loss.slice(from, from + maxLength);
  }
  return { ids, loss };
}

/**
 * Preference pairs for DPO and reward models: full prompt+chosen and prompt+rejected sequences,
 * right-padded to one length, each with an attention mask and a completion (loss) mask. Tokenised
 * as TRL's DPO (prompt and completions separately, no special tokens, EOS appended; maxPromptLength
 * keeps the prompt's end, maxCompletionLength the completion's start, then maxLength per
 * truncationMode). A prompt of 0 tokens is allowed (TRL's implicit prompt may be empty); the first
 * position of a sequence is never a predicted token.
 */
export function collatePreference<R extends Row>(tokenizer: Tokenizer, rows: R[], opts: PreferenceCollateOptions = {}): PreferenceBatch<R> {
  const fn = 'collatePreference';
  checkArgs(fn, tokenizer, rows, opts);
  const ctx = contextOf(tokenizer, opts);
  const mode = opts.truncationMode ?? 'keep_end';
  const { kept, values, skipped } = eachRow(fn, rows, opts, (row, info) => {
    const prompt = row.prompt as TextOrMessages;
    const { promptIds, completionIds } = tokenizePair(tokenizer, prompt, [['chosen', row.chosen as TextOrMessages], ['rejected', row.rejected as TextOrMessages]], opts, true);
    const [c, r] = completionIds.map((ids) => joinTruncate(promptIds, ids, opts.maxLength, mode));
    for (const [name, s] of [['chosen', c], ['rejected', r]] as const) {
      if (!s.loss.includes(1)) {
        throw new OverlongRow(`no ${name} token is left after truncation (prompt ${promptIds.length} tokens, maxLength ${opts.maxLength}, truncationMode '${mode}'); set maxPromptLength below maxLength`);
      }
      if (s.ids.length > ctx) {
        throw new OverlongRow(`prompt + ${name} is ${s.ids.length} tokens, longer than the context of ${ctx}; set maxLength ≤ ${ctx} (or maxPromptLength / maxCompletionLength)`);
      }
    }
    const m = row.margin;
    return { promptLength: promptIds.length, c, r, margin: typeof m === 'number' ? m : undefined };
  }, 'preference');
  const withMargin = values.filter((v) => v.margin !== undefined).length;
  if (withMargin > 0 && withMargin < values.length) {
    throw new TypeError(`${fn}: ${withMargin} of ${values.length} rows have a 'margin'; give every row a margin or none`);
  }
  const all = values.flatMap((v) => [v.c.ids, v.r.ids]);
  const T = width(all);
  const pad = padId(tokenizer, all, T, fn);
  const side = 'right';
  const out = (k: 'c' | 'r'): [Tensor, Tensor, Tensor] => [
    pack(values.map((v) => v[k].ids), T, side, pad),
    pack(values.map((v) => ones(v[k].ids.length)), T, side, 0),
    pack(values.map((v) => v[k].loss), T, side, 0),
  ];
  const [chosenIds, chosenMask, chosenCompletionMask] = out('c');
  const [rejectedIds, rejectedMask, rejectedCompletionMask] = out('r');
  const count = (l: number[]): number => l.reduce((a, b) => a + b, 0);
  return {
    chosenIds, chosenMask, chosenCompletionMask, rejectedIds, rejectedMask, rejectedCompletionMask,
    ...(withMargin > 0 && values.length > 0 ? { margin: tensor(Float32Array.from(values, (v) => v.margin!), { shape: [values.length] }) } : {}),
    promptLengths: values.map((v) => v.promptLength),
    chosenLengths: values.map((v) => count(v.c.loss)),
    rejectedLengths: values.map((v) => count(v.r.loss)),
    rows: kept,
    skipped,
  };
}

/**
 * Supervised fine-tuning batches (TRL's SFTTrainer): `inputIds`, `attentionMask`, `lossMask` and
 * `labels` `[B, T]`, right-padded. Loss on completion tokens only for prompt+completion rows
 * (completionOnlyLoss, default true), on every token of text and messages rows (or assistant turns
 * with assistantOnlyLoss). maxLength keeps the start of each sequence.
 */
export function collateSFT<R extends Row>(tokenizer: Tokenizer, rows: R[], opts: SFTCollateOptions = {}): SFTBatch<R> {
  const fn = 'collateSFT';
  checkArgs(fn, tokenizer, rows, opts);
  const ctx = contextOf(tokenizer, opts);
  const { kept, values, skipped } = eachRow(fn, rows, opts, (row, info) => {
    const v = tokenizeSFT(tokenizer, row, info, opts);
    if (v.ids.length > ctx) {
      throw new OverlongRow(`the sequence is ${v.ids.length} tokens, longer than the context of ${ctx}; set maxLength ≤ ${ctx} to truncate it`);
    }
    return v;
  });
  const seqs = values.map((v) => v.ids);
  const T = width(seqs);
  const side = opts.paddingSide ?? 'right';
  const pad = padId(tokenizer, seqs, T, fn);
  const labels = values.map((v) => v.ids.map((id, t) => (v.lossMask[t] ? id : -100)));
  return {
    inputIds: pack(seqs, T, side, pad),
    attentionMask: pack(seqs.map((s) => ones(s.length)), T, side, 0),
    lossMask: pack(values.map((v) => v.lossMask), T, side, 0),
    labels: pack(labels, T, side, -100),
    lengths: seqs.map((s) => s.length),
    rows: kept,
    skipped,
  };
}
