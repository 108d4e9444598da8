// The one TORCH_LIBRARY(llmrl, m) block: every llmrl op schema in one list (DESIGN.md "One op").
// Kernels register per backend in native/ops/<op>/{cpu.cpp,cuda.cu,autograd.cpp}. Sections follow
// ALGORITHMS.md; `*_backward` and `*_forward` schemas are internal (called by the autograd kernels).
#include <torch/library.h>

TORCH_LIBRARY(llmrl, m) {
  // ---- §1 token_logprobs ----
  // log softmax(logits/τ)[target] per row of logits [..., V] (targets int64 [...]) in one pass, and the
  // entropy when with_entropy (else the second output is undefined). Differentiable w.r.t. logits.
  m.def("token_logprobs(Tensor logits, Tensor targets, float temperature=1.0, bool with_entropy=False) "
        "-> (Tensor logprobs, Tensor entropy)");
  // Internal: also returns logZ per row; entropy and logz in float32 (float64 for float64 logits).
  m.def("token_logprobs_forward(Tensor logits, Tensor targets, float temperature, bool with_entropy) "
        "-> (Tensor logprobs, Tensor entropy, Tensor logz)");
  // Internal: grad_logits [..., V] from the incoming grads of logprobs and/or entropy (either may be None).
  m.def("token_logprobs_backward(Tensor? grad_logprobs, Tensor? grad_entropy, Tensor logits, Tensor targets, "
        "Tensor logz, Tensor? entropy, float temperature) -> Tensor");
  // ---- end token_logprobs ----

  // ---- §1b linear_token_logprobs ----
  // Token log-probs (and optional entropy) of logits = hidden·Wᵀ (+bias), /τ, computed chunk by chunk
  // (chunk_size rows; 0 = auto) without materialising [N, V]. entropy is None unless with_entropy.
  m.def("linear_token_logprobs(Tensor hidden, Tensor weight, Tensor targets, Tensor? bias=None, "
        "float temperature=1.0, int chunk_size=0, bool with_entropy=False) -> (Tensor logprobs, Tensor entropy)");
  // Internal: forward also returns logz [N] (fp32, fp64 for fp64 inputs) for the backward.
  m.def("linear_token_logprobs_forward(Tensor hidden, Tensor weight, Tensor targets, Tensor? bias=None, "
        "float temperature=1.0, int chunk_size=0, bool with_entropy=False) "
        "-> (Tensor logprobs, Tensor entropy, Tensor logz)");
  // Internal: recomputes chunk logits; output_mask = which of (hidden, weight, bias) grads to compute.
  m.def("linear_token_logprobs_backward(Tensor? grad_logprobs, Tensor? grad_entropy, Tensor hidden, "
        "Tensor weight, Tensor targets, Tensor? bias, Tensor logz, Tensor? entropy, float temperature, "
        "int chunk_size, bool[3] output_mask) -> (Tensor grad_hidden, Tensor grad_weight, Tensor grad_bias)");
  // ---- end linear_token_logprobs ----

  // ---- §2 kl_penalty ----
  // Per-token KL estimate of KL(π_θ‖π_ref); estimator in {k1,k2,k3,abs}; optional old_logprobs turns on
  // the ratio-weighted (bias-corrected) form.
  m.def("kl_penalty(Tensor logprobs, Tensor ref_logprobs, Tensor? mask=None, "
        "Tensor? old_logprobs=None, str estimator='k3') -> Tensor");
  m.def("kl_penalty_backward(Tensor grad, Tensor logprobs, Tensor ref_logprobs, Tensor? mask, "
        "Tensor? old_logprobs, str estimator) -> Tensor");
  // ---- end kl_penalty ----

  // ---- §3 gae, masked_whiten, group_advantages ----
  // GAE over the valid positions of each row (masked gaps skipped); returns = advantages + values.
  // No gradient: outputs are targets (a no-grad Autograd kernel; outputs never require grad).
  m.def("gae(Tensor rewards, Tensor values, Tensor mask, float gamma=1.0, float lam=0.95) "
        "-> (Tensor advantages, Tensor returns)");
  // (x − μ)/sqrt(var + 1e-8) over all valid tokens (Bessel var); shift_mean=False adds μ back. Differentiable.
  m.def("masked_whiten(Tensor x, Tensor mask, bool shift_mean=True) -> Tensor");
  m.def("masked_whiten_backward(Tensor grad, Tensor x, Tensor mask, bool shift_mean) -> Tensor");
  // Group-relative advantages over consecutive groups of group_size; scale in {group,batch,none,rloo};
  // NaN rewards excluded (A = 0). Also returns the per-group std [B/G]. No gradient.
  m.def("group_advantages(Tensor rewards, int group_size, str scale='group') "
        "-> (Tensor advantages, Tensor group_std)");
  // ---- end advantages ----

  // ---- §4–6 clipped_surrogate, sequence level, loss_agg, value_loss ----
  // §4a token-level clipped surrogate: per-token loss [B, T] (masked = 0, input dtype) and the §4c
  // metrics as 0-d tensors (float32; float64 for float64 inputs). advantages [B] or [B, T]; dual_clip
  // (c > 1) and delta (cap on the unclipped ratio) are off when None. Differentiable w.r.t. logprobs.
  m.def("clipped_surrogate(Tensor logprobs, Tensor old_logprobs, Tensor advantages, Tensor mask, "
        "float eps_low=0.2, float eps_high=0.2, float? dual_clip=None, float? delta=None) "
        "-> (Tensor loss, Tensor clip_frac, Tensor clip_frac_low, Tensor clip_frac_high, Tensor approx_kl)");
  // Internal: stats [4] = the four metrics; dloss = ∂loss/∂logprobs [B, T] (None unless with_grad).
  m.def("clipped_surrogate_forward(Tensor logprobs, Tensor old_logprobs, Tensor advantages, Tensor mask, "
        "float eps_low, float eps_high, float? dual_clip, float? delta, bool with_grad) "
        "-> (Tensor loss, Tensor stats, Tensor dloss)");
  m.def("clipped_surrogate_backward(Tensor grad, Tensor dloss) -> Tensor");
  // §4b GSPO: level 'sequence' (ratio s_b = exp(masked mean log-ratio), advantages [B]; each valid token
  // of row b carries L_b) or 'sequence_token' (value s_b, per-token gradient, advantages [B] or [B, T]).
  // Metrics: sequence means at 'sequence', token means at 'sequence_token'. Differentiable w.r.t. logprobs.
  m.def("sequence_clipped_surrogate(Tensor logprobs, Tensor old_logprobs, Tensor advantages, Tensor mask, "
        "float eps_low=0.2, float eps_high=0.2, float? dual_clip=None, float? delta=None, str level='sequence') "
        "-> (Tensor loss, Tensor clip_frac, Tensor clip_frac_low, Tensor clip_frac_high, Tensor approx_kl)");
  m.def("sequence_clipped_surrogate_forward(Tensor logprobs, Tensor old_logprobs, Tensor advantages, Tensor mask, "
        "float eps_low, float eps_high, float? dual_clip, float? delta, str level, bool with_grad) "
        "-> (Tensor loss, Tensor stats, Tensor dloss)");
  m.def("sequence_clipped_surrogate_backward(Tensor grad, Tensor dloss, Tensor mask, str level) -> Tensor");
  // §5 scalar aggregation of a per-token loss [B, T]; mode in {token_mean, seq_mean_token_mean,
  // seq_mean_token_sum_norm, seq_mean_token_sum}. normalizer replaces the token count (token_mean),
  // num_sequences the valid-sequence count (seq_* modes) — global counts for micro-batching; max_length
  // is L_max of seq_mean_token_sum_norm (default T). Zero denominator → 0. Differentiable w.r.t. loss.
  m.def("loss_agg(Tensor loss, Tensor mask, str mode='token_mean', float? normalizer=None, "
        "float? num_sequences=None, int? max_length=None) -> Tensor");
  // Internal: coef [B] = ∂out/∂loss[b, t] on the valid tokens of row b.
  m.def("loss_agg_forward(Tensor loss, Tensor mask, str mode, float? normalizer, float? num_sequences, "
        "int? max_length) -> (Tensor out, Tensor coef)");
  m.def("loss_agg_backward(Tensor grad, Tensor mask, Tensor coef, ScalarType dtype) -> Tensor");
  // §6 clipped value loss ½·max((V − R)², (V_old + clamp(V − V_old, ±clip) − R)²), masked mean (denominator
  // normalizer when given), and the fraction of valid tokens where the clipped term is larger.
  m.def("value_loss(Tensor values, Tensor old_values, Tensor returns, Tensor mask, float clip=0.2, "
        "float? normalizer=None) -> (Tensor loss, Tensor clip_frac)");
  // Internal: dvalues = per-token ∂(½·max)/∂V (None unless with_grad); scale = 1/denominator (0-d).
  m.def("value_loss_forward(Tensor values, Tensor old_values, Tensor returns, Tensor mask, float clip, "
        "float? normalizer, bool with_grad) -> (Tensor loss, Tensor clip_frac, Tensor dvalues, Tensor scale)");
  m.def("value_loss_backward(Tensor grad, Tensor dvalues, Tensor scale, ScalarType dtype) -> Tensor");
  // ---- end surrogates ----

  // ---- §7–8 preference_loss, bradley_terry_loss ----
  // DPO-family loss over pairs [B] of sequence log-probs; loss_type in {sigmoid,ipo,hinge,robust}. Returns
  // the mean loss and the metrics rewards/chosen, rewards/rejected, accuracy, margin (0-dim, float32 or
  // float64 for float64 inputs). Refs may be None only with reference_free; lengths required for ipo.
  // Gradient to chosen_logps and rejected_logps only.
  m.def("preference_loss(Tensor chosen_logps, Tensor rejected_logps, Tensor? ref_chosen_logps, "
        "Tensor? ref_rejected_logps, str loss_type='sigmoid', float beta=0.1, float label_smoothing=0.0, "
        "Tensor? chosen_lengths=None, Tensor? rejected_lengths=None, bool reference_free=False) "
        "-> (Tensor loss, Tensor rewards_chosen, Tensor rewards_rejected, Tensor accuracy, Tensor margin)");
  m.def("preference_loss_backward(Tensor grad, Tensor chosen_logps, Tensor rejected_logps, "
        "Tensor? ref_chosen_logps, Tensor? ref_rejected_logps, str loss_type, float beta, float label_smoothing, "
        "Tensor? chosen_lengths, Tensor? rejected_lengths, bool reference_free) "
        "-> (Tensor grad_chosen, Tensor grad_rejected)");
  // Bradley–Terry reward-model loss −mean logσ(r_c − r_r − margin) + center_coef·mean((r_c + r_r)²), with
  // accuracy mean 1[r_c > r_r] and mean_margin mean(r_c − r_r). Gradient to both scores.
  m.def("bradley_terry_loss(Tensor chosen_scores, Tensor rejected_scores, Tensor? margin=None, "
        "float center_coef=0.0) -> (Tensor loss, Tensor accuracy, Tensor mean_margin)");
  m.def("bradley_terry_loss_backward(Tensor grad, Tensor chosen_scores, Tensor rejected_scores, Tensor? margin, "
        "float center_coef) -> (Tensor grad_chosen, Tensor grad_rejected)");
  // ---- end preference ----
}
