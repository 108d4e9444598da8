// Generation (src/generation): greedy continuations equal transformers' generate on the fixtures,
// EOS handling per row, log-probs equal to a recomputing forward pass, seeded sampling, top-k/top-p
// support, stop strings, and no leaked tensors.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  CausalLM, KVCache, Tensor, cat, loadCausalLM, memory, noGrad, ops, onesLike, tensor, tidy, topKFilter, topPFilter,
} from '../../src/index.js';
import { native } from '../../src/native/addon.js';
import { CAUSAL, MODELS, causalRef, ids } from '../models/fixtures.js';

const models = new Map<string, CausalLM>();
beforeAll(() => { for (const n of CAUSAL) models.set(n, loadCausalLM(path.join(MODELS, n))); });
afterAll(() => { for (const m of models.values()) m.dispose(); });

const arr = (t: Tensor) => t.toArray() as number[][];

type Recompute = 'logSoftmax' | 'linearTokenLogprobs' | 'tokenLogprobs';
// ops.tokenLogprobs is another engineer's op; it is checked here once it exists.
const tokenLogprobs = (ops as unknown as Record<string, unknown>).tokenLogprobs as
  ((logits: Tensor, targets: Tensor, o: { temperature: number }) => { logprobs: Tensor }) | undefined;
/** Whether the loaded addon registers a fused op (a stale build may not have it yet). */
function hasOp(name: string): boolean {
  try { native().opHandle(name, ''); return true; } catch { return false; }
}
const RECOMPUTE: Recompute[] = [
  'logSoftmax',
  ...(hasOp('llmrl::linear_token_logprobs') ? ['linearTokenLogprobs' as const] : []),
  ...(tokenLogprobs && hasOp('llmrl::token_logprobs') ? ['tokenLogprobs' as const] : []),
];

/**
 * Log-probs of `completion` recomputed by one forward pass over prompt + completion at temperature T,
 * as a trainer would: from the logits, or from `hidden` and `lmHeadWeight()` with the fused op.
 */
function recompute(model: CausalLM, prompt: Tensor, promptMask: Tensor, completion: Tensor, completionMask: Tensor, temperature: number, how: Recompute): Tensor {
  return tidy(() => noGrad(() => {
    const P = prompt.shape[1];
    const L = completion.shape[1];
    const all = cat([prompt, completion], 1);
    const mask = cat([promptMask, completionMask], 1);
    const { logits, hidden } = model.forward(all, { attentionMask: mask });
    let lp: Tensor;
    if (how === 'linearTokenLogprobs') {
      lp = ops.linearTokenLogprobs(hidden.narrow(1, P - 1, L), model.lmHeadWeight(), completion, { temperature }).logprobs;
    } else if (how === 'tokenLogprobs') {
      lp = tokenLogprobs!(logits.narrow(1, P - 1, L), completion, { temperature }).logprobs;
    } else {
      const scores = logits.narrow(1, P - 1, L).div(temperature); //  [B, L, V] predicts completion
      lp = scores.logSoftmax(-1).gather(2, completion.unsqueeze(2)).squeeze(2);
    }
    return lp.mul(completionMask);
  }));
}

describe.each(CAUSAL)('%s', (name) => {
  test('greedy continuations equal transformers\' generate (batched, left-padded)', () => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const out = model.generate(ids(ref.input_ids), { attentionMask: mask, maxNewTokens: ref.max_new_tokens, eosTokenId: null });
    expect(arr(out.completionIds)).toEqual(ref.greedy);
    expect(arr(out.completionMask).flat().every((v) => v === 1)).toBe(true);
  }));

  test('EOS: rows stop independently, EOS kept in the mask, pad and mask 0 after it (as transformers)', () => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const out = model.generate(ids(ref.input_ids), {
      attentionMask: mask, maxNewTokens: ref.max_new_tokens, eosTokenId: ref.eos_token_id, padTokenId: ref.pad_token_id,
    });
    const got = arr(out.completionIds);
    expect(got).toEqual(ref.greedy_eos);
    const m = arr(out.completionMask);
    const lp = arr(out.logprobs);
    got.forEach((row, b) => {
      const stop = row.indexOf(ref.eos_token_id);
      row.forEach((tok, i) => {
        const alive = stop < 0 || i <= stop;
        expect(m[b][i]).toBe(alive ? 1 : 0);
        if (!alive) { expect(tok).toBe(ref.pad_token_id); expect(lp[b][i]).toBe(0); }
      });
    });
    expect(got[0].indexOf(ref.eos_token_id)).toBeLessThanOrEqual(2);
  }));

  test.each([1, 0.7])('log-probs equal a recomputing forward pass (temperature %s, ≤ 1e-5)', (temperature) => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const prompt = ids(ref.input_ids);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const out = model.generate(prompt, { attentionMask: mask, maxNewTokens: 10, doSample: true, temperature, topK: 20, topP: 0.9, seed: 3, eosTokenId: ref.eos_token_id });
    for (const how of RECOMPUTE) {
      const again = recompute(model, prompt, mask, out.completionIds, out.completionMask, temperature, how);
      expect(again.sub(out.logprobs).abs().max().item(), how).toBeLessThanOrEqual(1e-5);
    }
  }));
});

describe('sampling', () => {
  const name = 'llama';
  test('the same seed gives the same tokens; another seed differs', () => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const opts = { attentionMask: mask, maxNewTokens: 12, doSample: true, temperature: 1.3, seed: 7 };
    const a = arr(model.generate(ids(ref.input_ids), opts).completionIds);
    const b = arr(model.generate(ids(ref.input_ids), opts).completionIds);
    const c = arr(model.generate(ids(ref.input_ids), { ...opts, seed: 8 }).completionIds);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  }));

  test('top-k = 1 and a tiny top-p are greedy; top-k samples only among the k best', () => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const base = { attentionMask: mask, maxNewTokens: ref.max_new_tokens, eosTokenId: null } as const;
    expect(arr(model.generate(ids(ref.input_ids), { ...base, doSample: true, topK: 1, seed: 1 }).completionIds)).toEqual(ref.greedy);
    expect(arr(model.generate(ids(ref.input_ids), { ...base, doSample: true, topP: 1e-6, seed: 1 }).completionIds)).toEqual(ref.greedy);
    // top-k 3: every sampled token is among the 3 most likely under a recomputed forward.
    const prompt = ids(ref.input_ids);
    const out = model.generate(prompt, { ...base, doSample: true, temperature: 2, topK: 3, seed: 5, maxNewTokens: 12 });
    noGrad(() => {
      const P = prompt.shape[1];
      const L = out.completionIds.shape[1];
      const { logits } = model.forward(cat([prompt, out.completionIds], 1), { attentionMask: cat([mask, out.completionMask], 1) });
      const top3 = logits.narrow(1, P - 1, L).topk(3, -1).indices; //            [B, L, 3]
      const hit = top3.eq(out.completionIds.unsqueeze(2)).any();
      const inTop = top3.eq(out.completionIds.unsqueeze(2)).sum(2); //           [B, L]
      expect(hit.item()).toBe(true);
      expect((inTop.toArray() as number[][]).flat().every((v) => v === 1)).toBe(true);
    });
  }));

  test('topKFilter / topPFilter keep the documented support (ties at the k-th kept; most likely always kept)', () => tidy(() => {
    const s = tensor([[1, 3, 2, 3, 0], [5, 4, 3, 2, 1]]);
    expect((topKFilter(s, 2).isfinite().toArray() as boolean[][])).toEqual([[false, true, false, true, false], [true, true, false, false, false]]);
    // probabilities of row [5,4,3,2,1]: .636 .234 .086 .032 .012 → top-p 0.8 keeps {5, 4}; 0.5 keeps {5}.
    const row = tensor([[5, 4, 3, 2, 1]]);
    expect(topPFilter(row, 0.8).isfinite().toArray()).toEqual([[true, true, false, false, false]]);
    expect(topPFilter(row, 0.5).isfinite().toArray()).toEqual([[true, false, false, false, false]]);
    expect(topPFilter(row, 1).isfinite().toArray()).toEqual([[true, true, true, true, true]]);
  }));

  test('stop strings end a row at the token that completes them (with a decode function)', () => tidy(() => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    // A toy decoder: token id → "<id>"; stop when row 1's third greedy token appears.
    const target = ref.greedy[1][2];
    const decode = (t: number[]) => t.map((x) => `<${x}>`).join('');
    const out = model.generate(ids(ref.input_ids), { attentionMask: mask, maxNewTokens: ref.max_new_tokens, eosTokenId: null, stopStrings: [`<${target}>`], decode });
    const m = arr(out.completionMask);
    const first = ref.greedy[1].indexOf(target);
    expect(m[1].reduce((a, b) => a + b, 0)).toBe(first + 1);
    expect(() => model.generate(ids(ref.input_ids), { maxNewTokens: 2, stopStrings: ['x'] })).toThrow(/decode/);
  }));

  test('bfloat16 models generate (float32 log-probs, finite); bad options are rejected', () => tidy(() => {
    const m16 = loadCausalLM(path.join(MODELS, name), { dtype: 'bfloat16' });
    const ref = causalRef(name);
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const out = m16.generate(ids(ref.input_ids), { attentionMask: mask, maxNewTokens: 4, eosTokenId: null });
    expect(out.completionIds.shape).toEqual([3, 4]);
    expect(out.logprobs.dtype).toBe('float32');
    expect(out.logprobs.isfinite().all().item()).toBe(true);
    m16.dispose();
    const model = models.get(name)!;
    const x = ids(ref.input_ids);
    expect(() => model.generate(x, { maxNewTokens: -1 })).toThrow(/maxNewTokens/);
    expect(() => model.generate(x, { maxNewTokens: 2, doSample: true, temperature: 0 })).toThrow(/temperature.*doSample: false/);
    expect(() => model.generate(x, { maxNewTokens: 2, topP: 1.5 })).toThrow(/topP/);
    expect(() => model.generate(x, { maxNewTokens: 2, eosTokenId: 10_000 })).toThrow(/eosTokenId/);
    expect(() => model.generate(x, { maxNewTokens: 2, attentionMask: tensor([[1, 0]], { dtype: 'int64' }) })).toThrow(/attentionMask/);
    const right = tensor(ref.attention_mask.map((r) => [...r].reverse()), { dtype: 'int64' });
    expect(() => model.generate(x, { maxNewTokens: 2, attentionMask: right })).toThrow(/right-padded.*left/);
    expect(model.generate(x, { maxNewTokens: 0 }).completionIds.shape).toEqual([3, 0]);
  }));

  test('generation and a manual KV-cache loop free every intermediate tensor', () => {
    const model = models.get(name)!;
    const ref = causalRef(name);
    const before = memory().liveTensors;
    const mask = tensor(ref.attention_mask, { dtype: 'int64' });
    const prompt0 = ids(ref.input_ids);
    const out = model.generate(prompt0, { attentionMask: mask, maxNewTokens: 6, doSample: true, topP: 0.9, topK: 10, seed: 0 });
    mask.dispose();
    prompt0.dispose();
    for (const t of Object.values(out)) t.dispose();
    expect(memory().liveTensors).toBe(before);
    // forward with a cache: prompt, then one token at a time — same logits as a full forward.
    tidy(() => noGrad(() => {
      const prompt = ids(ref.input_ids);
      const m = tensor(ref.attention_mask, { dtype: 'int64' });
      const next = ids(ref.greedy.map((r) => [r[0]]));
      const cache = new KVCache();
      const a = model.forward(prompt, { attentionMask: m, cache, logitsToKeep: 1 });
      expect(a.logits.shape).toEqual([3, 1, model.config.vocabSize]);
      const m2 = cat([m, onesLike(next)], 1);
      const b = model.forward(next, { attentionMask: m2, cache });
      const full = model.forward(cat([prompt, next], 1), { attentionMask: m2, logitsToKeep: 1 });
      expect(b.logits.sub(full.logits).abs().max().item()).toBeLessThan(1e-5);
      expect(cache.length).toBe(prompt.shape[1] + 1);
      cache.dispose();
    }));
    expect(memory().liveTensors).toBe(before);
  });
});
