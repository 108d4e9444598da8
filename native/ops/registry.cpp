// The one TORCH_LIBRARY(llmrl, m) block: every llmrl op schema in one list (DESIGN.md "One op").
// Kernels register per backend in native/ops/<op>/{cpu.cpp,cuda.cu,autograd.cpp}. Sections follow
// ALGORITHMS.md; `*_backward` and `*_forward` schemas are internal (called by the autograd kernels).
#include <torch/library.h>

TORCH_LIBRARY(llmrl, m) {
  // ---- §1 token_logprobs ----
  // ---- end token_logprobs ----

  // ---- §1b linear_token_logprobs ----
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
  // ---- end advantages ----

  // ---- §4–6 clipped_surrogate, sequence level, loss_agg, value_loss ----
  // ---- end surrogates ----

  // ---- §7–8 preference_loss, bradley_terry_loss ----
  // ---- end preference ----
}
