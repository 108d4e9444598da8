// Row → text → token ids, as TRL does it. Conversational fields are rendered with the tokenizer's
// chat template: a prompt with the generation prompt (or, when it ends with an assistant turn, as a
// message to continue — transformers' continue_final_message); a completion as the suffix of the
// rendered prompt+completion after the rendered prompt. Truncation: `maxPromptLength` keeps the END
// of the prompt (left truncation), `maxCompletionLength` keeps the start, `maxLength` of whole
// sequences keeps the start (SFT) or, for preference pairs, the end by default (DPO's 'keep_end').
// Rows that cannot fit the context (or lose every completion token to truncation) raise an
// `OverlongRow` problem, which collators turn into an error or a counted skip.
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';
import { RowProblem, type FormatInfo, type Row, type TextOrMessages } from './format.js';

export interface RenderOptions {
  /** Chat template to use instead of the tokenizer's own (text, or the name of a named template). */
  chatTemplate?: string;
  /** Extra template variables (transformers' chat_template_kwargs, e.g. { enable_thinking: false }). */
  chatTemplateKwargs?: Record<string, unknown>;
  /** Tool definitions passed to the template. */
  tools?: unknown[];
}

/** A row that does not fit: prompt longer than the context, or no completion token left. */
export class OverlongRow extends RowProblem {
  constructor(message: string) {
    super('overlong', message);
    this.name = 'OverlongRow';
  }
}

function template(tok: Tokenizer, messages: ChatMessage[], opts: RenderOptions, addGenerationPrompt: boolean): string {
  return tok.applyChatTemplate(messages, { addGenerationPrompt, chatTemplate: opts.chatTemplate, tools: opts.tools, extra: opts.chatTemplateKwargs });
}

/**
 * Renders a conversational prompt: ending with a user/tool turn → with the generation prompt; ending
 * with an assistant turn → cut right after that message's content so the model continues it
 * (transformers' continue_final_message, same rule).
 */
export function renderPrompt(tok: Tokenizer, prompt: TextOrMessages, opts: RenderOptions = {}): string {
  if (typeof prompt === 'string') return prompt;
  const last = prompt[prompt.length - 1];
  if (last.role !== 'assistant') return template(tok, prompt, opts, true);
  const rendered = template(tok, prompt, opts, false);
  const content = last.content;
  const stripped = content.trim();
  const loc = rendered.lastIndexOf(stripped);
  if (stripped === '' || loc < 0) {
    throw new RowProblem('template mismatch', 'the prompt ends with an assistant message to continue, but its content does not appear in the rendered chat template');
  }
  const lstripped = content.trimStart();
  return rendered.slice(loc, loc + lstripped.length) === content
    ? rendered.slice(0, loc + lstripped.length)
    : rendered.slice(0, loc + stripped.length);
}

/**
 * The text of a completion: a string as is; messages as the rendered prompt+completion minus the
 * rendered prompt (TRL). Errors if the template does not render the prompt as a prefix.
 */
export function renderCompletion(tok: Tokenizer, prompt: TextOrMessages, completion: TextOrMessages, renderedPrompt: string, field: string, opts: RenderOptions = {}): string {
  if (typeof completion === 'string') return completion;
  if (typeof prompt === 'string') throw new RowProblem(`wrong type for '${field}'`, `field '${field}' is a message list but 'prompt' is a string; use the same kind for both`);
  const full = template(tok, [...prompt, ...completion], opts, false);
  if (!full.startsWith(renderedPrompt)) {
    throw new RowProblem('template mismatch', `the chat template does not render the prompt as a prefix of prompt + ${field}, so the ${field} cannot be separated (TRL raises the same); check the template or use a standard (string) dataset`);
  }
  return full.slice(renderedPrompt.length);
}

/** The prompt and (optional) completion of a row: prompt fields, or `messages` split before a final assistant turn. */
export function promptAndCompletion(row: Row, info: FormatInfo): { prompt: TextOrMessages; completion?: TextOrMessages } {
  if (info.format === 'conversational') {
    const msgs = row.messages as ChatMessage[];
    const lastIsAnswer = msgs[msgs.length - 1].role === 'assistant';
    const prompt = lastIsAnswer ? msgs.slice(0, -1) : msgs;
    if (prompt.length === 0) throw new RowProblem('no prompt', 'the conversation has only an assistant message, so there is no prompt');
    const end = prompt[prompt.length - 1].role;
    if (end !== 'user' && end !== 'tool') {
      throw new RowProblem('bad last role in \'messages\'', `the prompt part of 'messages' ends with a '${end}' message; it must end with a user message`);
    }
    return lastIsAnswer ? { prompt, completion: msgs.slice(-1) } : { prompt };
  }
  if (info.format === 'text') throw new RowProblem('no prompt', 'text rows have no prompt; use prompt or prompt+completion rows');
  return { prompt: row.prompt as TextOrMessages, completion: row.completion as TextOrMessages | undefined };
}

export function checkLength(v: number | undefined, name: string, where: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`${where}: '${name}' must be an integer ≥ 1, got ${v}`);
}

/** Keeps the last `max` ids (left truncation, for prompts). */
export const keepEnd = (ids: number[], max: number | undefined): number[] => (max !== undefined && ids.length > max ? ids.slice(ids.length - max) : ids);
/** Keeps the first `max` ids (right truncation, for completions). */
export const keepStart = (ids: number[], max: number | undefined): number[] => (max !== undefined && ids.length > max ? ids.slice(0, max) : ids);

export interface PromptTokenOptions extends RenderOptions {
  /** Keep only the last this-many prompt tokens (TRL's max_prompt_length; left truncation). */
  maxPromptLength?: number;
  /** Add the tokenizer's special tokens (e.g. BOS) when encoding prompts. Default false (TRL's GRPO/DPO). */
  addSpecialTokens?: boolean;
}

/** Encodes a (rendered) prompt and left-truncates it; an empty prompt is an error (nothing to condition on). */
export function encodePrompt(tok: Tokenizer, text: string, opts: PromptTokenOptions, allowEmpty = false): number[] {
  const ids = keepEnd(tok.encode(text, { addSpecialTokens: opts.addSpecialTokens ?? false }), opts.maxPromptLength);
  if (ids.length === 0 && !allowEmpty) {
    throw new RowProblem('empty prompt', 'the prompt encodes to 0 tokens; generation needs at least one (give the row a prompt, or set addSpecialTokens: true to start with BOS)');
  }
  return ids;
}

/** Encodes a completion text, appends EOS (TRL) and right-truncates. */
export function encodeCompletion(tok: Tokenizer, text: string, appendEos: boolean, maxLen: number | undefined): number[] {
  const ids = tok.encode(text, { addSpecialTokens: false });
  if (appendEos) {
    const eos = tok.eosTokenId;
    if (eos === null) throw new Error('the tokenizer has no EOS token to append to completions; set eos_token in tokenizer_config.json or pass appendEos: false');
    ids.push(eos);
  }
  return keepStart(ids, maxLen);
}

export interface SFTTokenOptions extends RenderOptions {
  /** Truncate sequences to this many tokens, keeping the start (TRL's SFT max_length). Default none. */
  maxLength?: number;
  /** Loss only on completion tokens of prompt+completion rows (TRL's default). Default true. */
  completionOnlyLoss?: boolean;
  /** Loss only on assistant turns of `messages` rows (TRL's assistant_only_loss). Default false. */
  assistantOnlyLoss?: boolean;
  /** Add special tokens (BOS) when encoding standard text, as TRL's SFT does. Default true. */
  addSpecialTokens?: boolean;
  /** Append EOS to standard text/completions not already ending with it (TRL). Default true. */
  appendEos?: boolean;
}

const sameIds = (a: number[], b: number[], n: number): boolean => {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
};

/**
 * SFT tokenisation of one row (TRL's SFTTrainer): `ids` and `lossMask` (1 where the token is a
 * target). Text rows: BOS…EOS, all tokens. Prompt+completion: prompt and prompt+completion encoded
 * separately, the mask 1 after the prompt's length (completionOnlyLoss). Messages: the rendered
 * conversation, all tokens, or with assistantOnlyLoss the assistant turns (found by rendering each
 * prefix of the conversation, which must render as a prefix of the whole).
 */
export function tokenizeSFT(tok: Tokenizer, row: Row, info: FormatInfo, opts: SFTTokenOptions): { ids: number[]; lossMask: number[] } {
  const special = opts.addSpecialTokens ?? true;
  const eos = tok.eosTokenId;
  const withEos = (ids: number[]): number[] => {
    if ((opts.appendEos ?? true) && eos !== null && ids[ids.length - 1] !== eos) ids.push(eos);
    return ids;
  };
  let ids: number[];
  let mask: number[];
  if (info.format === 'text') {
    ids = withEos(tok.encode(row.text as string, { addSpecialTokens: special }));
    mask = ids.map(() => 1);
  } else if (info.format === 'conversational') {
    const msgs = row.messages as ChatMessage[];
    const tpl = { chatTemplate: opts.chatTemplate, tools: opts.tools, extra: opts.chatTemplateKwargs };
    ids = tok.applyChatTemplate(msgs, { ...tpl, tokenize: true });
    mask = ids.map(() => (opts.assistantOnlyLoss ? 0 : 1));
    if (opts.assistantOnlyLoss) {
      msgs.forEach((m, i) => {
        if (m.role !== 'assistant') return;
        const before = i === 0 ? [] : tok.applyChatTemplate(msgs.slice(0, i), { ...tpl, addGenerationPrompt: true, tokenize: true });
        const upto = tok.applyChatTemplate(msgs.slice(0, i + 1), { ...tpl, tokenize: true });
        if (!sameIds(ids, upto, upto.length) || !sameIds(upto, before, before.length)) {
          throw new RowProblem('template mismatch', 'assistantOnlyLoss needs a chat template that renders the first turns of a conversation as a prefix of the whole; this one does not (set assistantOnlyLoss: false)');
        }
        for (let t = before.length; t < upto.length; t++) mask[t] = 1;
      });
    }
  } else if (info.format === 'prompt_completion') {
    let promptIds: number[];
    if (info.conversational) {
      const promptText = renderPrompt(tok, row.prompt as TextOrMessages, opts);
      promptIds = tok.encode(promptText, { addSpecialTokens: false });
      const full = [...(row.prompt as ChatMessage[]), ...(row.completion as ChatMessage[])];
      ids = tok.applyChatTemplate(full, { chatTemplate: opts.chatTemplate, tools: opts.tools, extra: opts.chatTemplateKwargs, tokenize: true });
    } else {
      promptIds = tok.encode(row.prompt as string, { addSpecialTokens: special });
      ids = withEos(tok.encode((row.prompt as string) + (row.completion as string), { addSpecialTokens: special }));
    }
    const p = Math.min(promptIds.length, ids.length);
    mask = ids.map((_, t) => ((opts.completionOnlyLoss ?? true) && t < p ? 0 : 1));
  } else {
    throw new RowProblem('wrong format', `SFT needs text, prompt+completion or messages rows, got ${info.format} rows`);
  }
  ids = keepStart(ids, opts.maxLength);
  mask = keepStart(mask, opts.maxLength);
  if (!mask.includes(1)) {
    throw new OverlongRow(`no completion token is left after truncation to maxLength ${opts.maxLength} (the prompt alone is that long), so the row has nothing to learn from`);
  }
  return { ids, lossMask: mask };
}

export interface PairTokenOptions extends PromptTokenOptions {
  /** Keep only the first this-many completion tokens (after EOS is appended, as TRL). */
  maxCompletionLength?: number;
  /** Append EOS to every completion, as TRL's DPO does (even after a chat template's end-of-turn). Default true. */
  appendEos?: boolean;
}

/**
 * Preference/pair tokenisation (TRL's DPOTrainer.tokenize_row): prompt, chosen and rejected encoded
 * separately without special tokens, EOS appended to each completion, prompt left-truncated,
 * completions right-truncated.
 */
export function tokenizePair(tok: Tokenizer, prompt: TextOrMessages, completions: [string, TextOrMessages][], opts: PairTokenOptions, allowEmptyPrompt: boolean): { promptIds: number[]; completionIds: number[][] } {
  const promptText = renderPrompt(tok, prompt, opts);
  const promptIds = encodePrompt(tok, promptText, opts, allowEmptyPrompt);
  const completionIds = completions.map(([field, c]) => {
    const text = renderCompletion(tok, prompt, c, promptText, field, opts);
    return encodeCompletion(tok, text, opts.appendEos ?? true, opts.maxCompletionLength);
  });
  return { promptIds, completionIds };
}
