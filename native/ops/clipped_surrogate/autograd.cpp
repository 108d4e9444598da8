// clipped_surrogate autograd: the forward op computes ∂L/∂ℓ in the same pass as the loss (only when a
// gradient is needed) and autograd saves just that [B, T] tensor — not the inputs; the backward calls
// the device-dispatched clipped_surrogate_backward op (grad · ∂L/∂ℓ). Gradient flows to logprobs only;
// old_logprobs and advantages are constants (ALGORITHMS.md §4a); the metrics are not differentiable.
#include "clipped_surrogate/clipped_surrogate.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::clipped_surrogate {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_forward(const at::Tensor& lp, const at::Tensor& old,
                                                            const at::Tensor& adv, const at::Tensor& mask,
                                                            double eps_low, double eps_high,
                                                            std::optional<double> dual_clip,
                                                            std::optional<double> delta, bool with_grad) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::clipped_surrogate_forward", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, double, double, std::optional<double>,
                                                            std::optional<double>, bool)>();
  return op.call(lp, old, adv, mask, eps_low, eps_high, dual_clip, delta, with_grad);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& dloss) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::clipped_surrogate_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, dloss);
}

class ClippedSurrogateFunction : public torch::autograd::Function<ClippedSurrogateFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask, double eps_low, double eps_high,
                               std::optional<double> dual_clip, std::optional<double> delta, bool with_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats, dloss] =
        call_forward(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, dual_clip, delta, with_grad);
    ctx->save_for_backward({dloss});
    auto [l, f, fl, fh, kl] = split_metrics(loss, stats);
    ctx->mark_non_differentiable({f, fl, fh, kl});
    return {l, f, fl, fh, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor dloss = ctx->get_saved_variables()[0];
    at::Tensor g = grads[0].defined() && dloss.defined() ? call_backward(grads[0], dloss) : at::Tensor();
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

Metrics5 clipped_surrogate_autograd(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                                    const at::Tensor& advantages, const at::Tensor& mask, double eps_low,
                                    double eps_high, std::optional<double> dual_clip, std::optional<double> delta) {
  // Computing ∂L/∂ℓ costs one extra [B, T] write: only when autograd will want it.
  const bool with_grad = at::GradMode::is_enabled() && logprobs.requires_grad();
  variable_list out = ClippedSurrogateFunction::apply(logprobs, old_logprobs, advantages, mask, eps_low, eps_high,
                                                      dual_clip, delta, with_grad);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace
}  // namespace llmrl::clipped_surrogate

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("clipped_surrogate", &llmrl::clipped_surrogate::clipped_surrogate_autograd);
}
