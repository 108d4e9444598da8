// gae CPU kernel: rows in parallel, one sequential reverse scan per row (see gae.h, ALGORITHMS.md §3a).
#include "gae/gae.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

namespace llmrl::gae {

at::Tensor check_inputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& mask,
                        double gamma, double lam) {
  TORCH_CHECK(rewards.dim() == 2, "gae: 'rewards' must have shape [B, T], got ", rewards.sizes());
  TORCH_CHECK(at::isFloatingType(rewards.scalar_type()),
              "gae: 'rewards' must be a floating tensor, got ", rewards.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == rewards.sizes(), "gae: '", name, "' must have the shape of 'rewards' ",
                rewards.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == rewards.device(), "gae: '", name, "' must be on ", rewards.device(),
                " like 'rewards', got ", t.device());
  };
  same(values, "values");
  TORCH_CHECK(values.scalar_type() == rewards.scalar_type(), "gae: 'values' must have dtype ",
              rewards.scalar_type(), " like 'rewards', got ", values.scalar_type());
  same(mask, "mask");
  TORCH_CHECK(std::isfinite(gamma), "gae: 'gamma' must be a finite number, got ", gamma);
  TORCH_CHECK(std::isfinite(lam), "gae: 'lam' (lambda) must be a finite number, got ", lam);
  return mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
}

std::tuple<at::Tensor, at::Tensor> gae_cpu(const at::Tensor& rewards, const at::Tensor& values,
                                           const at::Tensor& mask, double gamma, double lam) {
  const at::Tensor m = check_inputs(rewards, values, mask, gamma, lam);
  const at::Tensor r = rewards.contiguous(), v = values.contiguous();
  at::Tensor adv = at::empty_like(r, at::MemoryFormat::Contiguous);
  at::Tensor ret = at::empty_like(r, at::MemoryFormat::Contiguous);
  const int64_t B = r.size(0), T = r.size(1);
  if (B == 0 || T == 0) return {adv, ret};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "gae_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pr = r.const_data_ptr<scalar_t>();
    const scalar_t* pv = v.const_data_ptr<scalar_t>();
    const bool* pm = m.const_data_ptr<bool>();
    scalar_t* pa = adv.mutable_data_ptr<scalar_t>();
    scalar_t* pret = ret.mutable_data_ptr<scalar_t>();
    // grain: ~32k positions per task, so short batches stay on one thread.
    const int64_t grain = std::max<int64_t>(1, 32768 / T);
    at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t o = b * T;
        scan_row<scalar_t, acc>(pr + o, pv + o, pm + o, T, acc(gamma), acc(gamma * lam), pa + o, pret + o);
      }
    });
  });
  return {adv, ret};
}

}  // namespace llmrl::gae

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("gae", &llmrl::gae::gae_cpu);
}
