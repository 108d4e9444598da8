// masked_whiten autograd: saves x and the mask (no statistics — the backward op recomputes μ and s in
// two cheap passes); backward calls the device-dispatched masked_whiten_backward op (gradient formula in
// masked_whiten.h). Gradient flows to x only.
#include "masked_whiten/masked_whiten.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::masked_whiten {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::masked_whiten", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(x, mask, shift_mean);
}

at::Tensor call_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::masked_whiten_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(g, x, mask, shift_mean);
}

class MaskedWhitenFunction : public torch::autograd::Function<MaskedWhitenFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, mask});
    ctx->saved_data["shift_mean"] = shift_mean;
    return call_forward(x, mask, shift_mean);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool shift_mean = ctx->saved_data["shift_mean"].toBool();
    return {call_backward(grads[0], saved[0], saved[1], shift_mean), at::Tensor(), at::Tensor()};
  }
};

at::Tensor masked_whiten_autograd(const at::Tensor& x, const at::Tensor& mask, bool shift_mean) {
  return MaskedWhitenFunction::apply(x, mask, shift_mean);
}

}  // namespace
}  // namespace llmrl::masked_whiten

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("masked_whiten", &llmrl::masked_whiten::masked_whiten_autograd);
}
