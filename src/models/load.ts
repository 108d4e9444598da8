// Loading models from Hugging Face folders and creating fresh ones.
//   loadCausalLM(dir)      config.json + model.safetensors (or a sharded index) → CausalLM
//   loadRewardModel(dir)   a *ForSequenceClassification folder → RewardModel (score head from the file)
//   loadValueModel(dir)    the same, or a causal LM folder: backbone weights + a fresh score head
//   createCausalLM(config) / createRewardModel(config)   HF-style init: N(0, initializer_range),
//                          zero biases, unit norms (GPT-2: residual projections / √(2·layers))
// Loading is all-or-nothing. First the model is built as a dry run that only records each
// parameter's name and shape; every name is then looked up in the checkpoint's headers (missing,
// unexpected, wrong-shaped tensors fail here, naming the file and the tensor, before any data is
// read); then the tensors are read and handed to the real model as its parameters (no second copy).
// On any failure everything created so far is disposed.
import { Tensor, empty, manualSeed, noGrad, ones, randn, zeros, isFloating, type DType, type Device } from '../tensor/index.js';
import { loadSafetensors } from '../io/safetensors.js';
import { backbonePrefix, parseConfig, type HeadKind, type ModelConfig } from './config.js';
import type { Init, ParamSource } from './layers.js';
import { CausalLM, causalLMClass, type PretrainedModel } from './base.js';
import { RewardModel } from './heads.js';
import { readModelFolder, type ModelFolder, type TensorLocation } from './folder.js';

export interface LoadOptions {
  /** Parameter dtype: a floating dtype, or 'auto' for the checkpoint's (config `dtype` / `torch_dtype`).
   *  Default 'float32' (training on CPU wants float32; pass 'bfloat16' or 'auto' to keep half precision). */
  dtype?: DType | 'auto';
  /** Default 'cpu'. */
  device?: Device;
  /** Reject tensors in the checkpoint that the model does not use (default true). Known leftovers
   *  (GPT-2's `attn.bias` masks, `rotary_emb.inv_freq`, a tied `lm_head.weight`) are always ignored. */
  strict?: boolean;
}

export interface RewardLoadOptions extends LoadOptions {
  /** Accept a causal LM folder and give it a freshly initialised score head (default: false for
   *  loadRewardModel — scoring with a random head is almost always a mistake — true for loadValueModel). */
  initScoreHead?: boolean;
}

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  /** Seeds libtorch's generator (manualSeed) before drawing the weights. */
  seed?: number;
}

const IGNORED = [/\.attn\.(masked_)?bias$/, /rotary_emb\.inv_freq$/];

function checkDtype(fn: string, dtype: unknown): void {
  if (dtype !== undefined && dtype !== 'auto' && !(typeof dtype === 'string' && isFloating(dtype as DType))) {
    throw new TypeError(`${fn}: 'dtype' must be 'float32', 'bfloat16', 'float16', 'float64' or 'auto', got ${JSON.stringify(dtype)}`);
  }
}

/** Random initialisation (transformers' `_init_weights`). */
class InitSource implements ParamSource {
  constructor(readonly dtype: DType, readonly device: Device) {}
  take(_name: string, shape: number[], init: Init): Tensor {
    const o = { dtype: this.dtype, device: this.device };
    if (init === 'zeros') return zeros(shape, o);
    if (init === 'ones') return ones(shape, o);
    return noGrad(() => {
      const t = randn(shape, o).mul_(init.normal);
      if (init.zeroRow !== undefined) t.select(0, init.zeroRow).zero_().dispose();
      return t;
    });
  }
}

/** Runs `build`, disposing every tensor the source handed out if it throws (nothing half-built). */
function buildSafely<M extends PretrainedModel>(src: ParamSource, build: (src: ParamSource) => M): M {
  const handed: Tensor[] = [];
  const tracking: ParamSource = {
    dtype: src.dtype,
    device: src.device,
    take(name, shape, init) {
      const t = src.take(name, shape, init);
      handed.push(t);
      return t;
    },
  };
  try {
    return build(tracking);
  } catch (e) {
    for (const t of handed) t.dispose();
    throw e;
  }
}

/** Records names and shapes; hands out empty placeholders. */
class SpecSource implements ParamSource {
  readonly specs: { name: string; shape: number[] }[] = [];
  constructor(readonly dtype: DType, readonly device: Device) {}
  take(name: string, shape: number[]): Tensor {
    this.specs.push({ name, shape: [...shape] });
    return empty([0], { dtype: this.dtype });
  }
}

/** Hands out loaded tensors by name; names in `fresh` are initialised instead. */
class DictSource implements ParamSource {
  private readonly init: InitSource;
  constructor(readonly dtype: DType, readonly device: Device, private readonly tensors: Map<string, Tensor>, private readonly fresh: Set<string>) {
    this.init = new InitSource(dtype, device);
  }
  take(name: string, shape: number[], init: Init): Tensor {
    if (this.fresh.has(name)) return this.init.take(name, shape, init);
    const t = this.tensors.get(name);
    if (!t) throw new Error(`internal: no tensor loaded for '${name}'`);
    this.tensors.delete(name);
    return t;
  }
}

type Build = (src: ParamSource) => PretrainedModel;

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Checks the checkpoint against the model, reads the tensors, builds the model. */
function loadInto(fn: string, folder: ModelFolder, config: ModelConfig, build: Build, opts: LoadOptions, fresh: Set<string>, ignore: Set<string>): PretrainedModel {
  const dtype: DType = opts.dtype === 'auto' ? config.dtype ?? 'float32' : opts.dtype ?? 'float32';
  const device: Device = opts.device ?? 'cpu';
  const dry = new SpecSource(dtype, device);
  buildSafely(dry, build).dispose();

  // Resolve each parameter to a checkpoint tensor: `model.x` may be stored bare (`x`) by
  // checkpoints saved from the backbone class (e.g. the original gpt2 weights: `h.0.attn…`).
  const prefix = `${backbonePrefix(config.modelType)}.`;
  const source = new Map<string, string>(); // parameter name → checkpoint name
  const used = new Set<string>();
  const missing: string[] = [];
  for (const { name, shape } of dry.specs) {
    if (fresh.has(name)) continue;
    let key = name;
    if (!folder.tensors.has(key) && name.startsWith(prefix) && folder.tensors.has(name.slice(prefix.length))) key = name.slice(prefix.length);
    const loc = folder.tensors.get(key);
    if (!loc) {
      missing.push(name);
      continue;
    }
    if (loc.shape.length !== shape.length || loc.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${loc.file}: tensor '${key}' has shape ${fmt(loc.shape)} but the model built from ${folder.configFile} needs ${fmt(shape)}; the weights do not match the config`);
    }
    if (!isFloating(loc.dtype)) throw new Error(`${loc.file}: tensor '${key}' has dtype ${loc.dtype}; model weights must be floating point`);
    source.set(name, key);
    used.add(key);
  }
  if (missing.length) {
    const first = missing[0];
    const file = folder.indexed?.get(first) ?? folder.weightsFile;
    const more = missing.length > 1 ? ` (and ${missing.length - 1} more: ${missing.slice(1, 6).map((m) => `'${m}'`).join(', ')}${missing.length > 6 ? ', …' : ''})` : '';
    throw new Error(`${file}: missing tensor '${first}'${more}, which ${config.modelType} models with this config.json need; the checkpoint is incomplete or for another architecture`);
  }
  if (opts.strict ?? true) {
    const extra = [...folder.tensors.keys()].filter((k) => !used.has(k) && !ignore.has(k) && !IGNORED.some((re) => re.test(k)));
    if (extra.length) {
      const loc = folder.tensors.get(extra[0])!;
      throw new Error(`${loc.file}: unexpected tensor '${extra[0]}'${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''} that the ${config.modelType} model does not use; the checkpoint does not match config.json (pass { strict: false } to ignore extra tensors)`);
    }
  }

  // Read the data, file by file.
  const byFile = new Map<string, string[]>();
  for (const key of source.values()) {
    const f = (folder.tensors.get(key) as TensorLocation).file;
    byFile.set(f, [...(byFile.get(f) ?? []), key]);
  }
  const byKey = new Map<string, Tensor>(); // checkpoint name → tensor (ours until the model takes it)
  try {
    for (const [file, names] of byFile) {
      const part = loadSafetensors(file, { names, dtype, device });
      for (const [k, t] of Object.entries(part)) byKey.set(k, t);
    }
    const loaded = new Map<string, Tensor>();
    for (const [name, key] of source) loaded.set(name, byKey.get(key)!);
    return buildSafely(new DictSource(dtype, device, loaded, fresh), build);
  } catch (e) {
    for (const t of byKey.values()) if (!t.isDisposed) t.dispose();
    throw e instanceof Error && !e.message.startsWith(folder.dir) ? new Error(`${fn}(${folder.dir}): ${e.message}`, { cause: e }) : e;
  }
}

function rawExtras(raw: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(raw)) as Record<string, unknown>;
}

/**
 * Loads a causal LM (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM) from a
 * Hugging Face folder.
 * @example const model = loadCausalLM('models/Qwen2.5-0.5B', { dtype: 'float32' });
 */
export function loadCausalLM(dir: string, opts: LoadOptions = {}): CausalLM {
  checkDtype('loadCausalLM', opts.dtype);
  const folder = readModelFolder(dir);
  const { config, head, architecture } = parseConfig(folder.config, folder.configFile);
  if (head !== 'causal') {
    throw new Error(`${folder.configFile}: '${architecture}' is a sequence-classification (reward/value) model, not a causal LM; load it with loadRewardModel or loadValueModel`);
  }
  const Cls = causalLMClass(config.modelType);
  const ignore = new Set(config.tieWordEmbeddings ? ['lm_head.weight'] : []);
  return loadInto('loadCausalLM', folder, config, (src) => new Cls(src, config, rawExtras(folder.config)), opts, new Set(), ignore) as CausalLM;
}

function loadScoreModel(fn: string, dir: string, opts: RewardLoadOptions, initDefault: boolean): RewardModel {
  checkDtype(fn, opts.dtype);
  const folder = readModelFolder(dir);
  const { config, head, architecture } = parseConfig(folder.config, folder.configFile);
  const fresh = new Set<string>();
  const ignore = new Set<string>();
  const extra = rawExtras(folder.config);
  if (head === 'causal') {
    if (!(opts.initScoreHead ?? initDefault)) {
      throw new Error(`${folder.configFile}: '${architecture}' is a causal LM without a score head; pass { initScoreHead: true } to start a reward model from it with a freshly initialised head, or load a *ForSequenceClassification checkpoint`);
    }
    fresh.add('score.weight');
    ignore.add('lm_head.weight');
    delete extra.architectures;
  } else if (config.numLabels !== 1) {
    throw new Error(`${folder.configFile}: '${architecture}' has ${config.numLabels} labels; reward and value models need num_labels 1`);
  }
  return loadInto(fn, folder, config, (src) => new RewardModel(src, config, extra), opts, fresh, ignore) as RewardModel;
}

/**
 * Loads a reward model saved as *ForSequenceClassification (num_labels 1), e.g. by transformers or TRL.
 * @example const rm = loadRewardModel('rm/'); const r = rm.score(ids, { attentionMask: mask }); // [B]
 */
export function loadRewardModel(dir: string, opts: RewardLoadOptions = {}): RewardModel {
  return loadScoreModel('loadRewardModel', dir, opts, false);
}

/**
 * Loads a PPO value model: a *ForSequenceClassification folder as it is, or a causal LM folder's
 * backbone with a fresh score head (transformers' init, N(0, initializer_range)).
 */
export function loadValueModel(dir: string, opts: RewardLoadOptions = {}): RewardModel {
  return loadScoreModel('loadValueModel', dir, opts, true);
}

function createChecked(fn: string, raw: Record<string, unknown>, opts: CreateOptions): { config: ModelConfig; head: HeadKind; dtype: DType; device: Device } {
  if (raw === null || typeof raw !== 'object') throw new TypeError(`${fn}: 'config' must be a config.json-style object ({ model_type: 'llama', hidden_size, … }), got ${raw === null ? 'null' : typeof raw}`);
  if (opts.dtype !== undefined && !isFloating(opts.dtype)) throw new TypeError(`${fn}: 'dtype' must be a floating dtype, got ${JSON.stringify(opts.dtype)}`);
  const { config, head } = parseConfig(raw, `${fn}: config`);
  if (opts.seed !== undefined) manualSeed(opts.seed);
  return { config, head, dtype: opts.dtype ?? config.dtype ?? 'float32', device: opts.device ?? 'cpu' };
}

/**
 * A randomly initialised causal LM for training from scratch, from a config.json-style object
 * (snake_case keys as transformers writes them; unspecified fields take transformers' defaults).
 * @example createCausalLM({ model_type: 'llama', vocab_size: 256, hidden_size: 64, intermediate_size: 128,
 *   num_hidden_layers: 2, num_attention_heads: 4 }, { seed: 0 })
 */
export function createCausalLM(config: Record<string, unknown>, opts: CreateOptions = {}): CausalLM {
  const { config: c, head, dtype, device } = createChecked('createCausalLM', config, opts);
  if (head !== 'causal') throw new Error(`createCausalLM: the config's architecture is a sequence-classification model; use createRewardModel`);
  const Cls = causalLMClass(c.modelType);
  const extra = { ...config };
  return buildSafely(new InitSource(dtype, device), (src) => new Cls(src, c, extra));
}

/** A randomly initialised reward / value model (backbone + score head) from a config.json-style object. */
export function createRewardModel(config: Record<string, unknown>, opts: CreateOptions = {}): RewardModel {
  const { config: c, dtype, device } = createChecked('createRewardModel', config, opts);
  const extra = { ...config };
  delete extra.architectures;
  return buildSafely(new InitSource(dtype, device), (src) => new RewardModel(src, c, extra));
}
