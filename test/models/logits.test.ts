// Logits of llmrl's GPT-2 / Llama / Qwen2 / Mistral equal transformers' on the fixtures
// (left-padded batch, attention mask, default and explicit position ids).
import { describe, expect, test } from 'vitest';
import { loadCausalLM, memory, ropeInvFreq, tidy, tensor, noGrad } from '../../src/index.js';
import * as path from 'node:path';
import { CAUSAL, MODELS, causalRef, ids, maxDiffMasked, refLogits } from './fixtures.js';

describe.each(CAUSAL)('%s', (name) => {
  test('logits equal transformers\' on a left-padded batch (≤ 1e-4)', () => {
    const before = memory().liveTensors;
    const model = loadCausalLM(path.join(MODELS, name));
    const ref = causalRef(name);
    expect(model.architecture).toBe(ref.architecture);
    tidy(() => noGrad(() => {
      const expected = refLogits(name);
      const mask = tensor(ref.attention_mask, { dtype: 'int64' });
      const out = model.forward(ids(ref.input_ids), { attentionMask: mask });
      const d = maxDiffMasked(out.logits, expected, ref.attention_mask);
      console.log(`${name}: max |logits − transformers| = ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(1e-4);
      const out2 = model.forward(ids(ref.input_ids), { attentionMask: mask, positionIds: tensor(ref.position_ids, { dtype: 'int64' }) });
      expect(maxDiffMasked(out2.logits, expected, ref.attention_mask)).toBeLessThanOrEqual(1e-4);
    }));
    model.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});

describe('RoPE inverse frequencies equal transformers\' bit for bit', () => {
  test.each(['llama', 'qwen2', 'mistral'])('%s', (name) => {
    const ref = causalRef(name) as ReturnType<typeof causalRef> & { inv_freq: number[] };
    const model = loadCausalLM(path.join(MODELS, name));
    const ours = Array.from(ropeInvFreq(model.config.rope!, model.config.headDim));
    expect(ours).toEqual(ref.inv_freq);
    model.dispose();
  });

  test('llama3 scaling: the fixture covers all three bands (kept, smoothed, divided by factor)', () => {
    const rope = { theta: 10000, type: 'default' as const };
    const plain = ropeInvFreq(rope, 16);
    const scaled = ropeInvFreq({ ...rope, type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 }, 16);
    const kinds = Array.from(plain, (p, i) => (scaled[i] === p ? 'kept' : Math.abs(scaled[i] - p / 8) < 1e-12 ? 'divided' : 'smoothed'));
    expect(new Set(kinds)).toEqual(new Set(['kept', 'smoothed', 'divided']));
  });
});
