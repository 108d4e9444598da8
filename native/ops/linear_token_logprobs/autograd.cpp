// linear_token_logprobs autograd (ALGORITHMS.md §1b): forward calls the device-dispatched
// linear_token_logprobs_forward and saves only (hidden, weight, bias, targets, logZ [N], entropy [N]) —
// never anything [N, V]; backward calls linear_token_logprobs_backward, which recomputes the logits chunk
// by chunk. Gradients flow to hidden, weight and bias, through logprobs and (if used) entropy.
#include "linear_token_logprobs/linear_token_logprobs.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::linear_token_logprobs {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, int64_t, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&, const std::optional<at::Tensor>&, double,
    int64_t, std::array<bool, 3>);

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

class LinearTokenLogprobsFunction : public torch::autograd::Function<LinearTokenLogprobsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const std::optional<at::Tensor>& bias, double temperature,
                               int64_t chunk_size, bool with_entropy) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("llmrl::linear_token_logprobs_forward", "")
                         .typed<ForwardSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [logp, ent, logz] = op.call(hidden, weight, targets, bias, temperature, chunk_size, with_entropy);
    ctx->save_for_backward({hidden, weight, targets, bias.value_or(at::Tensor()), logz, ent});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->set_materialize_grads(false);  // an unused entropy (or logprobs) output gets no zeros [N]
    // autograd cannot wrap an undefined output: without entropy the Function has one output.
    if (!with_entropy) return {logp};
    return {logp, ent};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("llmrl::linear_token_logprobs_backward", "")
                         .typed<BackwardSig>();
    const auto s = ctx->get_saved_variables();
    const bool has_bias = s[3].defined();
    // Edges follow the tensor inputs: hidden 0, weight 1, targets 2, bias 3 (when given).
    const std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                      has_bias && ctx->needs_input_grad(3)};
    at::Tensor gx, gw, gb;
    const bool any_grad = grads[0].defined() || (grads.size() > 1 && grads[1].defined());
    if (any_grad && (mask[0] || mask[1] || mask[2])) {
      std::tie(gx, gw, gb) = op.call(opt(grads[0]), grads.size() > 1 ? opt(grads[1]) : std::nullopt, s[0], s[1],
                                     s[2], opt(s[3]), s[4], opt(s[5]), ctx->saved_data["temperature"].toDouble(),
                                     ctx->saved_data["chunk_size"].toInt(), mask);
    }
    return {mask[0] ? gx : at::Tensor(), mask[1] ? gw : at::Tensor(), at::Tensor(), mask[2] ? gb : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> linear_token_logprobs_autograd(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size, bool with_entropy) {
  auto out = LinearTokenLogprobsFunction::apply(hidden, weight, targets, bias, temperature, chunk_size, with_entropy);
  return {out[0], out.size() > 1 ? out[1] : at::Tensor()};
}

}  // namespace
}  // namespace llmrl::linear_token_logprobs

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("linear_token_logprobs", &llmrl::linear_token_logprobs::linear_token_logprobs_autograd);
}
