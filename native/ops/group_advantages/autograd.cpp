// group_advantages Autograd kernel: NO gradient by design (see group_advantages.h). Advantages are
// targets and rewards are constants; the kernel runs below autograd (AutoDispatchBelowADInplaceOrView),
// so the outputs never require grad and no graph is kept, even for rewards that require grad.
#include "group_advantages/group_advantages.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace llmrl::group_advantages {
namespace {

std::tuple<at::Tensor, at::Tensor> group_advantages_no_grad(const at::Tensor& rewards, int64_t group_size,
                                                            c10::string_view scale) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("llmrl::group_advantages", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, c10::string_view)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(rewards, group_size, scale);
}

}  // namespace
}  // namespace llmrl::group_advantages

TORCH_LIBRARY_IMPL(llmrl, Autograd, m) {
  m.impl("group_advantages", &llmrl::group_advantages::group_advantages_no_grad);
}
