// Tiny models, tokenizer and helpers shared by the offline-trainer tests (SFT, Reward, DPO).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCausalLM, createCharTokenizer, createRewardModel, noGrad, setNumThreads, type CausalLM, type RewardModel, type Tensor } from '../../src/index.js';

// Tiny models gain nothing from intra-op threads, and two vitest workers on two cores with two OpenMP
// threads each spin against each other (a step went from ~15 ms to ~2 s under load).
setNumThreads(1);

export const tok = createCharTokenizer('abcdefgh:=> ');

export function tinyConfig(): Record<string, unknown> {
  return {
    model_type: 'llama', vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128,
    pad_token_id: tok.padTokenId, eos_token_id: tok.eosTokenId, bos_token_id: tok.bosTokenId,
  };
}

export function tinyLM(seed = 0): CausalLM {
  return createCausalLM(tinyConfig(), { seed });
}

export function tinyRM(seed = 0): RewardModel {
  return createRewardModel({ ...tinyConfig(), model_type: 'qwen2' }, { seed });
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `llmrl-${prefix}-`));
}

/** Seeded uniform [0, 1) (mulberry32) for synthetic data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Copies of the gradients of `params` as flat number arrays (null where there is none). */
export function grads(params: Tensor[]): (Float32Array | null)[] {
  return noGrad(() => params.map((p) => {
    const g = p.grad;
    if (!g) return null;
    const a = g.toTypedArray() as Float32Array;
    g.dispose();
    return a;
  }));
}

export function zeroGrads(params: Tensor[]): void {
  for (const p of params) p.grad = null;
}

/** Largest |a − b| over two gradient lists, and the largest |a|. */
export function maxDiff(a: (Float32Array | null)[], b: (Float32Array | null)[]): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  a.forEach((x, i) => {
    const y = b[i];
    if (!x || !y) {
      if (x !== y) diff = Infinity;
      return;
    }
    for (let j = 0; j < x.length; j++) {
      diff = Math.max(diff, Math.abs(x[j] - y[j]));
      scale = Math.max(scale, Math.abs(x[j]));
    }
  });
  return { diff, scale };
}
