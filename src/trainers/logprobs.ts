// Completion log-probs of a causal LM, shared by every trainer: one forward over prompt+completion
// without the `[B, T, V]` logits (logitsToKeep: 0), then the fused linear log-prob op over the hidden
// states that predict the completion tokens and the lm_head weight (ALGORITHMS.md §1b).
import { linearTokenLogprobs } from '../ops/linearTokenLogprobs.js';
import { cat, type Tensor } from '../tensor/index.js';

export interface CausalLMLike {
  forward(inputIds: Tensor, opts: { attentionMask?: Tensor | null; logitsToKeep?: number }): { logits: Tensor; hidden: Tensor };
  lmHeadWeight(): Tensor;
}

export interface CompletionBatch {
  /** Left-padded prompts `[B, P]` int64 and their mask. */
  promptIds: Tensor;
  promptMask: Tensor;
  /** Right-padded completions `[B, L]` int64 and their mask (1 on real tokens, EOS included). */
  completionIds: Tensor;
  completionMask: Tensor;
}

/**
 * Per-token log-probs `[B, L]` of the completion tokens (and entropies when asked), at `temperature`.
 * Positions where completionMask is 0 hold finite garbage: mask them downstream.
 */
export function completionLogprobs(model: CausalLMLike, b: CompletionBatch, opts: { temperature?: number; withEntropy?: boolean } = {}): { logprobs: Tensor; entropy?: Tensor } {
  const [B, P] = b.promptIds.shape;
  const L = b.completionIds.shape[1];
  const inputIds = cat([b.promptIds, b.completionIds], 1);
  const attentionMask = cat([b.promptMask, b.completionMask], 1);
  const { logits, hidden } = model.forward(inputIds, { attentionMask, logitsToKeep: 0 });
  logits.dispose();
  // Hidden state at position P-1+t predicts completion token t.
  const h = hidden.narrow(1, P - 1, L);
  const H = h.shape[2];
  const out = linearTokenLogprobs(h.reshape(B * L, H), model.lmHeadWeight(), b.completionIds.reshape(B * L), {
    temperature: opts.temperature ?? 1,
    withEntropy: opts.withEntropy ?? false,
  });
  return { logprobs: out.logprobs.view(B, L), entropy: out.entropy?.view(B, L) };
}
