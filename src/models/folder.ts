// Hugging Face model folders on disk: config.json plus weights in model.safetensors, or sharded as
// model-0000N-of-0000M.safetensors listed by model.safetensors.index.json ({ weight_map: name → file }).
// Reading takes only the headers (names, dtypes, shapes), so a checkpoint is checked against the
// model before any tensor data is read. Writing puts every file in place by rename from a
// temporary folder inside `dir`, so each file appears whole or not at all (DESIGN.md "Errors").
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Tensor } from '../tensor/index.js';
import { readSafetensorsHeader, saveSafetensors, type SafetensorsTensorInfo } from '../io/safetensors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Where one tensor of a checkpoint lives. */
export interface TensorLocation extends SafetensorsTensorInfo {
  /** Absolute path of the safetensors file holding it. */
  file: string;
}

export interface ModelFolder {
  dir: string;
  /** Path of config.json. */
  configFile: string;
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /** What lists the weights: model.safetensors itself, or the index of a sharded checkpoint. */
  weightsFile: string;
  /** Every tensor of the checkpoint by name. */
  tensors: Map<string, TensorLocation>;
  /** For a sharded checkpoint, the shard the index assigns each name to (to tell a missing tensor's file). */
  indexed: Map<string, string> | null;
}

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: not found; ${what}` : `${file}: cannot read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${file}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** Reads config.json and the weight headers of a Hugging Face folder (no tensor data). */
export function readModelFolder(dir: string): ModelFolder {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`loading a model: 'dir' must be a folder path, got ${JSON.stringify(dir)}`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder; pass the Hugging Face model folder (with config.json and model.safetensors)`);
  const configFile = path.join(dir, CONFIG_FILE);
  const config = readJson(configFile, 'a Hugging Face model folder needs config.json next to its weights');
  const single = path.join(dir, WEIGHTS_FILE);
  const index = path.join(dir, INDEX_FILE);
  const tensors = new Map<string, TensorLocation>();
  if (fs.existsSync(single)) {
    const h = readSafetensorsHeader(single);
    for (const [name, info] of Object.entries(h.tensors)) tensors.set(name, { ...info, file: single });
    return { dir, configFile, config, weightsFile: single, tensors, indexed: null };
  }
  if (fs.existsSync(index)) {
    const idx = readJson(index, '');
    const map = idx.weight_map;
    if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Error(`${index}: missing the 'weight_map' object (tensor name → shard file)`);
    const indexed = new Map<string, string>();
    const shards = new Set<string>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
        throw new Error(`${index}: weight_map['${name}'] must be a file name in the folder, got ${JSON.stringify(shard)}`);
      }
      indexed.set(name, path.join(dir, shard));
      shards.add(path.join(dir, shard));
    }
    for (const shard of shards) {
      if (!fs.existsSync(shard)) throw new Error(`${shard}: not found, but ${INDEX_FILE} lists tensors in it`);
      const h = readSafetensorsHeader(shard);
      for (const [name, info] of Object.entries(h.tensors)) tensors.set(name, { ...info, file: shard });
    }
    return { dir, configFile, config, weightsFile: index, tensors, indexed };
  }
  const others = fs.readdirSync(dir).filter((f) => /\.(bin|pt|pth|ckpt|gguf)$/.test(f));
  throw new Error(`${dir}: no ${WEIGHTS_FILE} or ${INDEX_FILE}${others.length ? ` (found ${others.join(', ')}: llmrl reads safetensors only; convert with transformers: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir))` : ''}`);
}

function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * Writes `tensors` as model.safetensors and `config` as config.json into `dir` (created if needed).
 * Both are written into a temporary folder inside `dir` first and renamed into place; a sharded
 * checkpoint previously saved there (index + shards) is removed afterwards so the folder holds one model.
 */
export function writeModelFolder(dir: string, tensors: Record<string, Tensor>, config: Record<string, unknown>): void {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`save: 'dir' must be a folder path, got ${JSON.stringify(dir)}`);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(dir, '.llmrl-save-'));
  try {
    saveSafetensors(path.join(tmp, WEIGHTS_FILE), tensors, { format: 'pt' });
    writeFileAtomic(path.join(tmp, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    fs.renameSync(path.join(tmp, WEIGHTS_FILE), path.join(dir, WEIGHTS_FILE));
    fs.renameSync(path.join(tmp, CONFIG_FILE), path.join(dir, CONFIG_FILE));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(index)) {
    try {
      const map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      for (const shard of new Set(Object.values(map))) {
        if (typeof shard === 'string' && !shard.includes('/') && shard !== WEIGHTS_FILE) fs.rmSync(path.join(dir, shard), { force: true });
      }
    } catch { /* an unreadable stale index: remove it anyway */ }
    fs.rmSync(index, { force: true });
  }
}
