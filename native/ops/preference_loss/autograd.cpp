// preference_loss autograd (ALGORITHMS.md §7): forward calls the device-dispatched op and saves only the
// [B] inputs (log-probs, reference log-probs, lengths); backward calls preference_loss_backward, which
// recomputes each pair's derivative and writes both gradients in one pass. Gradient flows to
// chosen_logps and rejected_logps through the loss; the four metrics are non-differentiable and the
// reference log-probs and lengths are constants.
#include "preference_loss/preference_loss.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::preference_loss {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptT = std::optional<at::Tensor>;

using ForwardSig = Outputs(const at::Tensor&, const at::Tensor&, const OptT&, const OptT&, c10::string_view, double,
                           double, const OptT&, const OptT&, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const OptT&, const OptT&, c10::string_view, double, double,
                                                       const OptT&, const OptT&, bool);

OptT opt(const at::Tensor& t) { return t.defined() ? OptT(t) : std::nullopt; }

class PreferenceLossFunction : public torch::autograd::Function<PreferenceLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& chosen, const at::Tensor& rejected,
                               const OptT& ref_chosen, const OptT& ref_rejected, c10::string_view loss_type,
                               double beta, double label_smoothing, const OptT& chosen_lengths,
                               const OptT& rejected_lengths, bool reference_free) {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::preference_loss", "").typed<ForwardSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, rc, rr, acc, margin] = op.call(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta,
                                               label_smoothing, chosen_lengths, rejected_lengths, reference_free);
    ctx->save_for_backward({chosen, rejected, ref_chosen.value_or(at::Tensor()), ref_rejected.value_or(at::Tensor()),
                            chosen_lengths.value_or(at::Tensor()), rejected_lengths.value_or(at::Tensor())});
    ctx->saved_data["loss_type"] = std::string(loss_type);
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["reference_free"] = reference_free;
    ctx->mark_non_differentiable({rc, rr, acc, margin});
    ctx->set_materialize_grads(false);
    return {loss, rc, rr, acc, margin};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::preference_loss_backward", "").typed<BackwardSig>();
    const auto s = ctx->get_saved_variables();
    // Edges: chosen_logps 0, rejected_logps 1 (always given, so always the first two).
    const bool need_c = ctx->needs_input_grad(0), need_r = ctx->needs_input_grad(1);
    at::Tensor gc, gr;
    if (grads[0].defined() && (need_c || need_r)) {
      std::tie(gc, gr) = op.call(grads[0], s[0], s[1], opt(s[2]), opt(s[3]),
                                 ctx->saved_data["loss_type"].toStringRef(), ctx->saved_data["beta"].toDouble(),
                                 ctx->saved_data["label_smoothing"].toDouble(), opt(s[4]), opt(s[5]),
                                 ctx->saved_data["reference_free"].toBool());
    }
    return {need_c ? gc : at::Tensor(), need_r ? gr : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

Outputs preference_loss_autograd(const at::Tensor& chosen, const at::Tensor& rejected, const OptT& ref_chosen,
                                 const OptT& ref_rejected, c10::string_view loss_type, double beta,
                                 double label_smoothing, const OptT& chosen_lengths, const OptT& rejected_lengths,
                                 bool reference_free) {
  auto o = PreferenceLossFunction::apply(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta,
                                         label_smoothing, chosen_lengths, rejected_lengths, reference_free);
  return {o[0], o[1], o[2], o[3], o[4]};
}

}  // namespace
}  // namespace llmrl::preference_loss

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("preference_loss", &llmrl::preference_loss::preference_loss_autograd);
}
