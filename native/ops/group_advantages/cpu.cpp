// group_advantages CPU kernel: groups in parallel, each group scanned twice in float64 (see
// group_advantages.h, ALGORITHMS.md §3d); scale='batch' first computes the batch std serially (B is small).
#include "group_advantages/group_advantages.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace llmrl::group_advantages {

Scale parse_scale(std::string_view name) {
  if (name == "group") return Scale::group;
  if (name == "batch") return Scale::batch;
  if (name == "none") return Scale::none;
  if (name == "rloo") return Scale::rloo;
  TORCH_CHECK(false, "group_advantages: 'scale' must be one of 'group', 'batch', 'none', 'rloo', got '", name, "'");
}

void check_inputs(const at::Tensor& rewards, int64_t group_size, Scale scale) {
  TORCH_CHECK(rewards.dim() == 1, "group_advantages: 'rewards' must have shape [B] (one reward per completion), got ",
              rewards.sizes());
  TORCH_CHECK(at::isFloatingType(rewards.scalar_type()),
              "group_advantages: 'rewards' must be a floating tensor, got ", rewards.scalar_type());
  TORCH_CHECK(group_size >= 1, "group_advantages: 'group_size' must be a positive integer, got ", group_size);
  if (scale == Scale::group || scale == Scale::rloo) {
    TORCH_CHECK(group_size >= 2, "group_advantages: 'group_size' must be at least 2 with scale='",
                scale == Scale::group ? "group" : "rloo", "' (it needs two completions per prompt), got ", group_size);
  }
  TORCH_CHECK(rewards.size(0) % group_size == 0, "group_advantages: the length of 'rewards' (B = ", rewards.size(0),
              ") must be divisible by 'group_size' (G = ", group_size, "): B = number of prompts × G");
}

std::tuple<at::Tensor, at::Tensor> group_advantages_cpu(const at::Tensor& rewards, int64_t group_size,
                                                        c10::string_view scale_name) {
  const Scale scale = parse_scale(scale_name);
  check_inputs(rewards, group_size, scale);
  const at::Tensor r = rewards.contiguous();
  const int64_t B = r.size(0), G = group_size, groups = B / G;
  at::Tensor adv = at::empty_like(r, at::MemoryFormat::Contiguous);
  at::Tensor gstd = at::empty({groups}, r.options());
  if (B == 0) return {adv, gstd};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "group_advantages_cpu", [&] {
    const scalar_t* pr = r.const_data_ptr<scalar_t>();
    scalar_t* pa = adv.mutable_data_ptr<scalar_t>();
    scalar_t* ps = gstd.mutable_data_ptr<scalar_t>();
    double batch_std = 0;
    if (scale == Scale::batch) {
      double mu;
      int64_t c;
      nan_mean_std(pr, B, &mu, &batch_std, &c);
    }
    const int64_t grain = std::max<int64_t>(1, 4096 / G);
    at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        group_row(pr + k * G, G, static_cast<int>(scale), batch_std, pa + k * G, ps + k);
    });
  });
  return {adv, gstd};
}

}  // namespace llmrl::group_advantages

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("group_advantages", &llmrl::group_advantages::group_advantages_cpu);
}
