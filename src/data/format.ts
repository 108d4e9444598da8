// Dataset row formats (TRL's): detection from a row, per-row validation with messages that say what
// is wrong and how to fix it, TRL's implicit-prompt extraction for preference pairs, the error type
// that names file:line, and the report of skipped (malformed) rows.
//
// Formats (`format`), each "standard" (strings) or "conversational" (lists of {role, content}):
//   text               { text }                                    language modelling (SFT)
//   prompt             { prompt }                                  prompt-only (GRPO, PPO)
//   prompt_completion  { prompt, completion }                      SFT, fixed completions
//   preference         { prompt, chosen, rejected, margin? }       DPO, reward models; `prompt` may be
//                                                                  left out (TRL's implicit prompt)
//   conversational     { messages }                                whole conversations (SFT)
// Any other columns (e.g. `answer`) are kept and passed through to reward functions.
import type { ChatMessage } from '../tokenizer/index.js';

export type DatasetFormat = 'text' | 'prompt' | 'prompt_completion' | 'preference' | 'conversational';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['text', 'prompt', 'prompt_completion', 'preference', 'conversational'];

/** A prompt or completion: a string (standard) or a list of chat messages (conversational). */
export type TextOrMessages = string | ChatMessage[];
/** One dataset row: the format's fields plus any extra columns. */
export type Row = Record<string, unknown>;
export interface TextRow extends Row { text: string }
export interface PromptRow extends Row { prompt: TextOrMessages }
export interface PromptCompletionRow extends Row { prompt: TextOrMessages; completion: TextOrMessages }
export interface PreferenceRow extends Row { prompt: TextOrMessages; chosen: TextOrMessages; rejected: TextOrMessages; margin?: number }
export interface ConversationRow extends Row { messages: ChatMessage[] }

export interface FormatInfo {
  format: DatasetFormat;
  /** Fields are message lists (rendered with the tokenizer's chat template) rather than strings. */
  conversational: boolean;
}

const NEEDS: Record<DatasetFormat, string> = {
  text: 'text rows need text',
  prompt: 'prompt-only rows need prompt',
  prompt_completion: 'prompt+completion rows need prompt, completion',
  preference: 'preference rows need prompt, chosen, rejected',
  conversational: 'conversational rows need messages',
};

/** A problem with one row: `kind` is a short key for counting, `message` the full explanation. */
export class RowProblem extends Error {
  constructor(readonly kind: string, message: string) {
    super(message);
    this.name = 'RowProblem';
  }
}

/** A malformed dataset row or file: the message starts with `file:line` (or `rows[i]`). */
export class DatasetError extends Error {
  constructor(
    /** Where: `path:line`, `path:split[i]` or `rows[i]`. */
    readonly where: string,
    /** Short key of what is wrong (e.g. "missing field 'chosen'", "invalid JSON"). */
    readonly kind: string,
    detail: string,
    /** The file, when the row came from one. */
    readonly file?: string,
    /** The 1-based line, when known. */
    readonly line?: number,
  ) {
    super(`${where}: ${detail}`);
    this.name = 'DatasetError';
  }
}

/** Rows skipped because they were malformed (`skipMalformed: true`), counted once per row. */
export class SkipReport {
  /** Number of distinct rows skipped so far (rows of a streamed file are counted on first read). */
  count = 0;
  /** Count per kind of problem, e.g. `{ "invalid JSON": 3, "missing field 'chosen'": 1 }`. */
  readonly byReason: Record<string, number> = {};
  /** The first `maxExamples` skipped rows: where and why. */
  readonly examples: { where: string; reason: string }[] = [];
  private readonly highWater = new Map<string, number>();
  constructor(readonly maxExamples = 100) {}

  /** Records a skip at `position` of `source`, unless an earlier pass already recorded it. */
  record(source: string, position: number, where: string, kind: string, reason: string): void {
    const seen = this.highWater.get(source) ?? -1;
    if (position <= seen) return;
    this.highWater.set(source, position);
    this.count += 1;
    this.byReason[kind] = (this.byReason[kind] ?? 0) + 1;
    if (this.examples.length < this.maxExamples) this.examples.push({ where, reason });
  }

  toJSON(): { count: number; byReason: Record<string, number>; examples: { where: string; reason: string }[] } {
    return { count: this.count, byReason: { ...this.byReason }, examples: [...this.examples] };
  }
}

const ROW_SOURCE = Symbol.for('llmrl.data.rowSource');

/** Tags a row with where it came from (non-enumerable: invisible to JSON and Object.keys). */
export function tagRowSource<R extends Row>(row: R, where: string): R {
  const d = Object.getOwnPropertyDescriptor(row, ROW_SOURCE);
  if (Object.isExtensible(row) || d?.configurable) Object.defineProperty(row, ROW_SOURCE, { value: where, enumerable: false, configurable: true });
  return row;
}

/** Where a dataset row came from (`path:line` or `rows[i]`), if it was loaded by loadDataset. */
export function rowSource(row: unknown): string | undefined {
  return row !== null && typeof row === 'object' ? ((row as Record<symbol, unknown>)[ROW_SOURCE] as string | undefined) : undefined;
}

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/** Which field decides whether a row is conversational, per format. */
const MAIN_FIELD: Record<DatasetFormat, string> = {
  text: 'text', prompt: 'prompt', prompt_completion: 'prompt', preference: 'chosen', conversational: 'messages',
};

/**
 * Detects a row's format (TRL's key rules): chosen+rejected → preference; prompt+completion →
 * prompt_completion; messages → conversational; prompt → prompt; text → text. With `format` given,
 * only the standard/conversational kind is detected. Throws a RowProblem when nothing fits.
 */
export function detectFormat(row: unknown, format?: DatasetFormat): FormatInfo {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) {
    throw new RowProblem('not an object', `expected a JSON object with the row's fields, got ${typeName(row)}`);
  }
  const r = row as Row;
  let f = format;
  if (!f) {
    if ('chosen' in r && 'rejected' in r) f = 'preference';
    else if ('prompt' in r && 'completion' in r) f = 'prompt_completion';
    else if ('messages' in r) f = 'conversational';
    else if ('prompt' in r) f = 'prompt';
    else if ('text' in r) f = 'text';
    else {
      const keys = Object.keys(r);
      throw new RowProblem('unknown format', `cannot tell the dataset format from this row (fields: ${keys.length ? keys.join(', ') : 'none'}); `
        + 'expected text, prompt, prompt+completion, chosen+rejected (preference) or messages; rename the columns or pass { format }');
    }
  }
  const main = MAIN_FIELD[f];
  const v = r[main];
  if (v === undefined) throw missing(main, f);
  if (f === 'conversational') return { format: f, conversational: true };
  if (f === 'text') return { format: f, conversational: false };
  if (typeof v !== 'string' && !Array.isArray(v)) {
    throw new RowProblem(`wrong type for '${main}'`, `field '${main}' must be a string or a list of {role, content} messages, got ${typeName(v)}`);
  }
  return { format: f, conversational: Array.isArray(v) };
}

function missing(field: string, format: DatasetFormat): RowProblem {
  return new RowProblem(`missing field '${field}'`, `missing field '${field}' (${NEEDS[format]})`);
}

function checkMessages(v: unknown[], field: string): ChatMessage[] {
  v.forEach((m, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) {
      throw new RowProblem(`wrong type for '${field}'`, `field '${field}'[${i}] must be a {role, content} message, got ${typeName(m)}`);
    }
    const msg = m as Row;
    if (typeof msg.role !== 'string') {
      throw new RowProblem(`wrong type for '${field}'`, `field '${field}'[${i}]: 'role' must be a string, got ${typeName(msg.role)}`);
    }
    if (typeof msg.content !== 'string') {
      throw new RowProblem(`wrong type for '${field}'`, `field '${field}'[${i}]: 'content' must be a string, got ${typeName(msg.content)}`);
    }
  });
  return v as ChatMessage[];
}

function checkField(r: Row, field: string, info: FormatInfo, optional = false): void {
  const v = r[field];
  if (v === undefined) {
    if (optional) return;
    throw missing(field, info.format);
  }
  const conv = info.conversational || field === 'messages';
  if (conv) {
    if (!Array.isArray(v)) {
      throw new RowProblem(`wrong type for '${field}'`, `field '${field}' must be a list of {role, content} messages (this dataset is conversational, as its first row), got ${typeName(v)}`);
    }
    if (v.length === 0) throw new RowProblem(`empty '${field}'`, `field '${field}' is an empty list of messages`);
    checkMessages(v, field);
  } else if (typeof v !== 'string') {
    throw new RowProblem(`wrong type for '${field}'`, `field '${field}' must be a string (this dataset is standard, not conversational, as its first row), got ${typeName(v)}`);
  }
}

/** A conversational prompt must end with a user (or tool) turn, or an assistant turn to continue (TRL). */
function checkPromptEnd(prompt: ChatMessage[], field: string): void {
  const role = prompt[prompt.length - 1].role;
  if (role !== 'user' && role !== 'tool' && role !== 'assistant') {
    throw new RowProblem(`bad last role in '${field}'`, `field '${field}' ends with a '${role}' message; a prompt must end with a user message (or an assistant message for the model to continue)`);
  }
}

/**
 * TRL's `extract_prompt`: the longest common prefix of chosen and rejected becomes the prompt (for
 * strings, a space just before the split point goes with the answers; for message lists, the
 * shared leading messages).
 */
export function extractPrompt(chosen: TextOrMessages, rejected: TextOrMessages): { prompt: TextOrMessages; chosen: TextOrMessages; rejected: TextOrMessages } {
  if (typeof chosen === 'string' && typeof rejected === 'string') {
    const n = Math.min(chosen.length, rejected.length);
    let idx = 0;
    while (idx < n && chosen[idx] === rejected[idx]) idx++;
    if (idx < n && idx > 0 && chosen[idx - 1] === ' ') idx -= 1;
    return { prompt: chosen.slice(0, idx), chosen: chosen.slice(idx), rejected: rejected.slice(idx) };
  }
  const c = chosen as ChatMessage[];
  const r = rejected as ChatMessage[];
  const n = Math.min(c.length, r.length);
  let idx = 0;
  while (idx < n && JSON.stringify(c[idx]) === JSON.stringify(r[idx])) idx++;
  return { prompt: c.slice(0, idx), chosen: c.slice(idx), rejected: r.slice(idx) };
}

/**
 * Validates `row` against the dataset's format and returns it (a new object only when an implicit
 * prompt was extracted). Throws a RowProblem saying what is wrong.
 */
export function checkRow(row: unknown, info: FormatInfo): Row {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) {
    throw new RowProblem('not an object', `expected a JSON object with the row's fields, got ${typeName(row)}`);
  }
  const r = row as Row;
  switch (info.format) {
    case 'text':
      checkField(r, 'text', info);
      return r;
    case 'conversational':
      checkField(r, 'messages', info);
      return r;
    case 'prompt':
      checkField(r, 'prompt', info);
      if (info.conversational) checkPromptEnd(r.prompt as ChatMessage[], 'prompt');
      return r;
    case 'prompt_completion':
      checkField(r, 'prompt', info);
      checkField(r, 'completion', info);
      if (info.conversational) checkPromptEnd(r.prompt as ChatMessage[], 'prompt');
      return r;
    case 'preference': {
      if (r.chosen === undefined) throw missing('chosen', 'preference');
      if (r.rejected === undefined) throw missing('rejected', 'preference');
      checkField(r, 'chosen', info);
      checkField(r, 'rejected', info);
      if (r.margin !== undefined && r.margin !== null && (typeof r.margin !== 'number' || !Number.isFinite(r.margin))) {
        throw new RowProblem("wrong type for 'margin'", `field 'margin' must be a finite number, got ${typeName(r.margin)}`);
      }
      if (r.prompt !== undefined) {
        checkField(r, 'prompt', info);
        if (info.conversational) checkPromptEnd(r.prompt as ChatMessage[], 'prompt');
        return r;
      }
      const ex = extractPrompt(r.chosen as TextOrMessages, r.rejected as TextOrMessages);
      if (info.conversational && (ex.prompt as ChatMessage[]).length === 0) {
        throw new RowProblem('no shared prompt', 'no prompt field, and chosen and rejected share no leading messages to take as the prompt (TRL\'s implicit prompt); add a \'prompt\' field');
      }
      if (info.conversational && ((ex.chosen as ChatMessage[]).length === 0 || (ex.rejected as ChatMessage[]).length === 0)) {
        throw new RowProblem('no shared prompt', 'no prompt field, and chosen and rejected are not two answers after a shared prompt; add a \'prompt\' field');
      }
      if (info.conversational) checkPromptEnd(ex.prompt as ChatMessage[], 'prompt');
      const out: Row = { ...r, ...ex };
      const src = rowSource(r);
      return src === undefined ? out : tagRowSource(out, src);
    }
  }
}

export function isFormat(v: unknown): v is DatasetFormat {
  return typeof v === 'string' && (DATASET_FORMATS as readonly string[]).includes(v);
}

export const FORMAT_NEEDS = NEEDS;
