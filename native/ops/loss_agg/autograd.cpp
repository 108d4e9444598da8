// loss_agg autograd: the forward op also returns the per-row coefficients coef [B] = ∂out/∂L on valid
// tokens; autograd saves them and the mask (an input) — never the [B, T] loss. The backward calls the
// device-dispatched loss_agg_backward op (grad_L = m ? g·coef_b : 0) in the loss's dtype.
#include "loss_agg/loss_agg.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::loss_agg {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_forward(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode,
                                                std::optional<double> normalizer, std::optional<double> num_sequences,
                                                std::optional<int64_t> max_length) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::loss_agg_forward", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, c10::string_view,
                                                std::optional<double>, std::optional<double>,
                                                std::optional<int64_t>)>();
  return op.call(loss, mask, mode, normalizer, num_sequences, max_length);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& coef, at::ScalarType dtype) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::loss_agg_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::ScalarType)>();
  return op.call(grad, mask, coef, dtype);
}

class LossAggFunction : public torch::autograd::Function<LossAggFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& loss, const at::Tensor& mask,
                            c10::string_view mode, std::optional<double> normalizer,
                            std::optional<double> num_sequences, std::optional<int64_t> max_length) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, coef] = call_forward(loss, mask, mode, normalizer, num_sequences, max_length);
    ctx->save_for_backward({mask, coef});
    ctx->saved_data["dtype"] = static_cast<int64_t>(loss.scalar_type());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    at::Tensor g = grads[0].defined() ? call_backward(grads[0], saved[0], saved[1], dtype) : at::Tensor();
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor loss_agg_autograd(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode,
                             std::optional<double> normalizer, std::optional<double> num_sequences,
                             std::optional<int64_t> max_length) {
  return LossAggFunction::apply(loss, mask, mode, normalizer, num_sequences, max_length);
}

}  // namespace
}  // namespace llmrl::loss_agg

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("loss_agg", &llmrl::loss_agg::loss_agg_autograd);
}
