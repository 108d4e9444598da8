// bradley_terry_loss autograd (ALGORITHMS.md §8): forward calls the device-dispatched op and saves only
// the [B] scores and margin; backward calls bradley_terry_loss_backward, which writes both scores'
// gradients in one pass. accuracy and mean_margin are non-differentiable; margin is a constant.
#include "bradley_terry_loss/bradley_terry_loss.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::bradley_terry_loss {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptT = std::optional<at::Tensor>;

using ForwardSig = Outputs(const at::Tensor&, const at::Tensor&, const OptT&, double);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const OptT&, double);

class BradleyTerryLossFunction : public torch::autograd::Function<BradleyTerryLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& chosen, const at::Tensor& rejected,
                               const OptT& margin, double center_coef) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::bradley_terry_loss", "").typed<ForwardSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, accuracy, mean_margin] = op.call(chosen, rejected, margin, center_coef);
    ctx->save_for_backward({chosen, rejected, margin.value_or(at::Tensor())});
    ctx->saved_data["center_coef"] = center_coef;
    ctx->mark_non_differentiable({accuracy, mean_margin});
    ctx->set_materialize_grads(false);
    return {loss, accuracy, mean_margin};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::bradley_terry_loss_backward", "").typed<BackwardSig>();
    const auto s = ctx->get_saved_variables();
    // Edges: chosen_scores 0, rejected_scores 1 (always given, so always the first two).
    const bool need_c = ctx->needs_input_grad(0), need_r = ctx->needs_input_grad(1);
    at::Tensor gc, gr;
    if (grads[0].defined() && (need_c || need_r)) {
      std::tie(gc, gr) = op.call(grads[0], s[0], s[1], s[2].defined() ? OptT(s[2]) : std::nullopt,
                                 ctx->saved_data["center_coef"].toDouble());
    }
    return {need_c ? gc : at::Tensor(), need_r ? gr : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

Outputs bradley_terry_loss_autograd(const at::Tensor& chosen, const at::Tensor& rejected, const OptT& margin,
                                    double center_coef) {
  auto o = BradleyTerryLossFunction::apply(chosen, rejected, margin, center_coef);
  return {o[0], o[1], o[2]};
}

}  // namespace
}  // namespace llmrl::bradley_terry_loss

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("bradley_terry_loss", &llmrl::bradley_terry_loss::bradley_terry_loss_autograd);
}
