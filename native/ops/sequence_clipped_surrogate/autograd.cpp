// sequence_clipped_surrogate autograd: the forward op computes ∂L/∂ℓ in the same pass as the loss (only
// when a gradient is needed); autograd saves that [B, T] tensor and the mask (an input) — never the
// other inputs. The backward calls the device-dispatched sequence_clipped_surrogate_backward op. Gradient
// flows to logprobs only (ALGORITHMS.md §4b); the metrics are not differentiable.
#include "sequence_clipped_surrogate/sequence_clipped_surrogate.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::sequence_clipped_surrogate {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_forward(const at::Tensor& lp, const at::Tensor& old,
                                                            const at::Tensor& adv, const at::Tensor& mask,
                                                            double eps_low, double eps_high,
                                                            std::optional<double> dual_clip,
                                                            std::optional<double> delta, c10::string_view level,
                                                            bool with_grad) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::sequence_clipped_surrogate_forward", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, double, double, std::optional<double>,
                                                            std::optional<double>, c10::string_view, bool)>();
  return op.call(lp, old, adv, mask, eps_low, eps_high, dual_clip, delta, level, with_grad);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& dloss, const at::Tensor& mask,
                         c10::string_view level) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::sequence_clipped_surrogate_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view)>();
  return op.call(grad, dloss, mask, level);
}

class SequenceClippedSurrogateFunction : public torch::autograd::Function<SequenceClippedSurrogateFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask, double eps_low, double eps_high,
                               std::optional<double> dual_clip, std::optional<double> delta,
                               c10::string_view level, bool with_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats, dloss] = call_forward(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip,
                                             delta, level, with_grad);
    ctx->save_for_backward({dloss, mask});
    ctx->saved_data["level"] = std::string(level);
    auto [l, f, fl, fh, kl] = clipped_surrogate::split_metrics(loss, stats);
    ctx->mark_non_differentiable({f, fl, fh, kl});
    return {l, f, fl, fh, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string level = ctx->saved_data["level"].toStringRef();
    at::Tensor g = grads[0].defined() && saved[0].defined() ? call_backward(grads[0], saved[0], saved[1], level)
                                                            : at::Tensor();
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

clipped_surrogate::Metrics5 sequence_clipped_surrogate_autograd(
    const at::Tensor& logprobs, const at::Tensor& old_logprobs, const at::Tensor& advantages, const at::Tensor& mask,
    double eps_low, double eps_high, std::optional<double> dual_clip, std::optional<double> delta,
    c10::string_view level) {
  // Computing ∂L/∂ℓ costs one extra [B, T] write: only when autograd will want it.
  const bool with_grad = at::GradMode::is_enabled() && logprobs.requires_grad();
  variable_list out = SequenceClippedSurrogateFunction::apply(logprobs, old_logprobs, advantages, mask, eps_low,
                                                              eps_high, dual_clip, delta, level, with_grad);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace
}  // namespace llmrl::sequence_clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("sequence_clipped_surrogate", &llmrl::sequence_clipped_surrogate::sequence_clipped_surrogate_autograd);
}
