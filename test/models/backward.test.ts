// Backward: gradients of the mean next-token NLL over the real tokens of the left-padded fixture
// batch equal transformers' for every parameter (gpt2: Conv1D + tied lm_head; qwen2: q/k/v bias, tied
// embeddings with padding_idx); training through the model frees its graph.
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadCausalLM, loadSafetensors, readSafetensorsHeader, memory, tensor, tidy } from '../../src/index.js';
import { MODELS, causalRef, ids } from './fixtures.js';

describe.each(['gpt2', 'qwen2'])('%s', (name) => {
  test('gradients equal transformers\' (every parameter)', () => {
    const before = memory().liveTensors;
    const model = loadCausalLM(path.join(MODELS, name));
    const ref = causalRef(name);
    const file = path.join(MODELS, name, 'reference_grads.safetensors');
    const refLoss = Number(readSafetensorsHeader(file).metadata!.loss);
    const loss = tidy(() => {
      const x = ids(ref.input_ids);
      const mask = tensor(ref.attention_mask, { dtype: 'int64' });
      const T = x.shape[1];
      const { logits } = model.forward(x, { attentionMask: mask });
      const lp = logits.narrow(1, 0, T - 1).logSoftmax(-1).gather(2, x.narrow(1, 1, T - 1).unsqueeze(2)).squeeze(2);
      const valid = mask.narrow(1, 1, T - 1).mul(mask.narrow(1, 0, T - 1)).float();
      const l = lp.mul(valid).sum().div(valid.sum()).neg();
      l.backward();
      return l.item();
    });
    expect(Math.abs(loss - refLoss)).toBeLessThan(1e-5);
    const expected = loadSafetensors(file);
    const params = Object.fromEntries(model.namedParameters());
    expect(Object.keys(params).sort()).toEqual(Object.keys(expected).sort());
    let worst = 0;
    tidy(() => {
      for (const [n, p] of Object.entries(params)) {
        const g = p.grad!;
        const d = g.sub(expected[n]).abs().max().item();
        const scale = Math.max(1e-3, expected[n].abs().max().item());
        worst = Math.max(worst, d / scale);
        expect(d, n).toBeLessThanOrEqual(1e-4 * scale);
      }
    });
    console.log(`${name}: loss ${loss} (transformers ${refLoss}), worst relative grad diff ${worst.toExponential(2)}`);
    for (const t of Object.values(expected)) t.dispose();
    model.zeroGrad();
    model.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});
