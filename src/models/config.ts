// Model configuration: reads a Hugging Face config.json (transformers 4.x and 5.x spellings) into
// one normalised, typed ModelConfig, and writes it back as a config.json transformers loads.
//
// Supported architectures (the `architectures[0]` field, or `model_type` when that is absent):
//   GPT2LMHeadModel / GPT2ForSequenceClassification                          family 'gpt2'
//   LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM and their
//   *ForSequenceClassification twins                                          family 'llama'
// transformers 5 moved `rope_theta` / `rope_scaling` into `rope_parameters` and `torch_dtype` to
// `dtype`; both spellings are read, and both are written so 4.x and 5.x load what we save.
import type { DType } from '../tensor/index.js';

export type ModelType = 'gpt2' | 'llama' | 'qwen2' | 'mistral';
export type HeadKind = 'causal' | 'score';
export type Activation = 'silu' | 'gelu' | 'gelu_tanh' | 'relu';

/** Rotary position embedding parameters (Llama family). */
export interface RopeConfig {
  theta: number;
  /** 'default', 'linear' (positions / factor) or 'llama3' (Llama 3.1 band-wise scaling). */
  type: 'default' | 'linear' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** The normalised configuration every model class reads (camelCase; HF names in comments). */
export interface ModelConfig {
  modelType: ModelType;
  vocabSize: number; //             vocab_size
  hiddenSize: number; //            hidden_size | n_embd
  numLayers: number; //             num_hidden_layers | n_layer
  numHeads: number; //              num_attention_heads | n_head
  numKvHeads: number; //            num_key_value_heads (= numHeads for GPT-2)
  headDim: number; //               head_dim (default hidden / heads)
  intermediateSize: number; //      intermediate_size | n_inner (default 4·hidden)
  maxPositionEmbeddings: number; // max_position_embeddings | n_positions
  normEps: number; //               rms_norm_eps | layer_norm_epsilon
  activation: Activation; //        hidden_act | activation_function
  tieWordEmbeddings: boolean; //    tie_word_embeddings
  /** Biases on q/k/v (Qwen2: true; Llama: attention_bias). */
  qkvBias: boolean;
  /** Bias on the attention output projection (Llama: attention_bias). */
  oBias: boolean;
  /** Biases in the MLP (Llama: mlp_bias). */
  mlpBias: boolean;
  /** Rotary embeddings (null for GPT-2's learned positions). */
  rope: RopeConfig | null;
  /** Per layer: the sliding attention window in tokens, or null for full causal attention. */
  slidingWindow: (number | null)[];
  initializerRange: number;
  /** GPT-2: divide scores by √headDim (scale_attn_weights, default true). */
  scaleAttnWeights: boolean;
  /** GPT-2: additionally divide by layer index + 1 (scale_attn_by_inverse_layer_idx). */
  scaleAttnByInverseLayerIdx: boolean;
  padTokenId: number | null;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  /** The checkpoint's dtype (torch_dtype | dtype), when it names one llmrl knows. */
  dtype: DType | null;
  /** Number of score outputs of a *ForSequenceClassification head (num_labels). */
  numLabels: number;
}

export interface ArchitectureInfo {
  modelType: ModelType;
  head: HeadKind;
}

/** HF class name → what it is. */
export const ARCHITECTURES: Record<string, ArchitectureInfo> = {
  GPT2LMHeadModel: { modelType: 'gpt2', head: 'causal' },
  GPT2ForSequenceClassification: { modelType: 'gpt2', head: 'score' },
  LlamaForCausalLM: { modelType: 'llama', head: 'causal' },
  LlamaForSequenceClassification: { modelType: 'llama', head: 'score' },
  Qwen2ForCausalLM: { modelType: 'qwen2', head: 'causal' },
  Qwen2ForSequenceClassification: { modelType: 'qwen2', head: 'score' },
  MistralForCausalLM: { modelType: 'mistral', head: 'causal' },
  MistralForSequenceClassification: { modelType: 'mistral', head: 'score' },
};

const CLASS_PREFIX: Record<ModelType, string> = { gpt2: 'GPT2', llama: 'Llama', qwen2: 'Qwen2', mistral: 'Mistral' };

/** The HF class name for a model type and head: ('qwen2', 'causal') → 'Qwen2ForCausalLM'. */
export function architectureName(t: ModelType, head: HeadKind): string {
  if (head === 'score') return `${CLASS_PREFIX[t]}ForSequenceClassification`;
  return t === 'gpt2' ? 'GPT2LMHeadModel' : `${CLASS_PREFIX[t]}ForCausalLM`;
}

/** The state-dict prefix of the backbone: 'transformer' (GPT-2) or 'model'. */
export function backbonePrefix(t: ModelType): string {
  return t === 'gpt2' ? 'transformer' : 'model';
}

const HF_DTYPES: Record<string, DType> = {
  float32: 'float32', float: 'float32', float64: 'float64', double: 'float64', bfloat16: 'bfloat16',
  float16: 'float16', half: 'float16',
};

/** Error with the config file's name in front. */
function bad(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

type Raw = Record<string, unknown>;

function num(raw: Raw, file: string, keys: string[], def?: number, integer = true): number {
  for (const k of keys) {
    const v = raw[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && (!Number.isInteger(v) || v <= 0))) {
      bad(file, `'${k}' must be a ${integer ? 'positive integer' : 'finite number'}, got ${JSON.stringify(v)}`);
    }
    return v;
  }
  if (def === undefined) bad(file, `missing '${keys[0]}'; a ${String(raw.model_type)} config needs it`);
  return def;
}

function bool(raw: Raw, key: string, def: boolean): boolean {
  const v = raw[key];
  return typeof v === 'boolean' ? v : def;
}

function tokenId(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

function activation(name: unknown, file: string, key: string): Activation {
  switch (name) {
    case 'silu': case 'swish': return 'silu';
    case 'gelu': return 'gelu';
    case 'gelu_new': case 'gelu_pytorch_tanh': case 'gelu_fast': return 'gelu_tanh';
    case 'relu': return 'relu';
    default: return bad(file, `'${key}' ${JSON.stringify(name)} is not supported; llmrl implements silu, gelu, gelu_new / gelu_pytorch_tanh and relu`);
  }
}

/** Which architecture a config.json describes (architectures[0], else model_type + causal head). */
export function detectArchitecture(raw: Raw, file: string): { name: string; info: ArchitectureInfo } {
  const archs = raw.architectures;
  if (Array.isArray(archs) && archs.length) {
    const name = String(archs[0]);
    const info = ARCHITECTURES[name];
    if (!info) {
      bad(file, `unsupported architecture '${name}' (model_type ${JSON.stringify(raw.model_type)}); llmrl supports ${Object.keys(ARCHITECTURES).join(', ')}`);
    }
    return { name, info };
  }
  const mt = raw.model_type;
  if (mt === 'gpt2' || mt === 'llama' || mt === 'qwen2' || mt === 'mistral') {
    return { name: architectureName(mt, 'causal'), info: { modelType: mt, head: 'causal' } };
  }
  return bad(file, `unsupported model_type ${JSON.stringify(mt)} and no known 'architectures'; llmrl supports model_type gpt2, llama, qwen2 and mistral`);
}

function parseRope(raw: Raw, file: string): RopeConfig {
  // transformers 5: rope_parameters { rope_type, rope_theta, ... }; 4.x: rope_theta + rope_scaling { type | rope_type, ... }.
  const params = (raw.rope_parameters ?? null) as Raw | null;
  const scaling = (raw.rope_scaling ?? null) as Raw | null;
  const src: Raw = { ...(scaling ?? {}), ...(params ?? {}) };
  const theta = (src.rope_theta ?? raw.rope_theta ?? 10000) as number;
  if (typeof theta !== 'number' || !(theta > 0)) bad(file, `'rope_theta' must be a positive number, got ${JSON.stringify(theta)}`);
  const type = String(src.rope_type ?? src.type ?? 'default');
  if (src.partial_rotary_factor !== undefined && src.partial_rotary_factor !== 1 && src.partial_rotary_factor !== 1.0) {
    bad(file, `'partial_rotary_factor' ${JSON.stringify(src.partial_rotary_factor)} is not supported (only 1.0)`);
  }
  if (type === 'default') return { theta, type };
  if (type === 'linear') {
    const factor = src.factor as number;
    if (typeof factor !== 'number' || !(factor > 0)) bad(file, `rope_scaling of type 'linear' needs a positive 'factor', got ${JSON.stringify(factor)}`);
    return { theta, type, factor };
  }
  if (type === 'llama3') {
    const need = ['factor', 'low_freq_factor', 'high_freq_factor'];
    for (const k of need) {
      if (typeof src[k] !== 'number') bad(file, `rope_scaling of type 'llama3' needs a number '${k}', got ${JSON.stringify(src[k])}`);
    }
    const orig = (src.original_max_position_embeddings ?? raw.max_position_embeddings) as number;
    if (typeof orig !== 'number') bad(file, `rope_scaling of type 'llama3' needs 'original_max_position_embeddings'`);
    return {
      theta, type, factor: src.factor as number, lowFreqFactor: src.low_freq_factor as number,
      highFreqFactor: src.high_freq_factor as number, originalMaxPositionEmbeddings: orig,
    };
  }
  return bad(file, `rope type '${type}' is not supported; llmrl implements 'default', 'linear' and 'llama3'`);
}

function slidingWindows(raw: Raw, t: ModelType, layers: number, file: string): (number | null)[] {
  const win = raw.sliding_window;
  if (t === 'gpt2' || t === 'llama') return new Array(layers).fill(null);
  const w = typeof win === 'number' && win > 0 ? win : null;
  const types = raw.layer_types;
  if (Array.isArray(types) && types.length === layers) {
    return types.map((lt, i) => {
      if (lt === 'full_attention') return null;
      if (lt === 'sliding_attention') {
        if (w === null) bad(file, `layer_types[${i}] is 'sliding_attention' but 'sliding_window' is ${JSON.stringify(win)}`);
        return w;
      }
      return bad(file, `layer_types[${i}] ${JSON.stringify(lt)} is not supported (full_attention or sliding_attention)`);
    });
  }
  if (t === 'mistral') return new Array(layers).fill(w);
  // Qwen2 (transformers' rule): layers from max_window_layers on slide when use_sliding_window is set.
  if (!raw.use_sliding_window || w === null) return new Array(layers).fill(null);
  const from = typeof raw.max_window_layers === 'number' ? raw.max_window_layers : layers;
  return Array.from({ length: layers }, (_, i) => (i >= from ? w : null));
}

/** Parses a config.json object (`file` names it in errors). */
export function parseConfig(raw: Raw, file = 'config.json'): { config: ModelConfig; architecture: string; head: HeadKind } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad(file, 'the config must be a JSON object');
  const { name, info } = detectArchitecture(raw, file);
  const t = info.modelType;
  if (raw.model_type !== undefined && raw.model_type !== t) {
    bad(file, `architecture '${name}' does not match model_type ${JSON.stringify(raw.model_type)}`);
  }
  const dtypeName = (raw.dtype ?? raw.torch_dtype) as unknown;
  const dtype = typeof dtypeName === 'string' ? HF_DTYPES[dtypeName] ?? null : null;
  const numLabels = typeof raw.num_labels === 'number' ? raw.num_labels
    : raw.id2label && typeof raw.id2label === 'object' ? Object.keys(raw.id2label).length : 2;
  const common = {
    padTokenId: tokenId(raw.pad_token_id),
    bosTokenId: tokenId(raw.bos_token_id),
    eosTokenId: Array.isArray(raw.eos_token_id) ? (raw.eos_token_id as number[]) : tokenId(raw.eos_token_id),
    dtype,
    numLabels,
    initializerRange: num(raw, file, ['initializer_range'], 0.02, false),
    vocabSize: num(raw, file, ['vocab_size']),
  };
  if (t === 'gpt2') {
    const hidden = num(raw, file, ['n_embd', 'hidden_size'], 768);
    const heads = num(raw, file, ['n_head', 'num_attention_heads'], 12);
    if (hidden % heads) bad(file, `n_embd ${hidden} is not divisible by n_head ${heads}`);
    const layers = num(raw, file, ['n_layer', 'num_hidden_layers'], 12);
    return {
      architecture: name, head: info.head,
      config: {
        ...common, modelType: t, hiddenSize: hidden, numLayers: layers, numHeads: heads, numKvHeads: heads,
        headDim: hidden / heads, intermediateSize: num(raw, file, ['n_inner'], 4 * hidden),
        maxPositionEmbeddings: num(raw, file, ['n_positions', 'max_position_embeddings'], 1024),
        normEps: num(raw, file, ['layer_norm_epsilon'], 1e-5, false),
        activation: activation(raw.activation_function ?? 'gelu_new', file, 'activation_function'),
        tieWordEmbeddings: bool(raw, 'tie_word_embeddings', true), qkvBias: true, oBias: true, mlpBias: true,
        rope: null, slidingWindow: new Array(layers).fill(null),
        scaleAttnWeights: bool(raw, 'scale_attn_weights', true),
        scaleAttnByInverseLayerIdx: bool(raw, 'scale_attn_by_inverse_layer_idx', false),
      },
    };
  }
  const hidden = num(raw, file, ['hidden_size']);
  const heads = num(raw, file, ['num_attention_heads']);
  const kv = num(raw, file, ['num_key_value_heads'], heads);
  if (heads % kv) bad(file, `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
  const headDim = num(raw, file, ['head_dim'], Math.floor(hidden / heads));
  if (headDim % 2) bad(file, `head_dim ${headDim} must be even for rotary embeddings`);
  const layers = num(raw, file, ['num_hidden_layers']);
  const attnBias = bool(raw, 'attention_bias', false);
  return {
    architecture: name, head: info.head,
    config: {
      ...common, modelType: t, hiddenSize: hidden, numLayers: layers, numHeads: heads, numKvHeads: kv, headDim,
      intermediateSize: num(raw, file, ['intermediate_size']),
      maxPositionEmbeddings: num(raw, file, ['max_position_embeddings'], 2048),
      normEps: num(raw, file, ['rms_norm_eps'], 1e-6, false),
      activation: activation(raw.hidden_act ?? 'silu', file, 'hidden_act'),
      tieWordEmbeddings: bool(raw, 'tie_word_embeddings', false),
      qkvBias: t === 'qwen2' ? true : attnBias, oBias: t === 'qwen2' ? false : attnBias,
      mlpBias: t === 'llama' ? bool(raw, 'mlp_bias', false) : false,
      rope: parseRope(raw, file), slidingWindow: slidingWindows(raw, t, layers, file),
      scaleAttnWeights: true, scaleAttnByInverseLayerIdx: false,
    },
  };
}

const HF_ACT: Record<ModelType, Record<Activation, string>> = {
  gpt2: { gelu_tanh: 'gelu_new', gelu: 'gelu', relu: 'relu', silu: 'silu' },
  llama: { silu: 'silu', gelu: 'gelu', gelu_tanh: 'gelu_pytorch_tanh', relu: 'relu' },
  qwen2: { silu: 'silu', gelu: 'gelu', gelu_tanh: 'gelu_pytorch_tanh', relu: 'relu' },
  mistral: { silu: 'silu', gelu: 'gelu', gelu_tanh: 'gelu_pytorch_tanh', relu: 'relu' },
};

/**
 * The config.json to write for a model: the fields llmrl reads, from `config`, over `base` (the
 * loaded file's other fields are kept). Writes both transformers 4 and 5 spellings of rope and dtype.
 */
export function toHfConfig(config: ModelConfig, head: HeadKind, dtype: DType, base: Raw = {}): Raw {
  const t = config.modelType;
  const out: Raw = { ...base };
  for (const k of ['_name_or_path', 'transformers_version']) delete out[k];
  out.architectures = [architectureName(t, head)];
  out.model_type = t;
  out.vocab_size = config.vocabSize;
  out.initializer_range = config.initializerRange;
  out.tie_word_embeddings = config.tieWordEmbeddings;
  out.pad_token_id = config.padTokenId;
  out.bos_token_id = config.bosTokenId;
  out.eos_token_id = config.eosTokenId;
  out.dtype = dtype;
  out.torch_dtype = dtype;
  if (head === 'score') {
    // transformers derives num_labels from id2label (it does not save num_labels itself).
    delete out.num_labels;
    if (!base.id2label || Object.keys(base.id2label as object).length !== config.numLabels) {
      out.id2label = Object.fromEntries(Array.from({ length: config.numLabels }, (_, i) => [String(i), `LABEL_${i}`]));
      out.label2id = Object.fromEntries(Array.from({ length: config.numLabels }, (_, i) => [`LABEL_${i}`, i]));
    }
  }
  if (t === 'gpt2') {
    Object.assign(out, {
      n_embd: config.hiddenSize, n_layer: config.numLayers, n_head: config.numHeads, n_inner: config.intermediateSize,
      n_positions: config.maxPositionEmbeddings, layer_norm_epsilon: config.normEps,
      activation_function: HF_ACT.gpt2[config.activation], scale_attn_weights: config.scaleAttnWeights,
      scale_attn_by_inverse_layer_idx: config.scaleAttnByInverseLayerIdx,
    });
    return out;
  }
  Object.assign(out, {
    hidden_size: config.hiddenSize, num_hidden_layers: config.numLayers, num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads, head_dim: config.headDim, intermediate_size: config.intermediateSize,
    max_position_embeddings: config.maxPositionEmbeddings, rms_norm_eps: config.normEps,
    hidden_act: HF_ACT[t][config.activation],
  });
  if (t === 'llama') Object.assign(out, { attention_bias: config.qkvBias, mlp_bias: config.mlpBias });
  const rope = config.rope!;
  const scaling: Raw | null = rope.type === 'default' ? null : rope.type === 'linear'
    ? { rope_type: 'linear', factor: rope.factor }
    : {
      rope_type: 'llama3', factor: rope.factor, low_freq_factor: rope.lowFreqFactor, high_freq_factor: rope.highFreqFactor,
      original_max_position_embeddings: rope.originalMaxPositionEmbeddings,
    };
  out.rope_theta = rope.theta;
  out.rope_scaling = scaling;
  out.rope_parameters = { rope_type: rope.type, rope_theta: rope.theta, ...(scaling ?? {}) };
  const windows = config.slidingWindow;
  const win = windows.find((w) => w !== null) ?? null;
  if (t === 'mistral') {
    out.sliding_window = win;
    if (windows.some((w) => w === null) && win !== null) out.layer_types = windows.map((w) => (w === null ? 'full_attention' : 'sliding_attention'));
  } else if (t === 'qwen2') {
    out.use_sliding_window = win !== null;
    out.sliding_window = win;
    out.layer_types = windows.map((w) => (w === null ? 'full_attention' : 'sliding_attention'));
    if (win !== null) out.max_window_layers = windows.findIndex((w) => w !== null);
  }
  return out;
}
