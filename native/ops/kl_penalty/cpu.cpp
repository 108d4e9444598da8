// kl_penalty CPU kernel: one parallel pass over the flattened positions (see kl_penalty.h).
#include "kl_penalty/kl_penalty.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

namespace llmrl::kl_penalty {

Estimator parse_estimator(std::string_view name) {
  if (name == "k1") return Estimator::k1;
  if (name == "k2") return Estimator::k2;
  if (name == "k3") return Estimator::k3;
  if (name == "abs") return Estimator::abs;
  TORCH_CHECK(false, "kl_penalty: 'estimator' must be one of 'k1', 'k2', 'k3', 'abs', got '", name, "'");
}

at::Tensor check_inputs(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                        const std::optional<at::Tensor>& mask,
                        const std::optional<at::Tensor>& old_logprobs) {
  TORCH_CHECK(at::isFloatingType(logprobs.scalar_type()),
              "kl_penalty: 'logprobs' must be a floating tensor, got ", logprobs.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == logprobs.sizes(), "kl_penalty: '", name, "' must have the shape of 'logprobs' ",
                logprobs.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == logprobs.device(), "kl_penalty: '", name, "' must be on ", logprobs.device(),
                " like 'logprobs', got ", t.device());
  };
  same(ref_logprobs, "ref_logprobs");
  TORCH_CHECK(ref_logprobs.scalar_type() == logprobs.scalar_type(), "kl_penalty: 'ref_logprobs' must have dtype ",
              logprobs.scalar_type(), " like 'logprobs', got ", ref_logprobs.scalar_type());
  if (old_logprobs && old_logprobs->defined()) {
    same(*old_logprobs, "old_logprobs");
    TORCH_CHECK(old_logprobs->scalar_type() == logprobs.scalar_type(), "kl_penalty: 'old_logprobs' must have dtype ",
                logprobs.scalar_type(), " like 'logprobs', got ", old_logprobs->scalar_type());
  }
  if (mask && mask->defined()) {
    same(*mask, "mask");
    return mask->scalar_type() == at::kBool ? mask->contiguous() : mask->ne(0);
  }
  return at::Tensor();
}

namespace {

// Runs `point` over every position; writes the value (grad == nullptr) or grad · ∂value/∂ℓ.
at::Tensor run(const at::Tensor* grad, const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
               const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& old_logprobs,
               c10::string_view estimator) {
  const int est = static_cast<int>(parse_estimator(estimator));
  const at::Tensor m = check_inputs(logprobs, ref_logprobs, mask, old_logprobs);
  const bool has_old = old_logprobs && old_logprobs->defined();
  const at::Tensor lp = logprobs.contiguous(), ref = ref_logprobs.contiguous();
  const at::Tensor old = has_old ? old_logprobs->contiguous() : at::Tensor();
  const at::Tensor g = grad ? grad->expand(logprobs.sizes()).contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(lp, at::MemoryFormat::Contiguous);
  const int64_t n = lp.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lp.scalar_type(), "kl_penalty_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* plp = lp.const_data_ptr<scalar_t>();
    const scalar_t* pref = ref.const_data_ptr<scalar_t>();
    const scalar_t* pold = has_old ? old.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pg = grad ? g.const_data_ptr<scalar_t>() : nullptr;
    const bool* pm = m.defined() ? m.const_data_ptr<bool>() : nullptr;
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (pm && !pm[i]) { po[i] = scalar_t(0); continue; }
        acc v, dv;
        point<acc>(acc(plp[i]), acc(pref[i]), pold ? acc(pold[i]) : acc(0), has_old, est, &v, &dv);
        po[i] = static_cast<scalar_t>(pg ? acc(pg[i]) * dv : v);
      }
    });
  });
  return out;
}

}  // namespace

at::Tensor kl_penalty_cpu(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                          const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& old_logprobs, c10::string_view estimator) {
  return run(nullptr, logprobs, ref_logprobs, mask, old_logprobs, estimator);
}

at::Tensor kl_penalty_backward_cpu(const at::Tensor& grad, const at::Tensor& logprobs,
                                   const at::Tensor& ref_logprobs, const std::optional<at::Tensor>& mask,
                                   const std::optional<at::Tensor>& old_logprobs, c10::string_view estimator) {
  return run(&grad, logprobs, ref_logprobs, mask, old_logprobs, estimator);
}

}  // namespace llmrl::kl_penalty

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("kl_penalty", &llmrl::kl_penalty::kl_penalty_cpu);
  m.impl("kl_penalty_backward", &llmrl::kl_penalty::kl_penalty_backward_cpu);
}
