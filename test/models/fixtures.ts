// Shared helpers for the model tests: the fixtures made by scripts/fixtures/make_model_fixtures.py
// (tiny random HF models + what transformers computed for them).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { Tensor, tensor, loadSafetensors } from '../../src/index.js';

export const MODELS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'models');
export const CAUSAL = ['gpt2', 'llama', 'qwen2', 'mistral'] as const;
export const PYTHON = '/tmp/benchvenv/bin/python';
/** transformers + torch available (the save → transformers tests need them). */
export const hasTransformers = fs.existsSync(PYTHON)
  && spawnSync(PYTHON, ['-c', 'import torch, transformers, safetensors'], { stdio: 'ignore' }).status === 0;

export interface CausalReference {
  architecture: string;
  input_ids: number[][];
  attention_mask: number[][];
  position_ids: number[][];
  pad_token_id: number;
  max_new_tokens: number;
  greedy: number[][];
  eos_token_id: number;
  greedy_eos: number[][];
}

export function causalRef(name: string): CausalReference {
  return JSON.parse(fs.readFileSync(path.join(MODELS, name, 'reference.json'), 'utf8')) as CausalReference;
}

/** transformers' logits for the reference batch `[B, T, V]` (caller disposes). */
export function refLogits(name: string): Tensor {
  return loadSafetensors(path.join(MODELS, name, 'reference.safetensors')).logits;
}

export const ids = (a: number[][]): Tensor => tensor(a, { dtype: 'int64' });

/** Max |a − b| over positions where mask [B, T] is 1 (a, b: [B, T, V]). */
export function maxDiffMasked(a: Tensor, b: Tensor, mask: number[][]): number {
  const x = a.toArray() as number[][][];
  const y = b.toArray() as number[][][];
  let m = 0;
  mask.forEach((row, i) => row.forEach((v, j) => {
    if (!v) return;
    for (let k = 0; k < x[i][j].length; k++) m = Math.max(m, Math.abs(x[i][j][k] - y[i][j][k]));
  }));
  return m;
}
