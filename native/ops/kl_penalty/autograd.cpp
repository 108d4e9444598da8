// kl_penalty autograd: saves only the (small, per-token) inputs; backward calls the device-dispatched
// kl_penalty_backward op. Gradient flows to logprobs only (ALGORITHMS.md §2).
#include "kl_penalty/kl_penalty.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::kl_penalty {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& lp, const at::Tensor& ref, const std::optional<at::Tensor>& mask,
                        const std::optional<at::Tensor>& old, c10::string_view est) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::kl_penalty", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                        const std::optional<at::Tensor>&, c10::string_view)>();
  return op.call(lp, ref, mask, old, est);
}

at::Tensor call_backward(const at::Tensor& g, const at::Tensor& lp, const at::Tensor& ref,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old,
                         c10::string_view est) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::kl_penalty_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, c10::string_view)>();
  return op.call(g, lp, ref, mask, old, est);
}

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

class KlPenaltyFunction : public torch::autograd::Function<KlPenaltyFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                            const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old_logprobs,
                            c10::string_view estimator) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({logprobs, ref_logprobs, mask.value_or(at::Tensor()), old_logprobs.value_or(at::Tensor())});
    ctx->saved_data["estimator"] = std::string(estimator);
    return call_forward(logprobs, ref_logprobs, mask, old_logprobs, estimator);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string est = ctx->saved_data["estimator"].toStringRef();
    at::Tensor g = call_backward(grads[0], saved[0], saved[1], opt(saved[2]), opt(saved[3]), est);
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor kl_penalty_autograd(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                               const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old_logprobs,
                               c10::string_view estimator) {
  return KlPenaltyFunction::apply(logprobs, ref_logprobs, mask, old_logprobs, estimator);
}

}  // namespace
}  // namespace llmrl::kl_penalty

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("kl_penalty", &llmrl::kl_penalty::kl_penalty_autograd);
}
