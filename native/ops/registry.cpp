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
