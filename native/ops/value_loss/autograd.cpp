// value_loss autograd: the forward op computes ∂ℓ_v/∂V in the same pass as the loss (only when a gradient
// is needed); autograd saves that [..] tensor and the 0-d scale 1/D — not the inputs. The backward calls
// the device-dispatched value_loss_backward op (grad · scale · ∂ℓ_v/∂V) in the values' dtype. Gradient
// flows to values only (ALGORITHMS.md §6); clip_frac is not differentiable.
#include "value_loss/value_loss.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::value_loss {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Forward call_forward(const at::Tensor& v, const at::Tensor& vo, const at::Tensor& r, const at::Tensor& mask,
                     double clip, std::optional<double> normalizer, bool with_grad) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::value_loss_forward", "")
      .typed<Forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                     std::optional<double>, bool)>();
  return op.call(v, vo, r, mask, clip, normalizer, with_grad);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& dvalues, const at::Tensor& scale,
                         at::ScalarType dtype) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::value_loss_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::ScalarType)>();
  return op.call(grad, dvalues, scale, dtype);
}

class ValueLossFunction : public torch::autograd::Function<ValueLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& values, const at::Tensor& old_values,
                               const at::Tensor& returns, const at::Tensor& mask, double clip,
                               std::optional<double> normalizer, bool with_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, clip_frac, dvalues, scale] = call_forward(values, old_values, returns, mask, clip, normalizer, with_grad);
    ctx->save_for_backward({dvalues, scale});
    ctx->saved_data["dtype"] = static_cast<int64_t>(values.scalar_type());
    ctx->mark_non_differentiable({clip_frac});
    return {loss, clip_frac};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    at::Tensor g = grads[0].defined() && saved[0].defined() ? call_backward(grads[0], saved[0], saved[1], dtype)
                                                            : at::Tensor();
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> value_loss_autograd(const at::Tensor& values, const at::Tensor& old_values,
                                                       const at::Tensor& returns, const at::Tensor& mask, double clip,
                                                       std::optional<double> normalizer) {
  // ∂ℓ_v/∂V costs one extra write per position: only when autograd will want it.
  const bool with_grad = at::GradMode::is_enabled() && values.requires_grad();
  variable_list out = ValueLossFunction::apply(values, old_values, returns, mask, clip, normalizer, with_grad);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace llmrl::value_loss

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("value_loss", &llmrl::value_loss::value_loss_autograd);
}
