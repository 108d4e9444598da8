// token_logprobs autograd and public op (ALGORITHMS.md §1). The public op
//   token_logprobs(logits, targets, temperature, with_entropy) -> (logprobs, entropy | undefined)
// calls the device-dispatched token_logprobs_forward, which also returns logZ per row (float32, or
// float64 for float64 logits). The autograd Function saves only (logits, targets, logZ, entropy): the
// logits are the input itself (no copy), logZ and entropy are [N]; never a [N, V] softmax. Backward calls
// the device-dispatched token_logprobs_backward, which recomputes p from logits and logZ.
// Without autograd (inference mode, no input requiring grad below the Autograd key) the
// CompositeExplicitAutograd kernel runs the same forward on any backend.
#include "token_logprobs/token_logprobs.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::token_logprobs {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_forward(const at::Tensor& logits, const at::Tensor& targets,
                                                            double temperature, bool with_entropy) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::token_logprobs_forward", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, bool)>();
  return op.call(logits, targets, temperature, with_entropy);
}

at::Tensor call_backward(const std::optional<at::Tensor>& g, const std::optional<at::Tensor>& gh,
                         const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& logz,
                         const std::optional<at::Tensor>& entropy, double temperature) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::token_logprobs_backward", "")
      .typed<at::Tensor(const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double)>();
  return op.call(g, gh, logits, targets, logz, entropy, temperature);
}

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

class TokenLogprobsFunction : public torch::autograd::Function<TokenLogprobsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets,
                               double temperature, bool with_entropy) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [logp, ent, logz] = call_forward(logits, targets, temperature, with_entropy);
    // entropy is saved in the accumulation dtype (the backward needs H unrounded); returned in logits' dtype
    ctx->save_for_backward({logits, targets, logz, ent});
    ctx->saved_data["temperature"] = temperature;
    ctx->set_materialize_grads(false);  // an unused output's grad stays undefined: no work for it
    // an undefined output cannot be wrapped by autograd: return entropy only when asked for
    if (!with_entropy) return {logp};
    return {logp, ent.to(logits.scalar_type())};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const at::Tensor& g = grads[0];
    const at::Tensor gh = grads.size() > 1 ? grads[1] : at::Tensor();
    at::Tensor dlogits;
    if (ctx->needs_input_grad(0) && (g.defined() || gh.defined())) {
      dlogits = call_backward(opt(g), opt(gh), saved[0], saved[1], saved[2], opt(saved[3]), temperature);
    }
    return {dlogits, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> token_logprobs_autograd(const at::Tensor& logits, const at::Tensor& targets,
                                                           double temperature, bool with_entropy) {
  auto out = TokenLogprobsFunction::apply(logits, targets, temperature, with_entropy);
  return {out[0], out.size() > 1 ? out[1] : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> token_logprobs_composite(const at::Tensor& logits, const at::Tensor& targets,
                                                            double temperature, bool with_entropy) {
  auto [logp, ent, logz] = call_forward(logits, targets, temperature, with_entropy);
  return {logp, with_entropy ? ent.to(logits.scalar_type()) : at::Tensor()};
}

}  // namespace
}  // namespace llmrl::token_logprobs

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("token_logprobs", &llmrl::token_logprobs::token_logprobs_autograd);
}

TORCH_LIBRARY_IMPL(llmrl, CompositeExplicitAutograd, m) {
  m.impl("token_logprobs", &llmrl::token_logprobs::token_logprobs_composite);
}
