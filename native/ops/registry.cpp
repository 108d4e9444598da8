// The one TORCH_LIBRARY(llmrl, m) block: every llmrl op schema in one list (DESIGN.md "One op").
// Kernels register per backend in native/ops/<op>/{cpu.cpp,cuda.cu,autograd.cpp}.
#include <torch/library.h>

TORCH_LIBRARY(llmrl, m) {
  // ALGORITHMS.md §2. Per-token KL estimate of KL(π_θ‖π_ref); estimator in {k1,k2,k3,abs};
  // optional old_logprobs turns on the ratio-weighted (bias-corrected) form.
  m.def("kl_penalty(Tensor logprobs, Tensor ref_logprobs, Tensor? mask=None, "
        "Tensor? old_logprobs=None, str estimator='k3') -> Tensor");
  m.def("kl_penalty_backward(Tensor grad, Tensor logprobs, Tensor ref_logprobs, Tensor? mask, "
        "Tensor? old_logprobs, str estimator) -> Tensor");
}
