// Logits of llmrl's GPT-2 / Llama / Qwen2 / Mistral equal transformers' on the fixtures
// (left-padded batch, attention mask, default and explicit position ids).
import { describe, expect, test } from 'vitest';
import { loadCausalLM, memory, tidy, tensor, noGrad } from '../../src/index.js';
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
