// Tokenizers from Hugging Face folders: tokenizer.json (+ tokenizer_config.json, special tokens,
// padding side, chat template) through @huggingface/tokenizers (a JS port of the Rust `tokenizers`),
// chat templates rendered with @huggingface/jinja (the Jinja subset HF chat templates use), and
// batch encoding into padded int64 tensors for the models.
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { tensor, type Tensor } from '../tensor/index.js';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (BOS/EOS per its post-processor). Default true. */
  addSpecialTokens?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** 'longest' (default) pads to the longest row; 'max_length' to maxLength; false: rows must be equal. */
  padding?: 'longest' | 'max_length' | false;
  /** Truncate rows longer than this (from the side given by truncationSide). */
  maxLength?: number;
  truncation?: boolean;
  /** Default: the tokenizer's paddingSide. Prompts for generation are left-padded. */
  paddingSide?: 'left' | 'right';
  truncationSide?: 'left' | 'right';
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's header so the model continues as the assistant. Default false. */
  addGenerationPrompt?: boolean;
  /** Return token ids (encoded without extra special tokens) instead of text. Default false. */
  tokenize?: boolean;
  /** Template to use instead of the tokenizer's own (a string, or the name of a named template). */
  chatTemplate?: string;
  tools?: unknown[];
  documents?: unknown[];
  /** Extra variables for the template (e.g. enable_thinking). */
  extra?: Record<string, unknown>;
}

type SpecialToken = string | { content: string } | null | undefined;
const tokenText = (t: SpecialToken): string | null => (t == null ? null : typeof t === 'string' ? t : t.content ?? null);

export class Tokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  paddingSide: 'left' | 'right';
  readonly modelMaxLength: number;
  readonly chatTemplate: string | null;
  private readonly namedTemplates: Map<string, string>;
  private readonly templateCache = new Map<string, Template>();

  constructor(
    /** The parsed tokenizer.json. */
    readonly json: Record<string, unknown>,
    /** The parsed tokenizer_config.json ({} when absent). */
    readonly config: Record<string, unknown>,
    private readonly inner: HFTokenizer = new HFTokenizer(json, config),
  ) {
    this.bosToken = tokenText(config.bos_token as SpecialToken);
    this.eosToken = tokenText(config.eos_token as SpecialToken);
    this.padToken = tokenText(config.pad_token as SpecialToken);
    this.unkToken = tokenText(config.unk_token as SpecialToken);
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.modelMaxLength = typeof config.model_max_length === 'number' && config.model_max_length < 1e15 ? config.model_max_length : Infinity;
    this.namedTemplates = new Map();
    const ct = config.chat_template;
    if (Array.isArray(ct)) for (const t of ct as { name: string; template: string }[]) this.namedTemplates.set(t.name, t.template);
    this.chatTemplate = typeof ct === 'string' ? ct : this.namedTemplates.get('default') ?? null;
  }

  get bosTokenId(): number | null { return this.idOf(this.bosToken); }
  get eosTokenId(): number | null { return this.idOf(this.eosToken); }
  /** The pad id; falls back to EOS (the usual choice for causal LMs without a pad token). */
  get padTokenId(): number | null { return this.idOf(this.padToken) ?? this.eosTokenId; }
  get vocabSize(): number {
    const model = this.json.model as { vocab?: Record<string, number> | [string, number][] };
    const base = Array.isArray(model.vocab) ? model.vocab.length : Object.keys(model.vocab ?? {}).length;
    const added = (this.json.added_tokens as { id: number }[] | undefined) ?? [];
    return Math.max(base, ...added.map((t) => t.id + 1));
  }

  private idOf(token: string | null): number | null {
    if (token == null) return null;
    return this.inner.token_to_id(token) ?? null;
  }
  tokenToId(token: string): number | null { return this.idOf(token); }
  idToToken(id: number): string | null { return this.inner.id_to_token(id) ?? null; }

  /** Text → token ids. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: 'text' must be a string, got ${typeof text}`);
    return this.inner.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Token ids → text. */
  decode(ids: number[] | Tensor, opts: { skipSpecialTokens?: boolean } = {}): string {
    const list = Array.isArray(ids) ? ids : (ids.toArray() as number[]);
    if (list.length === 0) return '';
    return this.inner.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  batchDecode(rows: number[][] | Tensor, opts: { skipSpecialTokens?: boolean } = {}): string[] {
    const list = Array.isArray(rows) ? rows : (rows.toArray() as number[][]);
    return list.map((r) => this.decode(r, opts));
  }

  /**
   * Encodes several texts into a padded batch: `inputIds` and `attentionMask` `[B, T]` int64
   * (mask 1 on real tokens). Prompts for generation want `paddingSide: 'left'`.
   */
  encodeBatch(texts: string[], opts: BatchEncodeOptions = {}): { inputIds: Tensor; attentionMask: Tensor; lengths: number[] } {
    if (!Array.isArray(texts) || texts.length === 0) throw new TypeError('encodeBatch: \'texts\' must be a non-empty array of strings');
    const side = opts.paddingSide ?? this.paddingSide;
    let rows = texts.map((t) => this.encode(t, opts));
    if (opts.truncation || opts.maxLength !== undefined) {
      const max = opts.maxLength ?? this.modelMaxLength;
      rows = rows.map((r) => (r.length <= max ? r : opts.truncationSide === 'left' ? r.slice(r.length - max) : r.slice(0, max)));
    }
    return this.pad(rows, { ...opts, paddingSide: side });
  }

  /** Pads already-tokenised rows into `[B, T]` int64 tensors. */
  pad(rows: number[][], opts: { padding?: 'longest' | 'max_length' | false; maxLength?: number; paddingSide?: 'left' | 'right' } = {}): { inputIds: Tensor; attentionMask: Tensor; lengths: number[] } {
    const padId = this.padTokenId;
    const longest = Math.max(...rows.map((r) => r.length));
    const padding = opts.padding ?? 'longest';
    if (padding === false && rows.some((r) => r.length !== longest)) {
      throw new RangeError('pad: rows have different lengths and padding is false; use padding: \'longest\'');
    }
    const T = padding === 'max_length' ? Math.max(opts.maxLength ?? longest, longest) : longest;
    if (padId === null && rows.some((r) => r.length < T)) {
      throw new Error('pad: the tokenizer has neither a pad token nor an EOS token to pad with; set tokenizer_config.json pad_token');
    }
    const side = opts.paddingSide ?? this.paddingSide;
    const ids = new Float64Array(rows.length * T);
    const mask = new Float64Array(rows.length * T);
    rows.forEach((r, b) => {
      const off = side === 'left' ? T - r.length : 0;
      for (let t = 0; t < T; t++) ids[b * T + t] = padId ?? 0;
      for (let t = 0; t < r.length; t++) {
        ids[b * T + off + t] = r[t];
        mask[b * T + off + t] = 1;
      }
    });
    return {
      inputIds: tensor(ids, { shape: [rows.length, T], dtype: 'int64' }),
      attentionMask: tensor(mask, { shape: [rows.length, T], dtype: 'int64' }),
      lengths: rows.map((r) => r.length),
    };
  }

  /**
   * Renders a conversation with the tokenizer's chat template (as transformers'
   * `apply_chat_template`): variables `messages`, `add_generation_prompt`, the special tokens,
   * `tools`, `documents`, plus `raise_exception` and `strftime_now` (built into the Jinja port).
   */
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string;
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string | number[] {
    if (!Array.isArray(messages)) throw new TypeError('applyChatTemplate: \'messages\' must be an array of { role, content }');
    messages.forEach((m, i) => {
      if (!m || typeof m.role !== 'string') throw new TypeError(`applyChatTemplate: messages[${i}] must have a string 'role'`);
    });
    const source = opts.chatTemplate !== undefined ? this.namedTemplates.get(opts.chatTemplate) ?? opts.chatTemplate : this.chatTemplate;
    if (!source) {
      throw new Error('applyChatTemplate: this tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja); pass { chatTemplate } explicitly');
    }
    let tpl = this.templateCache.get(source);
    if (!tpl) {
      tpl = new Template(source);
      this.templateCache.set(source, tpl);
    }
    const specials: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.config)) if (k.endsWith('_token')) specials[k] = tokenText(v as SpecialToken);
    const text = tpl.render({
      ...specials,
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      tools: opts.tools,
      documents: opts.documents,
      // raise_exception and strftime_now are built into @huggingface/jinja's environment.
      ...opts.extra,
    });
    return opts.tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }

  /** Writes tokenizer.json and tokenizer_config.json into `dir` (each atomically). */
  save(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    writeAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.json, null, 2));
    writeAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(this.config, null, 2));
  }
}

export function writeAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/**
 * Loads a Hugging Face tokenizer folder: tokenizer.json (required), tokenizer_config.json and
 * chat_template.jinja (optional; a .jinja file wins, as in recent transformers).
 */
export function loadTokenizer(dir: string): Tokenizer {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) {
    throw new Error(`loadTokenizer: ${file} not found; llmrl needs the fast-tokenizer file tokenizer.json (convert a slow tokenizer with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))`);
  }
  const json = readJson(file);
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const config = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
  const jinja = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinja)) config.chat_template = fs.readFileSync(jinja, 'utf8');
  try {
    return new Tokenizer(json, config);
  } catch (e) {
    throw new Error(`loadTokenizer: ${file}: ${(e as Error).message}`);
  }
}
