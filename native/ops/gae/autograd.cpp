// gae Autograd kernel: NO gradient by design (see gae.h). GAE outputs are targets computed from a
// rollout; the inputs are constants. This kernel runs the device kernel below autograd
// (AutoDispatchBelowADInplaceOrView), so no graph is recorded and the outputs never require grad, even
// when rewards/values do — instead of the dispatcher's "autograd not implemented" fallback, which would
// hand back outputs that require grad and fail (or warn) only at backward time.
#include "gae/gae.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::gae {
namespace {

std::tuple<at::Tensor, at::Tensor> gae_no_grad(const at::Tensor& rewards, const at::Tensor& values,
                                               const at::Tensor& mask, double gamma, double lam) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::gae", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                double, double)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(rewards, values, mask, gamma, lam);
}

}  // namespace
}  // namespace llmrl::gae

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("gae", &llmrl::gae::gae_no_grad);
}
